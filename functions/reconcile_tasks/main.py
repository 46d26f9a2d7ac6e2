"""reconcile_tasks: Pub/Sub CloudEvent from Cloud Scheduler -> poll SRP for tasks with no news."""

from __future__ import annotations

import functions_framework
from cloudevents.http.event import CloudEvent

from srp_bundle import log, wiring

services = wiring.services_for("reconcile_tasks")
log.configure()


@functions_framework.cloud_event
def reconcile_tasks(cloud_event: CloudEvent) -> None:
    """One reconciliation pass; the schedule is the retry, so only infrastructure errors raise."""
    with log.bind(event_id=cloud_event["id"]):
        services.reconciler.run()
