"""Reconciliation: catch up on tasks whose callbacks were lost, and on unpublished events.

Run on a schedule. Active records with no news for `STALE_AFTER_SECONDS` are read back
from SRP, oldest first, page by page, at most `RECONCILE_BUDGET` per run; SRP's status
goes through exactly the same state machine as a callback. Records stuck before
submission are re-driven (or failed once too old), and so is a task SRP still has not
finished when its request is older than `MAX_REQUEST_AGE_SECONDS` (`render_timeout`).
A 429 from SRP ends the run early.

SRP's `done` completes a request on the files SRP's answer lists or, since its GET
lists none, the files in the task's render folder (render_listing); a record `rendered`
without that list is polled again until the folder lists them or its deadline passes.

A record `rendered` (SRP said done) for longer than RENDERED_DEADLINE_SECONDS without
every output file post-processed is re-driven once from the renders bucket (its missing
files processed here, as postprocess_render would); still `rendered` at a later run, it
fails with `postprocess_deadline`: nothing stays `rendered` forever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from srp_bundle.errors import SrpError, SrpNotFoundError, SrpRateLimitedError
from srp_bundle.log import get_logger, log_fields
from srp_bundle.outbox import apply_and_publish, complete_open_batches, republish_pending
from srp_bundle.render_listing import RenderFolder, trusted_output_files
from srp_bundle.settings import Settings
from srp_bundle.submission import SubmissionDeferredError, SubmissionOutcome, Submitter
from srp_bundle.task_state import (
    Clock,
    NoNews,
    PostprocessRedriven,
    SrpStatusReported,
    State,
    TaskFailed,
    TaskRecord,
    is_terminal_status,
    missing_outputs,
    state_for_status,
    utc_now,
)

logger = get_logger(__name__)
PAGE_SIZE = 100
# An outbox older than this lost its publisher (a crash between commit and publish).
OUTBOX_GRACE = timedelta(minutes=2)


class Reconciler:
    """Brings stale records up to date with SRP."""

    def __init__(
        self,
        settings: Settings,
        submitter: Submitter,
        *,
        outbox_grace: timedelta = OUTBOX_GRACE,
        redrive_postprocessing: Callable[[TaskRecord], int] | None = None,
        render_folder: RenderFolder | None = None,
        clock: Clock = utc_now,
    ) -> None:
        """Reconcile works on `submitter`'s store, SRP client and publisher.

        `clock` gives the run's cutoffs; `render_folder` lists a done task's files (without
        it only SRP's answer can).
        """
        self.settings = settings
        self.render_folder = render_folder
        self.clock = clock
        # Post-processes a record's missing output files again; None where the buckets
        # are not configured (the record then fails at its deadline without a re-drive).
        self.redrive_postprocessing = redrive_postprocessing
        self.outbox_grace = outbox_grace
        self.submitter = submitter
        self.store = submitter.store
        self.srp = submitter.srp
        self.publisher = submitter.publisher

    def run(self) -> Counter[str]:
        """One pass; returns the counts it also logs."""
        now = self.clock()
        counts: Counter[str] = Counter()
        cutoff = now - timedelta(seconds=self.settings.stale_after_seconds)
        budget, start_after = self.settings.reconcile_budget, None
        while budget > 0:
            page = self.store.stale_records(cutoff, min(PAGE_SIZE, budget), start_after)
            for record in page:
                counts["checked"] += 1
                try:
                    counts[self._reconcile(record)] += 1
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
                except Exception:
                    # One bad record never stops the run: the others still get their turn.
                    counts["errors"] += 1
                    logger.exception(
                        "could not reconcile", extra=log_fields(request_id=record.request_id)
                    )
            if len(page) < PAGE_SIZE or not page:
                break
            budget -= len(page)
            start_after = page[-1].updated_at
        counts["events_republished"] += republish_pending(
            self.store, self.publisher, now - self.outbox_grace
        )
        counts["batches_done"] += complete_open_batches(self.store, self.publisher)
        logger.info("reconcile run", extra=log_fields(**{k: counts[k] for k in _COUNT_NAMES}))
        return counts

    def _reconcile(self, record: TaskRecord) -> str:
        if record.task_id is None:
            return self._redrive(record)
        if record.state == State.RENDERED and record.output_files:
            # SRP already said done: only post-processing can be missing.
            return self._rendered(record, self.clock())
        try:
            # Its error is logged: the producer's header values stay out of it.
            secrets = self.store.callback_header_values(record)
            task = self.srp.get_task(record.task_id, secrets=secrets)
        except SrpNotFoundError:
            transition = apply_and_publish(
                self.store,
                self.publisher,
                record.request_id,
                TaskFailed("srp_task_missing", f"SRP has no task {record.task_id}"),
                received={"kind": "reconcile", "status": "not_found"},
            )
            return "failed"
        # The seed's GET does not list output files (a render may be a PNG, a video, a
        # sound, a model): the task's render folder does. Without a list nothing completes.
        files: tuple[str, ...] = ()
        if state_for_status(task.status) == State.RENDERED:
            files = trusted_output_files(task, self.render_folder)
        transition = apply_and_publish(
            self.store,
            self.publisher,
            record.request_id,
            SrpStatusReported(record.task_id, task.status, files, source="reconcile"),
            received={"kind": "reconcile", "status": task.status, "output_files": len(files)},
        )
        if record.state == State.RENDERED == transition.record.state:
            # Done without a list before: the deadline still applies.
            return self._rendered(transition.record, self.clock())
        if self._never_finished(transition.record, task.status, self.clock()):
            return "failed"
        if not transition.changed:
            self._touch(record.request_id)
            return "unchanged"
        state = transition.record.state
        return {State.COMPLETED: "completed", State.FAILED: "failed"}.get(state, "advanced")

    def _never_finished(self, record: TaskRecord, status: str, now: datetime) -> bool:
        """Fail a request whose SRP task is still unfinished MAX_REQUEST_AGE_SECONDS after it."""
        age = (now - record.created_at).total_seconds()
        if record.is_terminal or is_terminal_status(status):
            return False
        if age <= self.settings.max_request_age_seconds:
            return False
        reason = (
            f"SRP has not finished task {record.task_id} (status {status[:64]!r}) within"
            f" MAX_REQUEST_AGE_SECONDS={self.settings.max_request_age_seconds} ({age:.0f}s)"
        )
        apply_and_publish(
            self.store, self.publisher, record.request_id, TaskFailed("render_timeout", reason)
        )
        return True

    def _redrive(self, record: TaskRecord) -> str:
        try:
            result = self.submitter.resubmit(record)
        except SubmissionDeferredError:
            return "deferred"
        return {SubmissionOutcome.SUBMITTED: "resubmitted", SubmissionOutcome.FAILED: "failed"}.get(
            result.outcome, "unchanged"
        )

    def _rendered(self, record: TaskRecord, now: datetime) -> str:
        deadline = timedelta(seconds=self.settings.rendered_deadline_seconds)
        if now - (record.rendered_at or record.updated_at) < deadline:
            self._touch(record.request_id)
            return "unchanged"
        if record.redriven_at is None:
            # Marked first: a re-drive that crashes half-way is not repeated forever.
            self.store.apply(record.request_id, PostprocessRedriven())
            found = self.redrive_postprocessing(record) if self.redrive_postprocessing else 0
            logger.warning(
                "post-processing re-driven past the deadline: %d of %d missing files found",
                found,
                len(missing_outputs(record)),
                extra=log_fields(request_id=record.request_id),
            )
            current = self.store.get(record.request_id)
            if current is not None and current.state == State.COMPLETED:
                return "completed"
            return "redriven"
        missing = ", ".join(missing_outputs(record)) or "no output file"
        reason = (
            f"post-processing did not finish within {deadline.total_seconds():.0f} s of SRP's "
            f"done, even after a re-drive; missing: {missing}"
        )
        apply_and_publish(
            self.store,
            self.publisher,
            record.request_id,
            TaskFailed("postprocess_deadline", reason),
            received={"kind": "reconcile", "status": "postprocess_deadline"},
        )
        return "failed"

    def _touch(self, request_id: str) -> None:
        """Move a record that had no news to the back of the queue, so others get their turn."""
        self.store.apply(request_id, NoNews())


_COUNT_NAMES = (
    "checked",
    "batches_done",
    "advanced",
    "completed",
    "failed",
    "resubmitted",
    "redriven",
    "deferred",
    "unchanged",
    "errors",
    "events_republished",
)
