"""`status` (counts per state, failures, a live watch) and `show` (one record and its log)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from srp_bundle.batches import BatchRecord, BatchState, BatchStore, Counts
from srp_bundle.cli._backend import Backend, UsageError, count_by_state, member_pages
from srp_bundle.cli._console import Progress
from srp_bundle.cli._submit import positive_float
from srp_bundle.task_state import State, TaskRecord
from srp_bundle.task_store import TaskStore


@dataclass(frozen=True)
class Status:
    """A batch's (or a collection's) answer: counts, whether it is done, the failures.

    Read in a few reads whatever the size: a batch's record and one aggregation over its
    counter shards (a collection: one count per state), and one page of failures.
    """

    scope: str
    counts: dict[str, int]
    failures: list[TaskRecord]
    # Failed request -> (its latest retry, that retry's state).
    retried: dict[str, tuple[str, str]]
    batch: BatchRecord | None = None
    tally: Counts | None = None
    refusals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Members the batch was declared with; for a collection, the records counted."""
        if self.batch is not None and self.batch.total is not None:
            return self.batch.total
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        """Members (first attempts) in a final state."""
        if self.tally is not None:
            return self.tally.finished
        return self.counts.get(str(State.COMPLETED), 0) + self.counts.get(str(State.FAILED), 0)

    @property
    def done(self) -> bool:
        """The batch is done (`batch.completed` decided), or no record of the collection is
        active."""
        if self.tally is not None:
            return self.batch is not None and self.batch.state == BatchState.DONE
        return self.finished == self.total > 0

    @property
    def unresolved(self) -> int:
        """Items whose every attempt failed: a completed retry resolves its item."""
        if self.tally is not None:
            return self.tally.unresolved_failures
        return sum(1 for record in self.failures if record.request_id not in self._resolved)

    @property
    def beyond_total(self) -> int:
        """Members counted past the declared total (decision 0018): shown, never dropped."""
        if self.tally is None or self.batch is None or self.batch.total is None:
            return 0
        return max(0, self.tally.finished - self.batch.total)

    @property
    def _resolved(self) -> set[str]:
        return {r for r, (_, state) in self.retried.items() if state == State.COMPLETED}


def read_status(store: TaskStore, args: argparse.Namespace, *, with_failures: bool) -> Status:
    """The status of `--batch` (else `--collection-id`); failures only when asked."""
    failures: list[TaskRecord] = []
    if with_failures and args.max_failed > 0:
        pages = member_pages(
            store,
            collection_id=args.collection_id,
            batch=args.batch,
            state=State.FAILED,
            page_size=args.max_failed,
            limit=args.max_failed,
        )
        failures = [record for page in pages for record in page]
    retried = {r.request_id: latest for r in failures if (latest := _latest_retry(store, r))}
    if args.batch:
        batches = BatchStore(store)
        tally = batches.counts(args.batch)
        counts = {
            str(State.COMPLETED): tally.completed + tally.retries_completed,
            str(State.FAILED): tally.failed + tally.retries_failed,
        }
        return Status(
            f"batch {args.batch}",
            counts,
            failures,
            retried,
            batch=batches.get(args.batch),
            tally=tally,
            refusals=batches.refusals(args.batch),
        )
    if not args.collection_id:
        raise UsageError("name the records: pass --collection-id and/or --batch")
    counts = count_by_state(store, args.collection_id)
    return Status(f"collection {args.collection_id}", counts, failures, retried)


def _latest_retry(store: TaskStore, record: TaskRecord) -> tuple[str, str] | None:
    """The newest retry of a failed request (one indexed query), or None."""
    original = record.retry_of or record.request_id
    query = store.records.where(filter=FieldFilter("retry_of", "==", original))
    attempts = [TaskRecord.from_document(s.to_dict()) for s in query.stream()]
    newer = [a for a in attempts if a.created_at > record.created_at]
    if not newer:
        return None
    latest = max(newer, key=lambda a: a.created_at)
    return latest.request_id, str(latest.state)


