"""Outgoing events on `EVENTS_TOPIC`: JSON data, the fixed `type` attribute, an `event_id`.

Events are decided inside the record's transaction and written to the outbox in that same
transaction; they are published after the commit and then deleted from the outbox. If an
invocation dies in between, reconciliation publishes them again with the same `event_id`.
An event Pub/Sub can never take is parked (`<TASKS_COLLECTION>_outbox_parked`, with the
reason) instead of blocking the events behind it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.api_core.exceptions import InvalidArgument
from google.cloud.pubsub_v1 import PublisherClient

from srp_bundle.log import bind, get_logger, log_fields
from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)
PUBLISH_TIMEOUT_SECONDS = 30.0


@dataclass
class PublishOutcome:
    """Which events Pub/Sub has, which it can never take (and why), and a transient failure."""

    published: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    transient: Exception | None = None


class EventPublisher:
    """Publishes outgoing events to one topic."""

    def __init__(self, publisher: PublisherClient, project_id: str, topic_id: str) -> None:
        self.publisher = publisher
        self.topic_path = publisher.topic_path(project_id, topic_id)

    def publish(self, events: Iterable[dict[str, Any]]) -> PublishOutcome:
        """Publish events and wait for each; one that fails never stops the others."""
        outcome = PublishOutcome()
        pending = []
        for event in events:
            try:
                data = json.dumps(event["data"], default=str, sort_keys=True).encode()
                future = self.publisher.publish(
                    self.topic_path,
                    data,
                    type=event["type"],
                    event_id=event["event_id"],
                    request_id=str(event["data"].get("request_id") or ""),
                )
            except _REFUSED as error:
                outcome.refused[event["event_id"]] = f"{type(error).__name__}: {error}"
                continue
            pending.append((event, future))
        for event, future in pending:
            try:
                future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
            except _REFUSED as error:
                outcome.refused[event["event_id"]] = f"{type(error).__name__}: {error}"
                continue
            except Exception as error:  # retried later: by the caller's retry or reconcile
                outcome.transient = outcome.transient or error
                continue
            outcome.published.append(event["event_id"])
            logger.info(
                "published %s",
                event["type"],
                extra=log_fields(event_type=event["type"], event_id=event["event_id"]),
            )
        return outcome


# What Pub/Sub (or its client) refuses for the message itself: publishing it again cannot help.
_REFUSED = (InvalidArgument, ValueError, TypeError)


def publish_transition(
    store: TaskStore, publisher: EventPublisher, request_id: str, events: list[dict[str, Any]]
) -> None:
    """Publish the events one transition decided, then delete them from the outbox.

    Only this transition's own events: a concurrent invocation never publishes them, so
    normal operation publishes each event once.
    """
    if events:
        with bind(request_id=request_id):
            _settle(store, publisher.publish(events))


def republish_pending(store: TaskStore, publisher: EventPublisher, decided_before: datetime) -> int:
    """Publish events whose publisher died after the commit; return how many."""
    events = store.pending_events(decided_before, limit=500)
    if events:
        _settle(store, publisher.publish(events))
    return len(events)


def _settle(store: TaskStore, outcome: PublishOutcome) -> None:
    """Drop published events from the outbox, park refused ones, then raise a transient error."""
    store.confirm_published(outcome.published)
    if outcome.refused:
        for event_id, reason in outcome.refused.items():
            logger.error("event parked: %s", reason, extra=log_fields(event_id=event_id))
        store.park_events(outcome.refused)
    if outcome.transient is not None:
        raise outcome.transient
