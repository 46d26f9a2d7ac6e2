"""submit_task: Pub/Sub CloudEvent (render-requests) -> exactly one SRP task per request."""

from __future__ import annotations

import functions_framework
from cloudevents.http.event import CloudEvent

from srp_bundle import log, wiring
from srp_bundle.errors import InvalidMessageError
from srp_bundle.trigger_events import decode_pubsub

services = wiring.services_for("submit_task")
log.configure()
logger = log.get_logger("submit_task")


@functions_framework.cloud_event
def submit_task(cloud_event: CloudEvent) -> None:
    """Submit the render request; return to acknowledge, raise to have Pub/Sub redeliver."""
    with log.bind(event_id=cloud_event["id"]):
        try:
            message = decode_pubsub(cloud_event.data, cloud_event["id"])
        except InvalidMessageError as error:
            # Nothing to record without a message; acknowledging stops a retry loop.
            logger.error("undecodable Pub/Sub event dropped: %s", error)
            return
        with log.bind(message_id=message.message_id):
            result = services.submitter.submit(message)
            logger.info(
                "render request %s",
                result.outcome,
                extra=log.log_fields(
                    request_id=result.record.request_id if result.record else None
                ),
            )
