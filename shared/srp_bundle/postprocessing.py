"""Post-processing: one finished output file in, derivatives and metadata on its task record.

For a finalized `render/<COLLECTION_NAME>/<TASK_UUID>/<file>` (RENDER_PATH_PATTERN: every
file SRP writes into the task's folder: image, video, audio, 3D, anything):
1. Refuse anything that is not a render: another bucket, the derivatives bucket, the
   `derivatives/` prefix, or an object carrying our derivative metadata. Each check alone
   stops a trigger loop, even with RENDERS_BUCKET and DERIVATIVES_BUCKET set the same.
2. If the task's stored result for this file already has this generation (or a newer
   one), do no new work: only make sure the record has it (a no-op when it does).
3. Download exactly that generation (bounded) into a private temporary folder, decide the
   kind from the bytes and make its derivatives (`render_outputs`), write them once
   (`if_generation_match=0`); the folder is removed on every path.
4. Store the file's result under the task id, then apply it to the record found by that
   task id. Without a record yet, the stored result waits: attaching the task id applies
   every stored file. The record completes once SRP said done and every file of its
   `output_files` has a result (`task_state`).
5. Once the record points at this file's newest generation, delete its older ones.

A file that can never be processed (corrupt, truncated, over a pixel, byte or duration
limit, ffmpeg timing out) is stored as a failed result the same way: the record fails
with the error's code and `task.failed` goes out. Transient errors propagate (retried).

Over 300 lines: the event's whole path (target, dedupe, media work, storage, record) reads
top to bottom in one class.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from srp_bundle.derivative_store import (
    DERIVATIVES_PREFIX,
    StoredDerivative,
    delete_superseded_derivatives,
    download_render_to_file,
    source_folder,
    store_derivatives,
)
from srp_bundle.errors import OutputRejectedError, RenderPathRejectedError
from srp_bundle.events import EventPublisher
from srp_bundle.log import get_logger, log_fields
from srp_bundle.outbox import apply_and_publish
from srp_bundle.render_outputs import Limits, ProcessedFile, process_output_file
from srp_bundle.settings import Settings
from srp_bundle.task_state import DerivativesReady, TaskRecord, missing_outputs
from srp_bundle.task_store import RenderResult, TaskStore
from srp_bundle.trigger_events import StorageObject

logger = get_logger(__name__)

# Custom metadata that only our derivatives carry (see derivative_store).
_DERIVATIVE_METADATA_KEYS = frozenset({"source_object", "source_generation"})


class PostprocessOutcome(StrEnum):
    """What one storage event achieved."""

    IGNORED = "ignored"
    SUPERSEDED = "superseded"
    ALREADY_PROCESSED = "already_processed"
    PROCESSED = "processed"
    REJECTED = "rejected"


@dataclass(frozen=True)
class RenderTarget:
    """A render object this function must process, with what its path says."""

    bucket_name: str
    object_name: str
    generation: int
    collection_name: str
    task_id: str

    @property
    def folder(self) -> str:
        """The task's render folder (the render's parent), without the trailing slash."""
        return self.object_name.rsplit("/", 1)[0]


@dataclass(frozen=True)
class PostprocessResult:
    """The outcome, why, and the task record as it stands afterwards (None if none yet)."""

    outcome: PostprocessOutcome
    reason: str
    target: RenderTarget | None = None
    record: TaskRecord | None = None
    written: int = 0


def render_target(settings: Settings, render: StorageObject) -> RenderTarget | str:
    """The render to process, or the reason this object must be ignored."""
    renders_bucket_name = settings.require(settings.renders_bucket_name, "RENDERS_BUCKET")
    derivatives_bucket_name = settings.require(
        settings.derivatives_bucket_name, "DERIVATIVES_BUCKET"
    )
    if render.bucket != renders_bucket_name:
        if render.bucket == derivatives_bucket_name:
            return "an object in the derivatives bucket"
        return f"an object in bucket {render.bucket!r}, not the renders bucket"
    if render.name.startswith(f"{DERIVATIVES_PREFIX}/"):
        return f"an object under {DERIVATIVES_PREFIX}/: one of our own outputs"
    if _DERIVATIVE_METADATA_KEYS & render.metadata.keys():
        return "an object carrying derivative metadata: one of our own outputs"
    match = settings.render_path_pattern.match(render.name)
    if match is None:
        return "not a render path"
    return RenderTarget(
        bucket_name=render.bucket,
        object_name=render.name,
        generation=render.generation,
        collection_name=match.group("collection_name"),
        task_id=match.group("task_id"),
    )


class RenderPostprocessor:
    """Turns finalized renders into derivatives recorded on their task records."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        storage_client: Any,
        publisher: EventPublisher,
        *,
        process_file: Callable[..., ProcessedFile] = process_output_file,
    ) -> None:
        """`process_file` is the media work (a simulator replaces it; docs/simulation.md)."""
        self.settings = settings
        self.process_file = process_file
        self.store = store
        self.publisher = publisher
        self.renders_bucket = storage_client.bucket(
            settings.require(settings.renders_bucket_name, "RENDERS_BUCKET")
        )
        self.derivatives_bucket = storage_client.bucket(
            settings.require(settings.derivatives_bucket_name, "DERIVATIVES_BUCKET")
        )

    def process(self, render: StorageObject) -> PostprocessResult:
        """Handle one finalized object; raise only for transient failures (retry)."""
        target = render_target(self.settings, render)
        if isinstance(target, str):
            return PostprocessResult(PostprocessOutcome.IGNORED, target)
        try:
            source_folder(target.collection_name, target.task_id, target.object_name)
        except ValueError as error:
            # The pattern let it through, the code never can: recorded once, not retried.
            return self._reject(target, RenderPathRejectedError(str(error)))

        stored = self.store.render_result(target.task_id, target.object_name)
        if stored is not None and stored.change.generation >= target.generation:
            record = self._settle(target, stored)
            return PostprocessResult(
                PostprocessOutcome.ALREADY_PROCESSED,
                f"generation {stored.change.generation} is already processed",
                target,
                record,
            )

        # One private folder per event, removed on every path (success, rejection, crash).
        with tempfile.TemporaryDirectory(prefix="srp-render-") as workdir:
            local_copy = os.path.join(workdir, "source")
            try:
                found = download_render_to_file(
                    self.renders_bucket,
                    target.object_name,
                    target.generation,
                    local_copy,
                    max_bytes=self.settings.max_source_bytes,
                )
                if not found:
                    # Replaced or deleted since the event: a newer generation has its own event.
                    return PostprocessResult(
                        PostprocessOutcome.SUPERSEDED, "this generation no longer exists", target
                    )
                processed = self.process_file(
                    local_copy,
                    self.settings.derivative_specs,
                    Limits.from_settings(self.settings),
                    declared_content_type=render.content_type,
                )
            except OutputRejectedError as error:
                return self._reject(target, error)
        return self._record(target, processed)

    def _record(self, target: RenderTarget, processed: ProcessedFile) -> PostprocessResult:
        """Write the derivatives, store the file's result, apply it to the record."""
        stored = self.store.render_result(target.task_id, target.object_name)
        if stored is not None and stored.change.generation >= target.generation:
            # Recorded while this run worked (a duplicate event, or a newer generation whose
            # clean-up may already have removed this one's derivatives): write nothing.
            return PostprocessResult(
                PostprocessOutcome.ALREADY_PROCESSED,
                f"generation {stored.change.generation} was processed meanwhile",
                target,
                self._settle(target, stored),
            )
        # Known before writing so the derivatives carry it; None when the record is not there yet.
        record = self.store.find_by_task_id(target.task_id)
        written = store_derivatives(
            self.derivatives_bucket,
            processed.derivatives,
            collection_name=target.collection_name,
            task_id=target.task_id,
            source_bucket_name=target.bucket_name,
            source_object_name=target.object_name,
            source_generation=target.generation,
            request_id=record.request_id if record else None,
        )
        change = DerivativesReady(
            render_path=target.object_name,
            generation=target.generation,
            derivatives=tuple(item.as_record() for item in written),
            file=processed.description,
        )
        self.store.save_render_result(RenderResult(target.task_id, change))
        record = self._settle(target)
        _log_written(target, written, str(processed.description["kind"]))
        return PostprocessResult(
            PostprocessOutcome.PROCESSED,
            f"{processed.description['kind']}: {len(written)} derivatives",
            target,
            record,
            written=sum(item.written for item in written),
        )

    def redrive(self, record: TaskRecord) -> int:
        """Process again, from the bucket, each output file the record still waits for.

        For reconcile, once a request has stayed `rendered` past its deadline (a lost or
        dropped storage event). Returns how many files were found and processed.
        """
        found = 0
        for path in missing_outputs(record):
            blob = self.renders_bucket.get_blob(path)
            if blob is None:
                continue
            found += 1
            self.process(
                StorageObject(
                    bucket=self.renders_bucket.name,
                    name=path,
                    generation=int(blob.generation),
                    size=blob.size,
                    content_type=blob.content_type,
                    metadata=dict(blob.metadata or {}),
                )
            )
        return found

    # ---- steps ------------------------------------------------------------------------

    def _reject(self, target: RenderTarget, error: OutputRejectedError) -> PostprocessResult:
        """Keep the failure like a result, so a record that appears later fails too."""
        message = f"{target.object_name} (generation {target.generation}): {error}"
        logger.warning(
            "render rejected: %s",
            message,
            extra=log_fields(task_id=target.task_id, error_code=error.code),
        )
        failed = RenderResult(
            target.task_id,
            DerivativesReady(target.object_name, target.generation, derivatives=()),
            error={"code": error.code, "message": message},
        )
        self.store.save_render_result(failed)
        record = self._settle(target)
        return PostprocessResult(PostprocessOutcome.REJECTED, error.code, target, record)

    def _settle(
        self, target: RenderTarget, stored: RenderResult | None = None
    ) -> TaskRecord | None:
        """Apply the task's newest stored result to its record, publish, drop older outputs.

        Safe to repeat: applying an applied result changes nothing and publishes nothing,
        so a redelivered event finishes whatever an interrupted attempt left undone.
        """
        stored = stored or self.store.render_result(target.task_id, target.object_name)
        if stored is None:
            raise LookupError(f"no result stored for {target.object_name}")
        record = self.store.find_by_task_id(target.task_id)
        if record is not None:
            transition = apply_and_publish(
                self.store, self.publisher, record.request_id, stored.record_change()
            )
            record = transition.record
        else:
            logger.info(
                "no task record names this task yet; the result waits for it",
                extra=log_fields(task_id=target.task_id),
            )
        # Only once nothing can point at older derivatives any more: a record keeps older
        # ones only when it failed before this generation arrived.
        recorded = _recorded_generation(record, target.object_name) if record else None
        path_rejected = (stored.error or {}).get("code") == RenderPathRejectedError.code
        if not path_rejected and (record is None or recorded in (None, stored.change.generation)):
            deleted = delete_superseded_derivatives(
                self.derivatives_bucket,
                target.collection_name,
                target.task_id,
                stored.change.generation,
                target.object_name,
            )
            if deleted:
                logger.info(
                    "deleted %d superseded derivatives",
                    len(deleted),
                    extra=log_fields(task_id=target.task_id),
                )
        return record


def _recorded_generation(record: TaskRecord, path: str) -> int | None:
    for file in record.files:
        if file.get("path") == path:
            return int(file["generation"])
    return None


def _log_written(target: RenderTarget, written: list[StoredDerivative], kind: str) -> None:
    logger.info(
        "derivatives ready",
        extra=log_fields(
            task_id=target.task_id,
            generation=target.generation,
            kind=kind,
            derivatives=[item.path for item in written],
            newly_written=sum(item.written for item in written),
        ),
    )
