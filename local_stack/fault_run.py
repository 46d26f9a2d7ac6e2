"""Fault runs on the local stack: every fault mode at once, and the audit of exactly-once.

The end-to-end tests (tests/e2e) and the fault benchmark (bench/fault_run.py) drive a
`LocalStack` with these faults and check the same invariants (README "What you can rely on"):
- no request lost: each one `completed`, or `failed` with a reason;
- `render.completed` exactly once per completed request;
- every SRP task is the request's one attached task or a recorded duplicate; a task SRP never
  named to the webhook (all its callbacks dropped) is counted on its record as an unconfirmed
  submission; a request posts again only if SRP had named none of its earlier tasks by then,
  and no sooner than AMBIGUOUS_SUBMIT_WAIT_SECONDS after its previous POST;
- no record over 100 KB.
The checks over records and events are local_stack/invariants.py's, which the simulator uses too.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local_stack.invariants import (
    completed_not_once,
    failed_without_reason,
    is_settled,
    unaccounted_tasks,
)
from local_stack.srp_faults import rate_setting
from local_stack.stack import LocalStack
from srp_bundle import settings as bundle_settings

# Every fault the SRP emulator implements (local_stack/srp_faults.py), each at a rate that hits
# several requests of a small run.
SRP_FAULTS: dict[str, Any] = {
    "srp_post_error_rate": 0.1,
    "srp_get_error_rate": 0.1,
    "srp_post_429_rate": 0.1,
    "srp_get_429_rate": 0.1,
    "retry_after_seconds": 1,
    "srp_lost_answer_rate": 0.1,
    "srp_create_then_error_rate": 0.1,
    "srp_create_then_hang_rate": 0.1,
    "srp_create_then_hang_seconds": 4,  # past SRP_TIMEOUT_SECONDS below
    "srp_post_slow_rate": 0.1,
    "srp_get_slow_rate": 0.1,
    "slow_seconds": 0.5,
    "srp_cb_duplicate_rate": 0.3,
    "srp_cb_out_of_order_rate": 0.3,
    "srp_cb_drop_rate": 0.25,
    "srp_early_done_rate": 0.2,
    "srp_late_done_rate": 0.1,
    "srp_late_done_delay": 1.0,
    "srp_render_fails_rate": 0.1,
}
# The API faults of a POST that each run makes certain once: by the name the SRP emulator
# logs them under, which is also the base name of their rate setting.
POST_FAULTS = (
    "srp_post_error",
    "srp_post_429",
    "srp_lost_answer",
    "srp_create_then_error",
    "srp_create_then_hang",
    "srp_post_slow",
)
# Every commit of every function may fail before it is applied, or be applied and its answer
# lost (the answer's code is chosen by the caller: DEADLINE_EXCEEDED or UNAVAILABLE).
FIRESTORE_FAULTS: dict[str, Any] = {"fail_commit_rate": 0.08, "drop_answer_rate": 0.08}
# Short waits so that a run exercises the slow paths (reconcile, ambiguous POSTs) in seconds.
FAULT_RUN_ENV = {
    "STALE_AFTER_SECONDS": "2",
    "AMBIGUOUS_SUBMIT_WAIT_SECONDS": "3",
    "SRP_TIMEOUT_SECONDS": "2",
}
MAX_RECORD_BYTES = 100_000
DEFAULT_AMBIGUOUS_SUBMIT_WAIT_SECONDS = 300  # srp_bundle.settings' default


def publish_under_each_post_fault(
    stack: LocalStack, publish: Callable[[], str], seed: int, timeout: float = 60
) -> list[str]:
    """One request per API fault mode, each mode certain (rate 1) until SRP has injected it;
    then every fault of SRP_FAULTS at its rate, seeded. Returns the request ids published.

    Rates alone make a small run miss a mode now and then; this way each one is exercised.
    """
    assert stack.srp is not None, "the stack is not running"
    control = stack.srp.control
    ids = []
    rates = [rate_setting(name) for name in POST_FAULTS]
    for name in POST_FAULTS:
        control.set_faults(**{**SRP_FAULTS, **dict.fromkeys(rates, 0.0), rate_setting(name): 1.0})
        ids.append(publish())
        control.wait_for_requests(fault=name, timeout=timeout)
    control.set_faults(**SRP_FAULTS, seed=seed)
    return ids


def wait_with_reconcile(
    stack: LocalStack, ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """What Cloud Scheduler does in production: run reconcile_tasks now and then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stack.wait_for_states(ids, timeout=3)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            stack.trigger_reconcile()


def wait_for_events_with_reconcile(
    stack: LocalStack, event_type: str, ids: list[str], timeout: float
) -> list[dict[str, Any]]:
    """Events of `event_type` for every id; an event whose publisher died waits in the outbox
    until reconcile republishes it, so reconcile runs meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stack.wait_for_events(event_type, ids, timeout=5)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            stack.trigger_reconcile()


def request_named_by(task: dict[str, Any]) -> str:
    """The request id in our callback URL, the first of the task's callback_urls."""
    url = task["options"]["callback_urls"][0]["url"]
    return parse_qs(urlsplit(url).query)["request_id"][0]


@dataclass
class Audit:
    """What a fault run left behind: counts, and every broken invariant by kind."""

    states: Counter[str] = field(default_factory=Counter)
    srp_tasks: int = 0
    attached: int = 0
    duplicates: int = 0
    unconfirmed: int = 0
    largest_record_bytes: int = 0
    violations: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, kind: str, detail: Any) -> None:
        """Record one broken invariant."""
        self.violations.setdefault(kind, []).append(detail)

    def of(self, kind: str) -> list[Any]:
        """The violations of one kind (empty when the invariant holds)."""
        return self.violations.get(kind, [])


