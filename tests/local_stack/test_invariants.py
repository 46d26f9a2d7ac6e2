"""The shared invariant predicates (local_stack/invariants.py) on hand-made records."""

from __future__ import annotations

from local_stack.invariants import (
    completed_not_once,
    failed_without_reason,
    is_settled,
    moved_backwards,
    unaccounted_tasks,
)
from srp_bundle.task_state import STATE_ORDER, State, state_rank


def test_the_state_order_is_task_states_own() -> None:
    assert STATE_ORDER == (
        State.RECEIVED,
        State.SUBMITTED,
        State.RENDERING,
        State.RENDERED,
        State.COMPLETED,
        State.FAILED,
    )
    assert [state_rank(s) for s in STATE_ORDER] == list(range(len(STATE_ORDER)))


def test_a_record_may_move_forward_or_fail_but_never_back() -> None:
    assert moved_backwards({"state": "submitted"}, {"state": "rendering"}) is None
    assert moved_backwards({"state": "rendering"}, {"state": "failed"}) is None
    assert moved_backwards({"state": "rendered"}, {"state": "rendering"}) == (
        "rendered moved back to rendering"
    )
    assert moved_backwards({"state": "failed"}, {"state": "completed"}) == (
        "terminal failed became completed"
    )
    changed_error = ({"state": "failed", "error": {"code": "a"}}, {"state": "failed", "error": {}})
    assert moved_backwards(*changed_error) == "terminal failed became failed"


def test_a_settled_request_is_completed_or_failed_with_a_code_and_a_message() -> None:
    assert is_settled({"state": "completed"}) and not is_settled({"state": "rendered"})
    assert failed_without_reason({"state": "failed", "error": {"code": "x"}})
    assert not failed_without_reason({"state": "failed", "error": {"code": "x", "message": "m"}})
    assert not failed_without_reason({"state": "completed"})


def test_every_srp_task_is_attached_a_duplicate_or_counted() -> None:
    records = {
        "a": {"task_id": "t1", "duplicate_task_ids": ["t2"]},
        "b": {"task_id": "t3", "unconfirmed_submissions": 1},
        "c": {"task_id": "t5"},
    }
    tasks = [("t1", "a"), ("t2", "a"), ("t3", "b"), ("t4", "b"), ("t5", "c"), ("t6", "c")]
    assert unaccounted_tasks(records, tasks) == {"c": 1}
    assert unaccounted_tasks(records, [("t7", "unknown")]) == {"unknown": 1}


def test_exactly_one_distinct_completed_event_per_completed_request() -> None:
    records = {"a": {"state": "completed"}, "b": {"state": "failed"}, "c": {"state": "completed"}}
    events = [("e1", "a"), ("e1", "a"), ("e2", "b"), ("e3", "z")]
    assert completed_not_once(records, events) == [("b", 1), ("c", 0), ("z", 1)]
