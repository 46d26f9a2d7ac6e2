"""`retry`: re-drive failed requests as new requests linked to the original.

A retry of request `x` is a new request `x-retry<N>` with `retry_of: x`, carrying x's
collection, input, priority, callbacks and metadata. Retries of retries stay flat: they
all point at the first request, and N counts up. A request whose latest attempt is
still active or completed is not retried again.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from srp_bundle.callback_policy import DEFAULT_CALLBACK_POLICY, CallbackPolicy
from srp_bundle.cli._backend import RENDER_REQUESTS_TOPIC, Backend, UsageError, member_pages
from srp_bundle.cli._submit import Row, positive_float, publish_rows
from srp_bundle.errors import InvalidMessageError
from srp_bundle.render_requests import parse_render_request
from srp_bundle.srp_models import RawJson, encode_json
from srp_bundle.task_state import State, TaskRecord
from srp_bundle.task_store import TaskStore


@dataclass(frozen=True)
class PlannedRetry:
    """One retry to publish."""

    failed: TaskRecord
    request_id: str
    body: dict[str, Any]


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `retry`."""
    parser = commands.add_parser(
        "retry",
        parents=parents,
        help="re-drive failed requests as new, linked requests",
        description=(
            "Publish a new request <original>-retry<N> with retry_of=<original> for each "
            "failed request of a collection, a batch, or the given request ids. Asks for "
            "confirmation unless --yes."
        ),
    )
    parser.add_argument("request_ids", nargs="*", help="failed requests to retry")
    parser.add_argument("--collection-id", help="retry the failures of this collection")
    parser.add_argument("--batch", help="retry the failures of this batch")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--dry-run", action="store_true", help="show the plan, publish nothing")
    parser.add_argument("--rate", type=positive_float, help="publish at most N per second")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Plan, confirm, publish: given request ids at once, a batch's or a collection's
    failures a page at a time (indexed query, cursor on the request id)."""
    if not args.request_ids and not (args.collection_id or args.batch):
        raise UsageError("name the failures: request ids, --collection-id or --batch")
    backend = Backend(args)
    store = backend.store
    # Checked as submit_task will check them (ALLOW_LOCAL_HTTP_CALLBACKS and
    # FORWARD_PRODUCER_CALLBACKS from the CLI's environment).
    policy = CallbackPolicy.from_settings(backend.settings)
    problems: list[str] = []
    if args.request_ids:
        failed = []
        for request_id in args.request_ids:
            record = store.get(request_id)
            if record is None:
                problems.append(f"{request_id}: no such record")
            elif record.state != State.FAILED:
                problems.append(f"{request_id}: is {record.state}, not failed")
            else:
                failed.append(record)
        pages: Iterable[list[TaskRecord]] = [failed]
    else:
        pages = member_pages(
            store, collection_id=args.collection_id, batch=args.batch, state=State.FAILED
        )
    topic_path: str | None = None
    planned = published = 0
    failures: list[tuple[Row, str]] = []
    for page in pages:
        already: list[str] = []
        plan = plan_retries(store, page, problems, already, policy)
        for note in already:
            print(f"already retried {note}")
        for item in plan:
            code = (item.failed.error or {}).get("code", "?")
            print(f"  {item.failed.request_id} -> {item.request_id}  ({code})")
        planned += len(plan)
        if not plan or args.dry_run:
            continue
        if topic_path is None:
            topic_path = backend.topic_path(RENDER_REQUESTS_TOPIC)
            question = f"publish retries of {_scope(args)} to {topic_path}? [y/N] "
            if not args.yes and not _confirm(question):
                print("declined: nothing published", file=sys.stderr)
                return 1
        rows = [Row(0, item.request_id, item.body) for item in plan]
        sent, refused = publish_rows(backend.publisher, topic_path, rows, args.rate)
        published += sent
        failures += refused
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    if not planned:
        print("nothing to retry")
        return 1 if problems else 0
    if args.dry_run:
        print(f"dry run: {planned} retries planned, nothing published")
        return 1 if problems else 0
    print(f"retried: {published} published, {len(failures)} failed")
    for row, reason in failures:
        print(f"  {row.request_id}: {reason}", file=sys.stderr)
    return 1 if failures or problems else 0


def _scope(args: argparse.Namespace) -> str:
    if args.request_ids:
        return f"{len(args.request_ids)} request(s)"
    return f"batch {args.batch}" if args.batch else f"collection {args.collection_id}"


def plan_retries(
    store: TaskStore,
    failed: list[TaskRecord],
    problems: list[str],
    already: list[str],
    policy: CallbackPolicy = DEFAULT_CALLBACK_POLICY,
) -> list[PlannedRetry]:
    """One retry per original request whose latest attempt failed.

    Requests that cannot be retried are added to `problems`; those whose retry is
    active or completed to `already`.
    """
    plan: list[PlannedRetry] = []
    seen: set[str] = set()
    for record in failed:
        original_id = record.retry_of or record.request_id
        if original_id in seen:
            continue
        seen.add(original_id)
        attempts = [
            TaskRecord.from_document(snapshot.to_dict())
            for snapshot in store.records.where(
                filter=FieldFilter("retry_of", "==", original_id)
            ).stream()
        ]
        original = store.get(original_id) or record
        active = [a for a in attempts if a.state != State.FAILED]
        if active:
            already.append(
                f"{record.request_id}: retried as {active[0].request_id} ({active[0].state})"
            )
            continue
        number = 1 + max((_retry_number(a.request_id, original_id) for a in attempts), default=0)
        request_id = f"{original_id}-retry{number}"
        body: dict[str, Any] = {
            "collection_id": original.collection_id,
            "input_data": RawJson(original.input_data_json),  # byte for byte, as first sent
            "request_id": request_id,
            "retry_of": original_id,
            "metadata": original.metadata,
        }
        if original.batch_id is not None:
            # Still the batch's: counted apart as a retry (batches.counter_for).
            body["batch_id"] = original.batch_id
        if original.priority is not None:
            body["priority"] = original.priority
        try:
            if original.callback_urls:
                # With the producer's header values, which the record does not keep.
                body["callback_urls"] = store.producer_callbacks(original)
            parse_render_request(encode_json(body), message_id=request_id, callback_policy=policy)
        except InvalidMessageError as error:
            problems.append(f"{record.request_id}: cannot be retried: {error}")
            continue
        plan.append(PlannedRetry(record, request_id, body))
    return plan


def _retry_number(request_id: str, original_id: str) -> int:
    match = re.fullmatch(re.escape(original_id) + r"-retry(\d+)", request_id)
    return int(match.group(1)) if match else 0


def _confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