def audit(
    stack: LocalStack, records: dict[str, dict[str, Any]], events_timeout: float = 30
) -> Audit:
    """Check every invariant of a finished fault run; violations are collected, not raised."""
    result = Audit(states=Counter(str(r.get("state")) for r in records.values()))
    for request_id, record in records.items():
        if not is_settled(record):
            result.add("not_final", (request_id, record.get("state")))
        elif failed_without_reason(record):
            result.add("failed_without_reason", request_id)
        size = len(json.dumps(record, default=str).encode())
        result.largest_record_bytes = max(result.largest_record_bytes, size)
        if size > MAX_RECORD_BYTES:
            result.add("record_too_large", (request_id, size))
    _audit_events(stack, records, result, events_timeout)
    _audit_srp_tasks(stack, records, result)
    return result


def _audit_events(
    stack: LocalStack, records: dict[str, dict[str, Any]], result: Audit, timeout: float
) -> None:
    completed_ids = [i for i, r in records.items() if r.get("state") == "completed"]
    try:
        wait_for_events_with_reconcile(stack, "render.completed", completed_ids, timeout)
    except TimeoutError as error:
        result.add("render_completed_missing", str(error))
    time.sleep(0.5)  # room for a duplicate to show up, were there one
    # Every event received counts, even a redelivery of the same id: the consumer sees it twice.
    completed = [
        (str(index), e["data"]["request_id"])
        for index, e in enumerate(stack.events())
        if e["type"] == "render.completed"
    ]
    for request_id, count in completed_not_once(records, completed):
        result.add("render_completed_not_once", (request_id, count))


def _seconds_between(first: str | None, second: str | None) -> float | None:
    if not first or not second:
        return None
    return (datetime.fromisoformat(second) - datetime.fromisoformat(first)).total_seconds()


def _audit_srp_tasks(stack: LocalStack, records: dict[str, dict[str, Any]], result: Audit) -> None:
    assert stack.srp is not None, "the stack is not running"
    control = stack.srp.control
    attached = [str(r["task_id"]) for r in records.values() if r.get("task_id")]
    duplicates = {str(d) for r in records.values() for d in r.get("duplicate_task_ids") or []}
    srp_tasks = {entry["task"]["id"]: entry["task"] for entry in control.tasks()}
    result.srp_tasks, result.attached, result.duplicates = (
        len(srp_tasks),
        len(attached),
        len(duplicates),
    )
    result.unconfirmed = sum(int(r.get("unconfirmed_submissions") or 0) for r in records.values())
    for task_id, count in Counter(attached).items():
        if count > 1:
            result.add("task_attached_twice", task_id)
    for task_id in set(attached) & duplicates:
        result.add("attached_and_duplicate", task_id)
    for task_id in (set(attached) | duplicates) - set(srp_tasks):
        result.add("unknown_to_srp", task_id)
    named_at: dict[str, str] = {}  # task id -> when the webhook first accepted a callback for it
    for entry in control.callbacks():
        if entry["delivered"]:
            named_at.setdefault(entry["task_id"], entry["logged_at"])
    for task_id in set(srp_tasks) - set(attached) - duplicates:
        request_id = request_named_by(srp_tasks[task_id])
        if task_id in named_at:
            result.add("named_but_unrecorded", (request_id, task_id))
        elif not (records.get(request_id) or {}).get("unconfirmed_submissions"):
            result.add("unaccounted_task", (request_id, task_id))
    ambiguous_wait = float(
        stack.env.get(bundle_settings.AMBIGUOUS_SUBMIT_WAIT_SECONDS)
        or DEFAULT_AMBIGUOUS_SUBMIT_WAIT_SECONDS
    )
    posts = {entry["task_id"]: entry for entry in control.requests(method="POST")}
    posted_at = {task_id: str(post["received_at"]) for task_id, post in posts.items() if task_id}
    post_fault = {task_id: post["fault"] for task_id, post in posts.items() if task_id}
    by_request: dict[str, list[str]] = {}
    for task_id in sorted(srp_tasks, key=lambda t: posted_at.get(t, "")):
        by_request.setdefault(request_named_by(srp_tasks[task_id]), []).append(task_id)
    tasks = ((task_id, request) for request, task_ids in by_request.items() for task_id in task_ids)
    for request_id, count in unaccounted_tasks(records, tasks).items():
        result.add("more_tasks_than_accounted", (request_id, count))
    for request_id, task_ids in by_request.items():
        # After a POST whose outcome it could not know, a request waits this long for SRP to
        # name the task before it posts again. Both times below come from the same clock (the
        # emulator logs a POST before the function's wait starts), so this cannot flake.
        for earlier, later in itertools.pairwise(task_ids):
            gap = _seconds_between(posted_at.get(earlier), posted_at.get(later))
            if gap is not None and gap < ambiguous_wait:
                result.add(
                    "posted_again_within_ambiguous_wait",
                    (request_id, f"{gap:.2f}s after a POST answered {post_fault.get(earlier)}"),
                )
        for index, later in enumerate(task_ids[1:], start=1):
            named_before = [
                earlier
                for earlier in task_ids[:index]
                if earlier in named_at and named_at[earlier] < posted_at.get(later, "")
            ]
            if named_before:
                result.add("posted_after_srp_named_a_task", (request_id, later, named_before))
