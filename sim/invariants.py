"""The simulator's invariants 1-8 (docs/simulation.md): checked at every commit, POST, write
and publish, and at quiescence. The checks over records and events are the plain predicates
of local_stack/invariants.py, which the local stack's fault runs check too; the state order is
task_state's own (`state_rank`), so a planted transition that moves a record back is caught.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from local_stack.invariants import (
    completed_not_once,
    failed_without_reason,
    is_settled,
    moved_backwards,
    unaccounted_tasks,
)
from sim import firestore
from sim.srp import Post, Srp
from sim.world import World
from srp_bundle.settings import Settings
from srp_bundle.task_state import State
from srp_bundle.task_store import OUTBOX_SUFFIX

TASKS = "srp_tasks"
# Records stay far below Firestore's 1 MiB; the e2e run's bound is the one to hold.
MAX_RECORD_BYTES = 100 * 1024

Violate = Callable[[str, str], None]


def is_transient(error: BaseException) -> bool:
    """Invariant 8: whether a retry can fix what a handler raised."""
    from google.api_core import exceptions

    from srp_bundle.errors import BundleError

    if isinstance(error, exceptions.GoogleAPICallError | exceptions.RetryError):
        return not isinstance(error, exceptions.InvalidArgument)
    if isinstance(error, BundleError):
        return bool(error.transient)
    # firestore.transactional gives up after 5 ABORTED attempts with a ValueError.
    return isinstance(error, ValueError) and isinstance(error.__cause__, exceptions.Aborted)


class Invariants:
    """What the checks remember (committed events, published events, derivative writes), and
    the hooks that call `violate(invariant, detail)` on the first broken one."""

    def __init__(
        self,
        world: World,
        db: firestore.Server,
        srp: Srp,
        settings: Settings,
        expected: dict[str, str],
        violate: Violate,
    ) -> None:
        self.world = world
        self.db = db
        self.srp = srp
        self.settings = settings
        self.expected = expected  # request id -> how it was produced
        self.violate = violate
        self.committed_events: set[str] = set()
        self.published: list[tuple[str, str, str]] = []  # (event_id, type, request_id)
        self.derivative_writes: Counter[str] = Counter()

    # ---- after every step ----------------------------------------------------------------

    def on_refused(self, path: tuple[str, ...], error: Exception) -> None:
        """Invariant 6: Firestore refuses no write for production's data limits."""
        self.violate("6-limits", f"Firestore refuses a write to {'/'.join(path)}: {error}")

    def on_document_write(
        self,
        path: tuple[str, ...],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        size: int,
    ) -> None:
        """Invariants 1, 2, 3, 6 and 7 at every committed write of a record."""
        if len(path) == 2 and path[0] == TASKS + OUTBOX_SUFFIX and after is not None:
            self.committed_events.add(after["event"]["event_id"])
            return
        if len(path) != 2 or path[0] != TASKS:
            return
        if after is None:
            self.violate("1-terminal", f"record {path[1]} was deleted")
            return
        if size > MAX_RECORD_BYTES:
            self.violate("6-limits", f"record {path[1]} is {size} bytes")
        if before is None:
            return
        backwards = moved_backwards(before, after)
        if backwards is not None:
            self.violate("3-monotonic", f"{path[1]}: {backwards}")
        for task_id in [after.get("task_id"), *after.get("duplicate_task_ids", [])]:
            task = self.srp.tasks.get(task_id) if task_id else None
            if task is not None and task.request_id != path[1]:
                self.violate(
                    "2-one-task", f"{path[1]} names task {task_id[:8]} of request {task.request_id}"
                )
        if before.get("task_id") and after.get("task_id") != before.get("task_id"):
            self.violate("2-one-task", f"{path[1]}: task {before['task_id']} was replaced")
        error = after.get("error") or {}
        if (
            State(after["state"]) == State.FAILED
            and State(before["state"]) != State.FAILED
            and error.get("code") in ("dead_lettered", "request_expired")
            and before.get("task_id")
        ):
            self.violate(
                "7-no-false-failure",
                f"{path[1]}: failed as {error.get('code')} though SRP has its task",
            )

    def on_derivative_write(self, name: str) -> None:
        """Invariant 5: a derivative is written once per source generation."""
        self.derivative_writes[name] += 1
        if self.derivative_writes[name] > 1:
            self.violate("5-derivatives", f"{name} written twice")

    def on_post(self, post: Post) -> None:
        """Invariant 2 at the moment SRP creates a second task for a request."""
        if post.task_id is None:
            return
        earlier = [
            p
            for p in self.srp.posts
            if p.request_id == post.request_id and p.task_id and p is not post
        ]
        if not earlier:
            return
        last = earlier[-1]
        waited = post.at - last.at
        if last.answer != "ambiguous" and last.answer != "created":
            return
        wait = self.settings.ambiguous_submit_wait_seconds
        record = self.db.lookup((TASKS, post.request_id))[1] or {}
        if last.answer == "created" and record.get("task_id") == last.task_id:
            self.violate(
                "2-one-task",
                f"{post.request_id}: POSTed again after task {last.task_id[:8]} was attached",
            )
        # The wait runs from the intent recorded before the POST, which reaches SRP at most
        # one client timeout later: POSTs this close together never waited.
        if waited < wait - self.settings.srp_timeout_seconds:
            self.violate(
                "2-one-task",
                f"{post.request_id}: a second SRP task {waited:.1f}s after the POST that created"
                f" {last.task_id[:8]} (answer: {last.answer}); the ambiguity wait is {wait}s",
            )

    def check_retryable(self, error: BaseException) -> None:
        """Invariant 8: a handler raises (asks for a retry) only for what a retry can fix."""
        if is_transient(error):
            return
        self.violate(
            "8-retry-only-transient",
            f"a handler raised {type(error).__name__}: {str(error)[:200]} (retrying cannot help)",
        )

    def on_publish(self, event_id: str, event_type: str, request_id: str) -> None:
        """Invariant 4, per step: every event published matches a committed transition."""
        if event_id not in self.committed_events:
            self.violate("4-events", f"{event_type} {event_id[:60]} published, never committed")
        self.published.append((event_id, event_type, request_id))

    # ---- at quiescence -------------------------------------------------------------------

    def check_quiescence(self, faults_stopped_for: float, stats: Counter[str]) -> None:
        """Invariants 1, 2 and 4 once every request has settled; counts go into `stats`."""
        records = {doc_id: data for doc_id, data in self.db.documents((TASKS,))}
        for request_id, kind in self.expected.items():
            record = records.get(request_id)
            if record is None:
                self.violate("1-terminal", f"request {request_id} ({kind}) has no record")
                return
            if not is_settled(record):
                self.violate(
                    "1-terminal",
                    f"request {request_id} is stuck in {record['state']} after"
                    f" {faults_stopped_for:.0f}s without faults",
                )
            if failed_without_reason(record):
                self.violate("1-terminal", f"request {request_id} failed without a reason")
        for request_id in records:
            if request_id not in self.expected:
                self.violate("1-terminal", f"record {request_id} belongs to no request sent")
        # 2: every SRP task is attached, a recorded duplicate, or counted as unconfirmed.
        for task in self.srp.tasks.values():
            if task.request_id not in records:
                self.violate("2-one-task", f"task {task.id} for unknown request {task.request_id}")
        tasks = ((task.id, task.request_id) for task in self.srp.tasks.values())
        for request_id, count in unaccounted_tasks(records, tasks).items():
            self.violate(
                "2-one-task",
                f"{request_id}: {count} SRP task(s) neither attached nor recorded nor counted",
            )
        # 4: exactly one render.completed per completed request, none for a failed one.
        completed = [
            (e, r) for e, event_type, r in self.published if event_type == "render.completed"
        ]
        for request_id, count in completed_not_once(records, completed):
            state = (records.get(request_id) or {}).get("state")
            self.violate(
                "4-events", f"{request_id} is {state} with {count} render.completed events"
            )
        pending = [doc_id for doc_id, _ in self.db.documents((TASKS + OUTBOX_SUFFIX,))]
        if pending:
            self.violate("4-events", f"{len(pending)} committed event(s) never published")
        stats["requests"] = len(self.expected)
        stats["srp_tasks"] = len(self.srp.tasks)
        for record in records.values():
            stats[f"state_{record['state']}"] += 1
            stats["duplicates"] += len(record.get("duplicate_task_ids", []))
