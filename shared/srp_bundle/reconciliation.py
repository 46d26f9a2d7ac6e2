"""Reconciliation: catch up on tasks whose callbacks were lost, and on unpublished events.

Run on a schedule. Active records with no news for `STALE_AFTER_SECONDS` are read back
from SRP, oldest first, page by page, at most `RECONCILE_BUDGET` per run; SRP's status
goes through exactly the same state machine as a callback. Records stuck before
submission are re-driven (or failed once too old). A 429 from SRP ends the run early.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from srp_bundle.errors import (
    InvalidMessageError,
    SrpError,
    SrpNotFoundError,
    SrpRateLimitedError,
)
from srp_bundle.events import EventPublisher, publish_transition, republish_pending
from srp_bundle.log import get_logger, log_fields
from srp_bundle.render_paths import render_path
from srp_bundle.settings import Settings
from srp_bundle.srp_client import SrpClient
from srp_bundle.submission import Outcome, SubmissionDeferredError, Submitter
from srp_bundle.task_state import SrpStatusReported, State, TaskFailed, TaskRecord, utc_now
from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)
PAGE_SIZE = 100
# An outbox older than this lost its publisher (a crash between commit and publish).
OUTBOX_GRACE = timedelta(minutes=2)


class Reconciler:
    """Brings stale records up to date with SRP."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        srp: SrpClient,
        publisher: EventPublisher,
        submitter: Submitter,
        *,
        outbox_grace: timedelta = OUTBOX_GRACE,
    ) -> None:
        self.settings = settings
        self.outbox_grace = outbox_grace
        self.store = store
        self.srp = srp
        self.publisher = publisher
        self.submitter = submitter

    def run(self, now: datetime | None = None) -> Counter[str]:
        """One pass; returns the counts it also logs."""
        now = now or utc_now()
        counts: Counter[str] = Counter()
        cutoff = now - timedelta(seconds=self.settings.stale_after_seconds)
        budget, start_after = self.settings.reconcile_budget, None
        while budget > 0:
            page = self.store.stale_records(cutoff, min(PAGE_SIZE, budget), start_after)
            for record in page:
                counts["checked"] += 1
                try:
                    counts[self._reconcile(record, now)] += 1
                except SrpRateLimitedError as error:
                    counts["errors"] += 1
                    logger.warning(
                        "SRP rate limits us (retry after %s s); stopping", error.retry_after
                    )
                    budget = 0
                    break
                except SrpError as error:
                    counts["errors"] += 1
                    logger.warning(
                        "could not reconcile: %s",
                        error,
                        extra=log_fields(request_id=record.request_id),
                    )
            if len(page) < PAGE_SIZE or not page:
                break
            budget -= len(page)
            start_after = page[-1].updated_at
        counts["events_republished"] += republish_pending(
            self.store, self.publisher, now - self.outbox_grace
        )
        logger.info("reconcile run", extra=log_fields(**{k: counts[k] for k in _COUNT_NAMES}))
        return counts

    def _reconcile(self, record: TaskRecord, now: datetime) -> str:
        if record.task_id is None:
            return self._redrive(record, now)
        try:
            task = self.srp.get_task(record.task_id)
        except SrpNotFoundError:
            transition = self.store.apply(
                record.request_id,
                TaskFailed("srp_task_missing", f"SRP has no task {record.task_id}"),
                received={"kind": "reconcile", "status": "not_found"},
            )
            publish_transition(self.store, self.publisher, record.request_id, transition.events)
            return "failed"
        output_files: tuple[str, ...] = ()
        if task.status == "done" and task.collection is not None:
            # GET does not list output files; SRP's documented layout names the render,
            # from a collection name we check like any path SRP sends.
            try:
                output_files = (render_path(task.collection.name or "", record.task_id),)
            except InvalidMessageError as error:
                logger.warning(
                    "no output path from SRP's task: %s",
                    error,
                    extra=log_fields(request_id=record.request_id),
                )
        transition = self.store.apply(
            record.request_id,
            SrpStatusReported(record.task_id, task.status, output_files, source="reconcile"),
            received={"kind": "reconcile", "status": task.status},
        )
        publish_transition(self.store, self.publisher, record.request_id, transition.events)
        if not transition.changed:
            self._touch(record.request_id)
            return "unchanged"
        state = transition.record.state
        return {State.COMPLETED: "completed", State.FAILED: "failed"}.get(state, "advanced")

    def _redrive(self, record: TaskRecord, now: datetime) -> str:
        try:
            result = self.submitter.resubmit(record, now)
        except SubmissionDeferredError:
            return "deferred"
        return {Outcome.SUBMITTED: "resubmitted", Outcome.FAILED: "failed"}.get(
            result.outcome, "unchanged"
        )

    def _touch(self, request_id: str) -> None:
        """Move a record that had no news to the back of the queue, so others get their turn."""

        def decide(record: TaskRecord | None) -> tuple[TaskRecord | None, list[dict[str, Any]]]:
            return (record, []) if record is not None and not record.is_terminal else (None, [])

        self.store.update(request_id, decide)


_COUNT_NAMES = (
    "checked",
    "advanced",
    "completed",
    "failed",
    "resubmitted",
    "deferred",
    "unchanged",
    "errors",
    "events_republished",
)
