"""`status` (counts per state, failures, a live watch) and `show` (one record and its log)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from srp_bundle.cli._backend import Backend, select_records
from srp_bundle.cli._console import Progress
from srp_bundle.cli._submit import positive_float
from srp_bundle.task_state import State, TaskRecord


@dataclass(frozen=True)
class Summary:
    """Counts per state of a set of records, and which failures are still unresolved."""

    records: list[TaskRecord]
    counts: dict[str, int]
    unresolved_failures: list[TaskRecord]
    retried_failures: dict[str, str]

    @property
    def active(self) -> int:
        """Records that have not reached a final state."""
        return sum(1 for record in self.records if not record.is_terminal)

    @property
    def finished(self) -> int:
        """Records in a final state."""
        return len(self.records) - self.active


def summarize(records: list[TaskRecord]) -> Summary:
    """Count per state; a failure whose request was retried later counts as resolved."""
    counts = Counter(str(record.state) for record in records)
    latest: dict[str, TaskRecord] = {}
    for record in sorted(records, key=lambda r: r.created_at):
        latest[record.retry_of or record.request_id] = record
    unresolved, retried = [], {}
    for record in records:
        if record.state != State.FAILED:
            continue
        newest = latest[record.retry_of or record.request_id]
        if newest is record:
            unresolved.append(record)
        else:
            retried[record.request_id] = newest.request_id
    return Summary(records, {str(s): counts.get(str(s), 0) for s in State}, unresolved, retried)


def add_parsers(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `status` and `show`."""
    status = commands.add_parser(
        "status",
        parents=parents,
        help="counts per state, and the failed requests",
        description=(
            "Count the records of a collection and/or a batch per state and list the failed "
            "requests with their error. Exit 1 when a failure has not been retried."
        ),
    )
    status.add_argument("--collection-id", help="SRP collection UUID")
    status.add_argument("--batch", help="the label given to `submit --batch`")
    status.add_argument("--watch", action="store_true", help="poll until no record is active")
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
    """Print counts per state (after watching, with --watch)."""
    backend = Backend(args)
    store = backend.store

    def fetch() -> Summary:
        return summarize(select_records(store, collection_id=args.collection_id, batch=args.batch))

    summary = fetch()
    timed_out = False
    if args.watch:
        summary, timed_out = _watch(fetch, summary, args.interval, args.timeout)
    if args.json:
        print(json.dumps(_status_json(summary), indent=2, sort_keys=True))
    else:
        _print_status(summary, args)
    if timed_out:
        print(f"still active after {args.timeout:g}s: {summary.active}", file=sys.stderr)
    return 1 if summary.unresolved_failures or timed_out else 0


def _watch(
    fetch: Any, summary: Summary, interval: float, timeout: float | None
) -> tuple[Summary, bool]:
    # The rate would count records finished before the watch began: leave it out.
    progress = Progress("finished", len(summary.records), show_rate=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            progress.update(summary.finished, total=len(summary.records), note=_brief(summary))
            if summary.records and summary.active == 0:
                return summary, False
            if deadline is not None and time.monotonic() + interval > deadline:
                return summary, True
            time.sleep(interval)
            summary = fetch()
    except KeyboardInterrupt:
        return summary, False  # Ctrl-C ends the watch; the report follows
    finally:
        progress.finish()


def _brief(summary: Summary) -> str:
    return " ".join(f"{state} {count}" for state, count in summary.counts.items() if count)


def _status_json(summary: Summary) -> dict[str, Any]:
    return {
        "total": len(summary.records),
        "active": summary.active,
        "counts": summary.counts,
        "failed": [
            {"request_id": r.request_id, "task_id": r.task_id, "error": r.error}
            for r in summary.unresolved_failures
        ],
        "retried": summary.retried_failures,
    }


def _print_status(summary: Summary, args: argparse.Namespace) -> None:
    scope = ", ".join(
        f"{name} {value}"
        for name, value in (("collection", args.collection_id), ("batch", args.batch))
        if value
    )
    print(f"{len(summary.records)} records ({scope})")
    for state, count in summary.counts.items():
        extra = ""
        if state == State.FAILED and summary.retried_failures:
            extra = f"  ({len(summary.retried_failures)} retried)"
        print(f"  {state:<10} {count:>7}{extra}")
    print(f"  {'active':<10} {summary.active:>7}")
    failures = summary.unresolved_failures
    if failures:
        print(f"failed requests ({len(failures)}):")
        for record in failures[: args.max_failed]:
            error = record.error or {}
            print(
                f"  {record.request_id}  {error.get('code', '?')}  "
                f"{str(error.get('message', '')).splitlines()[0] if error.get('message') else ''}"
            )
        if len(failures) > args.max_failed:
            print(f"  ... and {len(failures) - args.max_failed} more")


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
