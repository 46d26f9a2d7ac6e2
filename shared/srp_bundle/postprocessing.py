"""Post-processing: one finished render in, derivatives and metadata on its task record.

For a finalized `render/<COLLECTION_NAME>/<TASK_UUID>/render.png` (RENDER_PATH_PATTERN):
1. Refuse anything that is not a render: another bucket, the derivatives bucket, the
   `derivatives/` prefix, or an object carrying our derivative metadata. Each check alone
   stops a trigger loop, even with RENDERS_BUCKET and DERIVATIVES_BUCKET set the same.
2. If the task's stored result already has this generation (or a newer one), do no new
   work: only make sure the record has it (a no-op when it does).
3. Download exactly that generation (bounded), make every derivative from one decode,
   write them once (`if_generation_match=0`), describe the other files of the folder.
4. Store the result under the task id, then apply it to the record found by that task id.
   Without a record yet, the stored result waits: attaching the task id applies it.
5. Once the record points at the newest generation, delete older generations' objects.

A render that can never become derivatives (not a PNG, corrupt, truncated, too many
pixels, too large) is stored as a failed result the same way: the record fails with the
error's code and `task.failed` goes out. Transient errors propagate (the event is retried).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from srp_bundle.cloudevents import StorageObject
from srp_bundle.derivative_store import (
    DERIVATIVES_PREFIX,
    StoredDerivative,
    delete_superseded_derivatives,
    derivative_folder,
    describe_render_folder,
    download_render,
    store_derivatives,
)
from srp_bundle.derivatives import make_derivatives
from srp_bundle.errors import ImageRejectedError, RenderPathRejectedError
from srp_bundle.events import EventPublisher, publish_transition
from srp_bundle.log import get_logger, log_fields
from srp_bundle.settings import Settings
from srp_bundle.task_state import DerivativesReady, TaskRecord
from srp_bundle.task_store import RenderResult, TaskStore

logger = get_logger(__name__)

# Custom metadata that only our derivatives carry (see derivative_store).
_DERIVATIVE_METADATA_KEYS = frozenset({"source_object", "source_generation"})


class Outcome(StrEnum):
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

    outcome: Outcome
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
    ) -> None:
        self.settings = settings
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
            return PostprocessResult(Outcome.IGNORED, target)
        try:
            derivative_folder(target.collection_name, target.task_id)
        except ValueError as error:
            # The pattern let it through, the code never can: recorded once, not retried.
            return self._reject(target, RenderPathRejectedError(str(error)))

        stored = self.store.render_result(target.task_id)
        if stored is not None and stored.change.generation >= target.generation:
            record = self._settle(target, stored)
            return PostprocessResult(
                Outcome.ALREADY_PROCESSED,
                f"generation {stored.change.generation} is already processed",
                target,
                record,
            )

        try:
            data = download_render(
                self.renders_bucket,
                target.object_name,
                target.generation,
                max_bytes=self.settings.max_source_bytes,
            )
            if data is None:
                # Replaced or deleted since the event: the newer generation has its own event.
                return PostprocessResult(
                    Outcome.SUPERSEDED, "this generation no longer exists", target
                )
            images = make_derivatives(
                data, self.settings.derivative_specs, max_pixels=self.settings.max_source_pixels
            )
        except ImageRejectedError as error:
            return self._reject(target, error)
        del data  # the decoded derivatives are all we keep

        # Known before writing so the derivatives carry it; None when the record is not there yet.
        record = self.store.find_by_task_id(target.task_id)
        written = store_derivatives(
            self.derivatives_bucket,
            images.derivatives,
            collection_name=target.collection_name,
            task_uuid=target.task_id,
            source_bucket_name=target.bucket_name,
            source_object_name=target.object_name,
            source_generation=target.generation,
            task_id=target.task_id,
            request_id=record.request_id if record else None,
        )
        other_files = describe_render_folder(
            self.renders_bucket,
            target.folder,
            exclude=(target.object_name,),
            max_hash_bytes=self.settings.max_source_bytes,
            known=_described_files(record, stored),
        )
        change = DerivativesReady(
            render_path=target.object_name,
            generation=target.generation,
            derivatives=tuple(item.as_record() for item in written),
            other_files=tuple(item.as_record() for item in other_files),
        )
        self.store.save_render_result(RenderResult(target.task_id, change))
        record = self._settle(target)
        _log_written(target, written, len(other_files))
        return PostprocessResult(
            Outcome.PROCESSED,
            f"{len(written)} derivatives, {len(other_files)} other files",
            target,
            record,
            written=sum(item.written for item in written),
        )

    # ---- steps ------------------------------------------------------------------------

    def _reject(self, target: RenderTarget, error: ImageRejectedError) -> PostprocessResult:
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
        return PostprocessResult(Outcome.REJECTED, error.code, target, record)

    def _settle(
        self, target: RenderTarget, stored: RenderResult | None = None
    ) -> TaskRecord | None:
        """Apply the task's newest stored result to its record, publish, drop older outputs.

        Safe to repeat: applying an applied result changes nothing and publishes nothing,
        so a redelivered event finishes whatever an interrupted attempt left undone.
        """
        stored = stored or self.store.render_result(target.task_id)
        if stored is None:
            raise LookupError(f"no render result stored for task {target.task_id}")
        record = self.store.find_by_task_id(target.task_id)
        if record is not None:
            transition = self.store.apply(record.request_id, stored.record_change())
            publish_transition(self.store, self.publisher, record.request_id, transition.events)
            record = transition.record
        else:
            logger.info(
                "no task record names this task yet; the result waits for it",
                extra=log_fields(task_id=target.task_id),
            )
        # Only once nothing can point at older derivatives any more: a record keeps older
        # ones only when it failed before this generation arrived.
        path_rejected = (stored.error or {}).get("code") == RenderPathRejectedError.code
        if not path_rejected and (
            record is None or record.render_generation in (None, stored.change.generation)
        ):
            deleted = delete_superseded_derivatives(
                self.derivatives_bucket,
                target.collection_name,
                target.task_id,
                stored.change.generation,
            )
            if deleted:
                logger.info(
                    "deleted %d superseded derivatives",
                    len(deleted),
                    extra=log_fields(task_id=target.task_id),
                )
        return record


def _described_files(
    record: TaskRecord | None, stored: RenderResult | None
) -> list[dict[str, Any]]:
    """Other files already described (with their object generation) for this task."""
    return [
        *(record.other_files if record else ()),
        *(stored.change.other_files if stored else ()),
    ]


def _log_written(target: RenderTarget, written: list[StoredDerivative], other_files: int) -> None:
    logger.info(
        "derivatives ready",
        extra=log_fields(
            task_id=target.task_id,
            generation=target.generation,
            derivatives=[item.path for item in written],
            newly_written=sum(item.written for item in written),
            other_files=other_files,
        ),
    )
