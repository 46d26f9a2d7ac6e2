"""Dead letters: render requests whose deliveries were all used up are marked failed, with why.

The decision is taken inside the record's transaction (a task attached meanwhile wins).
A message without `request_id` reaches the dead-letter topic under a new message id; its
record is found by the digest of the message data, so no second record is ever created.
"""

from __future__ import annotations

from srp_bundle.events import EventPublisher
from srp_bundle.log import get_logger, log_fields
from srp_bundle.outbox import apply_and_publish
from srp_bundle.render_requests import message_digest, requested_id
from srp_bundle.task_state import DeadLettered, State, TaskRecord
from srp_bundle.task_store import TaskStore
from srp_bundle.trigger_events import PubsubMessage

logger = get_logger(__name__)
# Attributes Pub/Sub adds when it forwards a message to a dead-letter topic.
DELIVERY_COUNT_ATTRIBUTE = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_SUBSCRIPTION_ATTRIBUTE = "CloudPubSubDeadLetterSourceSubscription"


def record_dead_letter(
    store: TaskStore, publisher: EventPublisher, message: PubsubMessage
) -> TaskRecord | None:
    """Mark the dead-lettered request failed unless SRP already has its task."""
    digest = message_digest(message.data)
    request_id = requested_id(message.data) or _original_request_id(store, digest, message)
    change = DeadLettered(
        attempts=message.attributes.get(DELIVERY_COUNT_ATTRIBUTE, "?"),
        source=message.attributes.get(
            SOURCE_SUBSCRIPTION_ATTRIBUTE, "the render-requests subscription"
        ),
    )
    now = store.clock()
    transition = apply_and_publish(
        store,
        publisher,
        request_id,
        change,
        received={"kind": "dead_letter", "attempts": change.attempts, "at": now},
        # Never seen by submit_task (every delivery failed before the record was written).
        create=TaskRecord(
            request_id=request_id,
            collection_id="",
            message_digest=digest,
            created_at=now,
            updated_at=now,
        ),
    )
    record = transition.record
    if record.state == State.FAILED and transition.changed:
        logger.warning(
            (record.error or {}).get("message", "dead-lettered"),
            extra=log_fields(request_id=request_id),
        )
    else:
        logger.info(
            "dead letter for a request that is already %s; left as it is",
            record.state,
            extra=log_fields(request_id=request_id, task_id=record.task_id),
        )
    return record


def _original_request_id(store: TaskStore, digest: str, message: PubsubMessage) -> str:
    """The record the original message created (keyed by its message id), if any."""
    found = store.find_by_message_digest(digest)
    if not found or message.message_id in {record.request_id for record in found}:
        return message.message_id  # nothing recorded it yet, or this dead letter did
    # Identical bodies published twice are indistinguishable without request_id: the one
    # still in progress is the one whose deliveries ran out.
    active = [record for record in found if not record.is_terminal]
    return min(active or found, key=lambda record: record.created_at).request_id
