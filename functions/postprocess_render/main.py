"""postprocess_render: GCS finalized CloudEvent (renders bucket) -> derivatives on the record."""

from __future__ import annotations

import functions_framework
from cloudevents.http.event import CloudEvent

from srp_bundle import log, wiring
from srp_bundle.errors import InvalidMessageError
from srp_bundle.postprocessing import PostprocessOutcome
from srp_bundle.trigger_events import decode_storage_object

services = wiring.services_for("postprocess_render")
settings = services.settings
log.configure()
logger = log.get_logger("postprocess_render")
if settings.renders_bucket_name == settings.derivatives_bucket_name:
    logger.warning("RENDERS_BUCKET and DERIVATIVES_BUCKET are the same bucket; keep them apart")


@functions_framework.cloud_event
def postprocess_render(cloud_event: CloudEvent) -> None:
    """Process one finalized render; return to acknowledge, raise to have it redelivered."""
    with log.bind(event_id=cloud_event["id"]):
        try:
            render = decode_storage_object(cloud_event.data)
        except InvalidMessageError as error:
            # Nothing to process or record; acknowledging stops a retry loop.
            logger.error("undecodable storage event dropped: %s", error)
            return
        with log.bind(bucket=render.bucket, object=render.name, generation=render.generation):
            result = services.postprocessor.process(render)
            fields = log.log_fields(
                task_id=result.target.task_id if result.target else None,
                request_id=result.record.request_id if result.record else None,
                outcome=str(result.outcome),
            )
            if result.outcome == PostprocessOutcome.IGNORED:
                logger.debug("object ignored: %s", result.reason, extra=fields)
            else:
                logger.info("render %s: %s", result.outcome, result.reason, extra=fields)
