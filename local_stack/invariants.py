"""Invariants over task records and events, as plain predicates: the simulator (sim/invariants.py)
and the local stack's fault runs (local_stack/fault_run.py) both check these.

They live here, not in sim/, because `local_stack` is an installed package and `sim` is not:
the local stack may not import the simulator, the simulator already imports the local stack.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from srp_bundle.task_state import TERMINAL_STATES, State, state_rank

Record = Mapping[str, Any]


def is_settled(record: Record) -> bool:
    """Invariant 1: the request has ended, `completed` or `failed`."""
    return record.get("state") in ("completed", "failed")


def failed_without_reason(record: Record) -> bool:
    """Invariant 1: a `failed` record must say why (an error code and a message)."""
    error = record.get("error") or {}
    return record.get("state") == "failed" and not (error.get("code") and error.get("message"))


def moved_backwards(before: Record, after: Record) -> str | None:
    """Invariant 3: what is wrong with a record going from `before` to `after`, if anything."""
    old, new = State(before["state"]), State(after["state"])
    if old in TERMINAL_STATES and (new != old or before.get("error") != after.get("error")):
        return f"terminal {old} became {new}"
    if old not in TERMINAL_STATES and new != State.FAILED and state_rank(new) < state_rank(old):
        return f"{old} moved back to {new}"
    return None


def unaccounted_tasks(
    records: Mapping[str, Record], tasks: Iterable[tuple[str, str]]
) -> dict[str, int]:
    """Invariant 2: per request, how many of its SRP tasks (task id, request id) are neither
    attached nor a recorded duplicate nor counted in `unconfirmed_submissions`."""
    unreported: Counter[str] = Counter()
    for task_id, request_id in tasks:
        record = records.get(request_id) or {}
        if task_id != record.get("task_id") and task_id not in (
            record.get("duplicate_task_ids") or []
        ):
            unreported[request_id] += 1
    excess = {}
    for request_id, count in unreported.items():
        unconfirmed = int((records.get(request_id) or {}).get("unconfirmed_submissions") or 0)
        if count > unconfirmed:
            excess[request_id] = count
    return excess


def completed_not_once(
    records: Mapping[str, Record], completed_events: Iterable[tuple[str, str]]
) -> list[tuple[str, int]]:
    """Invariant 4: (request id, count) wherever the distinct `render.completed` events (key,
    request id) are not exactly one for a completed request, or any for another."""
    keys: dict[str, set[str]] = defaultdict(set)
    for key, request_id in completed_events:
        keys[request_id].add(key)
    wrong = []
    for request_id in [*records, *(r for r in keys if r not in records)]:
        count = len(keys.get(request_id, ()))
        want = 1 if (records.get(request_id) or {}).get("state") == "completed" else 0
        if count != want:
            wrong.append((request_id, count))
    return wrong