def add_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `status` and `show`."""
    status = commands.add_parser(
        "status",
        parents=parents,
        help="counts per state, and the failed requests",
        description=(
            "The answer for a batch (its counters: a few reads whatever its size) or a "
            "collection (a count per state): done or not, completed, failed, and the failed "
            "requests with their error, through the indexed (batch_id, state) query. Exit 1 "
            "when a failure has not been resolved by a completed retry."
        ),
    )
    status.add_argument("--collection-id", help="SRP collection UUID")
    status.add_argument("--batch", help="the batch id given to `submit --batch`")
    status.add_argument(
        "--watch", action="store_true", help="poll the counts until the batch is done"
    )
    status.add_argument("--interval", type=positive_float, default=5.0, help="watch poll seconds")
    status.add_argument("--timeout", type=positive_float, help="stop watching after N seconds")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--max-failed", type=int, default=50, help="failures to list (50)")
    status.set_defaults(handler=run_status)

    show = commands.add_parser(
        "show",
        parents=parents,
        help="one request's record and event log",
        description="Print one request's full task record and its event log, oldest first.",
    )
    show.add_argument("request_id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=run_show)


def run_status(args: argparse.Namespace) -> int:
    """Print the answer (after watching the counts, with --watch)."""
    store = Backend(args).store
    timed_out = False
    if args.watch:
        timed_out = _watch(store, args)
    status = read_status(store, args, with_failures=True)
    if args.json:
        print(json.dumps(_status_json(status), indent=2, sort_keys=True, default=json_default))
    else:
        _print_status(status, args)
    if timed_out:
        left = status.total - status.finished
        print(f"not done after {args.timeout:g}s: {left} still active", file=sys.stderr)
    return 1 if status.unresolved or timed_out else 0


def _watch(store: TaskStore, args: argparse.Namespace) -> bool:
    """Poll the counts (no failure listing) until done; True when the timeout came first."""
    status = read_status(store, args, with_failures=False)
    # The rate would count records finished before the watch began: leave it out.
    progress = Progress("finished", status.total, show_rate=False)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    try:
        while True:
            progress.update(status.finished, total=status.total, note=_brief(status))
            if status.done:
                return False
            if deadline is not None and time.monotonic() + args.interval > deadline:
                return True
            time.sleep(args.interval)
            status = read_status(store, args, with_failures=False)
    except KeyboardInterrupt:
        return False  # Ctrl-C ends the watch; the report follows
    finally:
        progress.finish()


def _brief(status: Status) -> str:
    return " ".join(f"{state} {count}" for state, count in status.counts.items() if count)


def done_line(status: Status) -> str:
    """One line a script can wait for: `batch X: done, total T, completed C, failed F`."""
    batch = status.batch
    if status.tally is not None and batch is None:
        state = "not declared"
    elif status.done:
        state = "done"
    else:
        state = "open"
    completed = status.counts.get(str(State.COMPLETED), 0)
    failed = status.counts.get(str(State.FAILED), 0)
    if status.done and batch is not None:
        completed, failed = batch.completed, batch.failed  # what batch.completed said
    total: int | str = status.total
    if status.tally is not None and (batch is None or batch.total is None):
        total = "?"
    line = f"{status.scope}: {state}, total {total}, completed {completed}, failed {failed}"
    if status.tally is not None and (status.tally.retries_completed or status.tally.retries_failed):
        line += (
            f"; retries: {status.tally.retries_completed} completed, "
            f"{status.tally.retries_failed} failed"
        )
    return line


def _status_json(status: Status) -> dict[str, Any]:
    document: dict[str, Any] = {
        "scope": status.scope,
        "done": status.done,
        "total": status.total,
        "finished": status.finished,
        "counts": status.counts,
        "unresolved_failures": status.unresolved,
        "failed": [
            {
                "request_id": r.request_id,
                "task_id": r.task_id,
                "error": r.error,
                "retried_as": status.retried.get(r.request_id, (None,))[0],
            }
            for r in status.failures
        ],
    }
    if status.tally is not None:
        document["batch"] = status.batch.to_document() if status.batch else None
        document["shards"] = status.tally.__dict__
        document["beyond_total"] = status.beyond_total
        document["refused_declarations"] = status.refusals
    return document


def _print_status(status: Status, args: argparse.Namespace) -> None:
    print(done_line(status))
    for state, count in status.counts.items():
        if count or status.tally is None:
            print(f"  {state:<10} {count:>7}")
    if status.tally is not None:
        if status.batch is None:
            print("  the batch is not declared: `submit --batch` declares it")
        if status.beyond_total:
            print(f"  {status.beyond_total} member(s) beyond the declared total")
        for refusal in status.refusals:
            print(f"  declaration refused: {refusal.get('reason')}")
    if status.unresolved:
        print(f"unresolved failures: {status.unresolved}")
    if status.failures:
        print(f"failed requests (first {len(status.failures)}, by request id):")
        for record in status.failures:
            error = record.error or {}
            message = str(error.get("message") or "").splitlines()
            retry = status.retried.get(record.request_id)
            note = f"  -> {retry[0]} ({retry[1]})" if retry else ""
            print(
                f"  {record.request_id}  {error.get('code', '?')}  "
                f"{message[0] if message else ''}{note}"
            )


def run_show(args: argparse.Namespace) -> int:
    """Print a record and its event log; exit 1 when there is no such record."""
    store = Backend(args).store
    record = store.get(args.request_id)
    if record is None:
        print(f"no record for request {args.request_id!r}", file=sys.stderr)
        return 1
    events = store.event_log(args.request_id)
    if args.json:
        document = {"record": _shown(record), "events": events}
        print(json.dumps(document, indent=2, sort_keys=True, default=json_default))
        return 0
    document = _shown(record)
    width = max(len(name) for name in document)
    for name, value in document.items():
        if value in (None, [], {}, "") and name not in ("task_id", "error"):
            continue
        print(f"{name:<{width}}  {_readable(value)}")
    print(f"events ({len(events)}):")
    for entry in events:
        rest = {k: v for k, v in entry.items() if k not in ("at", "kind")}
        print(f"  {_readable(entry.get('at'))}  {entry.get('kind', '?'):<12} {_readable(rest)}")
    return 0


def _shown(record: TaskRecord) -> dict[str, Any]:
    """The record's document, with input_data as the object it is (stored as its text)."""
    document = record.to_document()
    text = document.pop("input_data_json")
    try:
        document["input_data"] = json.loads(text)
    except ValueError:
        document["input_data"] = text
    return document


def json_default(value: Any) -> Any:
    """JSON for Firestore values: timestamps as ISO 8601, anything else as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _readable(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=json_default)
    return str(value)
