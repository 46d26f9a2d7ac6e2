"""Apply a change, then publish what it decided: the one path from a record change to events.

Events are decided inside the record's transaction and written to the outbox
(`<TASKS_COLLECTION>_outbox`) in that same transaction; they are published after the
commit and then deleted from the outbox. If an invocation dies in between, reconciliation
publishes them again with the same `event_id`. An event Pub/Sub can never take is parked
(`<TASKS_COLLECTION>_outbox_parked`, with the reason) instead of blocking the events
behind it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from srp_bundle.batches import BatchStore, batch_ids_finished
from srp_bundle.events import EventPublisher, PublishOutcome
from srp_bundle.log import bind, get_logger, log_fields
from srp_bundle.task_state import Change, TaskRecord, Transition
from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)


def apply_and_publish(
    store: TaskStore,
    publisher: EventPublisher,
    request_id: str,
    change: Change,
    *,
    received: dict[str, Any] | None = None,
    create: TaskRecord | None = None,
    log_if_created: list[dict[str, Any]] | None = None,
) -> Transition:
    """`TaskStore.apply`, then publish the transition's events (see `publish_transition`)."""
    transition = store.apply(
        request_id, change, received=received, create=create, log_if_created=log_if_created
    )
    publish_transition(store, publisher, request_id, transition.events)
    return transition


def publish_transition(
    store: TaskStore, publisher: EventPublisher, request_id: str, events: list[dict[str, Any]]
) -> None:
    """Publish the events one transition decided, then delete them from the outbox.

    Only this transition's own events: a concurrent invocation never publishes them, so
    normal operation publishes each event once. A member of a batch that reached its final
    state then checks whether its batch is done (`batch.completed`, decided once).
    """
    if events:
        with bind(request_id=request_id):
            _settle(store, publisher.publish(events))
    for batch_id in batch_ids_finished(events):
        done = BatchStore(store).complete_if_done(batch_id)
        if done:
            _settle(store, publisher.publish(done))


def republish_pending(store: TaskStore, publisher: EventPublisher, decided_before: datetime) -> int:
    """Publish events whose publisher died after the commit; return how many."""
    events = store.pending_events(decided_before, limit=500)
    if events:
        _settle(store, publisher.publish(events))
    return len(events)


def complete_open_batches(store: TaskStore, publisher: EventPublisher, limit: int = 100) -> int:
    """Check the open batches once more (a done check lost with its invocation); how many
    were done."""
    batches = BatchStore(store)
    done = 0
    for batch_id in batches.open_batches(limit):
        events = batches.complete_if_done(batch_id)
        if events:
            _settle(store, publisher.publish(events))
            done += 1
    return done


def _settle(store: TaskStore, outcome: PublishOutcome) -> None:
    """Drop published events from the outbox, park refused ones, then raise a transient error."""
    store.confirm_published(outcome.published)
    if outcome.refused:
        for event_id, reason in outcome.refused.items():
            logger.error("event parked: %s", reason, extra=log_fields(event_id=event_id))
        store.park_events(outcome.refused)
    if outcome.transient is not None:
        raise outcome.transient
