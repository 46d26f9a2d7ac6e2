"""`backfill`: run post-processing for renders already in the bucket, safely.

Safe by construction:
- bounded: `--limit` (required) caps how many renders are post-processed in one run;
- narrow: only `render/...` objects of RENDERS_BUCKET that the post-processing function
  itself accepts (its own checks refuse the derivatives bucket, the `derivatives/` prefix
  and any object carrying derivative metadata), and only when a task record names the
  render's task and that record has no derivatives yet and has not failed;
- resumable: a checkpoint file keeps the last object name handled, objects are listed in
  name order, and the next run starts after it;
- rate-limited (`--rate`), with `--dry-run` to see what would run.
It calls the same use case as `postprocess_render`, in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srp_bundle.cli._backend import Backend, UsageError, guarded
from srp_bundle.cli._console import Progress, RateLimiter
from srp_bundle.cli._submit import positive_float
from srp_bundle.derivative_store import DERIVATIVES_PREFIX
from srp_bundle.events import EventPublisher
from srp_bundle.postprocessing import PostprocessOutcome, RenderPostprocessor, render_target
from srp_bundle.task_state import State, utc_now
from srp_bundle.trigger_events import StorageObject

RENDERS_PREFIX = "render/"


@dataclass
class Checkpoint:
    """Where a backfill stopped: resume after `last_object` in the same bucket and prefix."""

    path: Path | None
    bucket_name: str
    prefix: str
    last_object: str = ""
    processed_total: int = 0

    @classmethod
    def load(cls, path: Path | None, bucket_name: str, prefix: str) -> Checkpoint:
        """Read the checkpoint file (a fresh start when it does not exist)."""
        checkpoint = cls(path, bucket_name, prefix)
        if path is None or not path.exists():
            return checkpoint
        try:
            saved = json.loads(path.read_text())
            checkpoint.last_object = str(saved["last_object"])
            checkpoint.processed_total = int(saved.get("processed_total", 0))
            saved_scope = (saved["renders_bucket"], saved["prefix"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"checkpoint {path} is unreadable: {error}") from None
        if saved_scope != (bucket_name, prefix):
            raise UsageError(
                f"checkpoint {path} belongs to gs://{saved_scope[0]}/{saved_scope[1]}, "
                f"not gs://{bucket_name}/{prefix}: use another checkpoint file"
            )
        return checkpoint

    def save(self, last_object: str) -> None:
        """Record progress atomically (a crash never leaves half a file)."""
        self.last_object = last_object
        if self.path is None:
            return
        document = {
            "renders_bucket": self.bucket_name,
            "prefix": self.prefix,
            "last_object": last_object,
            "processed_total": self.processed_total,
            "updated_at": utc_now().isoformat(),
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n")
        os.replace(temporary, self.path)


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `backfill`."""
    parser = commands.add_parser(
        "backfill",
        parents=parents,
        help="post-process renders already in the bucket (bounded, checkpointed)",
        description=(
            "Run post-processing for render objects under render/ in RENDERS_BUCKET whose "
            "task record has no derivatives yet. At most --limit renders per run; with "
            "--checkpoint, a later run resumes after the last object handled."
        ),
    )
    parser.add_argument("--limit", type=int, required=True, help="most renders to process")
    parser.add_argument("--checkpoint", type=Path, help="JSON file to resume from and update")
    parser.add_argument("--prefix", default=RENDERS_PREFIX, help="object prefix (render/...)")
    parser.add_argument("--collection-id", help="only records of this collection")
    parser.add_argument("--batch", help="only records of this batch")
    parser.add_argument("--rate", type=positive_float, help="process at most N per second")
    parser.add_argument("--dry-run", action="store_true", help="list, process nothing")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Walk the renders in name order until `--limit` renders were processed."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if not args.prefix.startswith(RENDERS_PREFIX) or args.prefix.startswith(DERIVATIVES_PREFIX):
        raise UsageError(f"--prefix must start with {RENDERS_PREFIX}")
    backend = Backend(args)
    settings = backend.settings
    renders_bucket = backend.bucket("RENDERS_BUCKET")
    backend.bucket("DERIVATIVES_BUCKET")
    store = backend.store
    checkpoint = Checkpoint.load(args.checkpoint, renders_bucket.name, args.prefix)
    postprocessor = None
    if not args.dry_run:
        events_topic_path = backend.topic_path("EVENTS_TOPIC")
        publisher = EventPublisher(
            backend.publisher, settings.project_id, events_topic_path.rsplit("/", 1)[1]
        )
        postprocessor = RenderPostprocessor(settings, store, backend.storage, publisher)

    counts: Counter[str] = Counter()  # outcomes of post-processing, and skip reasons
    runs = 0
    limiter = RateLimiter(args.rate)
    progress = Progress("backfill", args.limit)
    start = checkpoint.last_object or None
    blobs = backend.storage.list_blobs(renders_bucket, prefix=args.prefix, start_offset=start)
    error: str | None = None
    for blob in guarded_iter(blobs):
        if blob.name <= checkpoint.last_object:
            continue
        render = StorageObject(
            bucket=renders_bucket.name,
            name=blob.name,
            generation=int(blob.generation),
            size=blob.size,
            content_type=blob.content_type,
            metadata=dict(blob.metadata or {}),
        )
        reason = _skip_reason(settings, store, render, args)
        if reason is not None:
            counts[reason] += 1
            if not args.dry_run:
                checkpoint.save(blob.name)
            continue
        if runs >= args.limit:
            counts["left for the next run"] += 1
            break
        runs += 1
        if postprocessor is None:
            counts["would process"] += 1
            print(f"would process {blob.name}")
            progress.advance()
            continue
        limiter.wait()
        try:
            result = postprocessor.process(render)
        except Exception as failure:  # stop at the first failure; the checkpoint is before it
            error = f"{blob.name}: {type(failure).__name__}: {failure}"
            break
        counts[str(result.outcome)] += 1
        checkpoint.processed_total += result.outcome != PostprocessOutcome.IGNORED
        checkpoint.save(blob.name)
        progress.advance(note=str(result.outcome))
    progress.finish()

    summary = ", ".join(f"{count} {name}" for name, count in sorted(counts.items())) or "nothing"
    print(f"backfill{' (dry run)' if args.dry_run else ''}: {summary}")
    if args.checkpoint and not args.dry_run:
        print(f"checkpoint: {args.checkpoint} (last object {checkpoint.last_object or '-'})")
    if error is not None:
        print(f"stopped at a failure, re-run to resume: {error}", file=sys.stderr)
        return 1
    return 0


def _skip_reason(
    settings: Any, store: Any, render: StorageObject, args: argparse.Namespace
) -> str | None:
    target = render_target(settings, render)
    if isinstance(target, str):
        return "not renders"
    record = store.find_by_task_id(target.task_id)
    if record is None:
        return "without a record"
    if args.collection_id and record.collection_id != args.collection_id:
        return "of other collections"
    if args.batch and record.batch_id != args.batch:
        return "of other batches"
    if any(file.get("path") == render.name for file in record.files) or (
        record.derivatives and not record.files  # a record from before per-file results
    ):
        return "with derivatives"
    if record.state == State.FAILED:
        return "of failed records"
    return None


def guarded_iter(blobs: Any) -> Any:
    """Iterate a listing, turning connection failures into the CLI's clear error."""
    iterator = iter(blobs)
    while True:
        try:
            blob = guarded("the renders bucket listing", lambda: next(iterator))
        except StopIteration:
            return
        yield blob
