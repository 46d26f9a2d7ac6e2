"""Dead letters: render requests whose deliveries were all used up are marked failed, with why."""

from __future__ import annotations

from srp_bundle.cloudevents import PubsubMessage
from srp_bundle.events import EventPublisher, publish_transition
from srp_bundle.log import get_logger, log_fields
from srp_bundle.render_requests import request_id_hint
from srp_bundle.task_state import TaskFailed, TaskRecord, advance, utc_now
from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)
# Attributes Pub/Sub adds when it forwards a message to a dead-letter topic.
DELIVERY_COUNT_ATTRIBUTE = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_SUBSCRIPTION_ATTRIBUTE = "CloudPubSubDeadLetterSourceSubscription"


def record_dead_letter(
    store: TaskStore, publisher: EventPublisher, message: PubsubMessage
) -> TaskRecord | None:
    """Mark the dead-lettered request failed unless SRP already has its task."""
    request_id = request_id_hint(message.data, message.message_id)
    attempts = message.attributes.get(DELIVERY_COUNT_ATTRIBUTE, "?")
    source = message.attributes.get(
        SOURCE_SUBSCRIPTION_ATTRIBUTE, "the render-requests subscription"
    )
    record = store.get(request_id)
    last_error = (record.last_error or {}).get("message") if record else None
    reason = f"gave up after {attempts} delivery attempts from {source}" + (
        f"; last error: {last_error}" if last_error else ""
    )
    if record is None:
        failed = advance(
            TaskRecord(request_id=request_id, collection_id=""),
            TaskFailed("dead_lettered", reason),
        )
        if store.create(failed.record, [{"kind": "dead_letter"}, *failed.log], failed.events):
            publish_transition(store, publisher, request_id, failed.events)
            logger.warning(reason, extra=log_fields(request_id=request_id))
            return failed.record
        record = store.get(request_id)
    if record is None or record.task_id is not None or record.is_terminal:
        logger.info(
            "dead letter for a request that is already %s; left as it is",
            record.state if record else "unknown",
            extra=log_fields(request_id=request_id),
        )
        return record
    transition = store.apply(
        request_id,
        TaskFailed("dead_lettered", reason),
        received={"kind": "dead_letter", "attempts": attempts, "at": utc_now()},
    )
    publish_transition(store, publisher, request_id, transition.events)
    logger.warning(reason, extra=log_fields(request_id=request_id))
    return transition.record
