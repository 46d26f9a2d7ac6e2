"""reconcile_tasks: Pub/Sub CloudEvent from Cloud Scheduler -> poll SRP for tasks with no news."""

from __future__ import annotations

import functions_framework
from cloudevents.http.event import CloudEvent

from srp_bundle import log, runtime
from srp_bundle.postprocessing import RenderPostprocessor
from srp_bundle.reconciliation import Reconciler
from srp_bundle.settings import load_settings
from srp_bundle.submission import Submitter

settings = load_settings("reconcile_tasks")
log.configure()


@functions_framework.cloud_event
def reconcile_tasks(cloud_event: CloudEvent) -> None:
    """One reconciliation pass; the schedule is the retry, so only infrastructure errors raise."""
    with log.bind(event_id=cloud_event["id"]):
        store = runtime.task_store(settings)
        srp = runtime.srp_client(settings)
        publisher = runtime.event_publisher(settings)
        submitter = Submitter(settings, store, srp, publisher)
        redrive = None
        if settings.renders_bucket_name and settings.derivatives_bucket_name:
            storage_client = runtime.storage_client(settings.project_id)
            redrive = RenderPostprocessor(settings, store, storage_client, publisher).redrive
        Reconciler(
            settings,
            store,
            srp,
            publisher,
            submitter,
            redrive_postprocessing=redrive,
            render_folder=runtime.render_folder(settings),
        ).run()
