"""record_dead_letter: Pub/Sub CloudEvent (dead-letter topic) -> the request is marked failed."""

from __future__ import annotations

import functions_framework
from cloudevents.http.event import CloudEvent

from srp_bundle import log, wiring
from srp_bundle.dead_letters import record_dead_letter as record
from srp_bundle.errors import InvalidMessageError
from srp_bundle.trigger_events import decode_pubsub

services = wiring.services_for("record_dead_letter")
log.configure()
logger = log.get_logger("record_dead_letter")


@functions_framework.cloud_event
def record_dead_letter(cloud_event: CloudEvent) -> None:
    """Record why a render request gave up; raise only on transient storage errors."""
    with log.bind(event_id=cloud_event["id"]):
        try:
            message = decode_pubsub(cloud_event.data, cloud_event["id"])
        except InvalidMessageError as error:
            logger.error("undecodable dead letter dropped: %s", error)
            return
        record(services.store, services.publisher, message)
