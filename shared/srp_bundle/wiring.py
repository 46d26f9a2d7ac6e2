"""The one place the use cases are put together: settings plus `Effects` in, ready jobs out.

The handlers (`functions/*/main.py`), the CLI, the simulator and the tests all build their
jobs here, so each gets the same store, SRP client and publisher, on one clock, one source
of randomness and one HTTP seam. Everything is made on first use and then reused by every
invocation of the instance; a function only pays at cold start for what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from srp_bundle.effects import Effects
from srp_bundle.settings import Settings, load_settings

if TYPE_CHECKING:
    from srp_bundle.callbacks import CallbackIngestor
    from srp_bundle.events import EventPublisher
    from srp_bundle.postprocessing import RenderPostprocessor
    from srp_bundle.reconciliation import Reconciler
    from srp_bundle.render_listing import RenderFolder
    from srp_bundle.render_outputs import ProcessedFile
    from srp_bundle.srp_client import SrpClient
    from srp_bundle.submission import Submitter
    from srp_bundle.task_store import TaskStore


class Services:
    """One deployment's jobs, built from its settings and the world's effects."""

    def __init__(
        self,
        settings: Settings,
        effects: Effects | None = None,
        *,
        process_file: Callable[..., ProcessedFile] | None = None,
    ) -> None:
        """`process_file` replaces the per-file media work (the simulator's stand-in)."""
        self.settings = settings
        self.effects = effects or Effects()
        self.process_file = process_file

    # ---- the I/O edges ------------------------------------------------------------------

    @cached_property
    def firestore(self) -> Any:
        """The Firestore client."""
        return self.effects.firestore_client(self.settings.project_id)

    @cached_property
    def storage(self) -> Any:
        """The Cloud Storage client."""
        return self.effects.storage_client(self.settings.project_id)

    @cached_property
    def store(self) -> TaskStore:
        """Task records in `TASKS_COLLECTION`, stamped by the effects' clock."""
        from srp_bundle.task_store import TaskStore

        return TaskStore(self.firestore, self.settings.tasks_collection, clock=self.effects.clock)

    @cached_property
    def publisher(self) -> EventPublisher:
        """Publisher of outgoing events on `EVENTS_TOPIC`."""
        from srp_bundle.events import EventPublisher

        topic = self.settings.require(self.settings.events_topic, "EVENTS_TOPIC")
        client = self.effects.publisher_client(self.settings.project_id)
        return EventPublisher(client, self.settings.project_id, topic)

    @cached_property
    def srp(self) -> SrpClient:
        """The SRP client (one keep-alive connection pool per instance)."""
        from srp_bundle.srp_client import SrpClient

        effects = self.effects
        return SrpClient.from_settings(
            self.settings,
            transport=effects.srp_transport,
            http=effects.srp_http() if effects.srp_http is not None else None,
            sleep=effects.sleep,
            clock=effects.clock,
            rand=effects.rng.random,
        )

    @cached_property
    def render_folder(self) -> RenderFolder | None:
        """Lists tasks' render folders in RENDERS_BUCKET (None where it is not configured)."""
        from srp_bundle.render_listing import RenderFolder

        if not self.settings.renders_bucket_name:
            return None
        return RenderFolder(
            lambda: self.storage,
            self.settings.renders_bucket_name,
            self.settings.render_path_pattern,
        )

    # ---- the jobs -----------------------------------------------------------------------

    @cached_property
    def submitter(self) -> Submitter:
        """submit_task's job (and reconcile's re-drive of unsubmitted records)."""
        from srp_bundle.submission import Submitter

        return Submitter(
            self.settings,
            self.store,
            self.srp,
            self.publisher,
            clock=self.effects.clock,
            new_id=self.effects.new_id,
        )

    @cached_property
    def ingestor(self) -> CallbackIngestor:
        """ingest_webhook's job; the SRP client is made on first need."""
        from srp_bundle.callbacks import CallbackIngestor

        return CallbackIngestor(
            self.settings,
            self.store,
            lambda: self.srp,
            self.publisher,
            render_folder=self.render_folder,
        )

    @cached_property
    def postprocessor(self) -> RenderPostprocessor:
        """postprocess_render's job."""
        from srp_bundle.postprocessing import RenderPostprocessor

        options = {"process_file": self.process_file} if self.process_file else {}
        return RenderPostprocessor(
            self.settings, self.store, self.storage, self.publisher, **options
        )

    @cached_property
    def reconciler(self) -> Reconciler:
        """reconcile_tasks' job: its submitter's store, client and publisher, nothing twice."""
        from srp_bundle.reconciliation import Reconciler

        settings = self.settings
        redrive = None
        if settings.renders_bucket_name and settings.derivatives_bucket_name:
            redrive = self.postprocessor.redrive
        return Reconciler(
            settings,
            self.submitter,
            redrive_postprocessing=redrive,
            render_folder=self.render_folder,
            clock=self.effects.clock,
        )


def services_for(function_name: str) -> Services:
    """A deployed function's services: its settings read and checked now, clients on first use.

    Called once, at import, so a missing or malformed variable stops the function at start-up
    (and an app built in process by `create_app` gets the environment of that moment).
    """
    return Services(load_settings(function_name))
