"""The submission lease, decided by the state machine: who may POST, what an unknown POST means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from srp_bundle.events import EventType
from srp_bundle.task_state import (
    LeaseReleased,
    LeaseRequested,
    LeaseVerdict,
    NoNews,
    PostprocessRedriven,
    SrpStatusReported,
    State,
    SubmitOutcomeUnknown,
    TaskFailed,
    TaskRecord,
    TaskSubmitted,
    advance,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TASK = "7f6c1c52-0d36-4a7f-9d1e-1a2b3c4d5e6f"


def request(attempt: str = "a1", expired: str | None = None) -> LeaseRequested:
    return LeaseRequested(
        attempt, lease_seconds=60, ambiguous_wait_seconds=300, expired_reason=expired
    )


def fresh() -> TaskRecord:
    return TaskRecord(request_id="r", collection_id="c", created_at=NOW, updated_at=NOW)


def leased(attempt: str = "a1") -> TaskRecord:
    return advance(fresh(), request(attempt), NOW).record


def test_a_fresh_record_gives_the_lease_and_records_the_post_intent_first() -> None:
    transition = advance(fresh(), request(), NOW)

    record = transition.record
    assert transition.lease == LeaseVerdict.TAKEN and transition.changed
    assert record.lease_owner == "a1"
    assert record.lease_expires_at == NOW + timedelta(seconds=60)
    assert record.submit_attempts == 1
    assert record.ambiguous_submit_at == NOW and record.unconfirmed_submissions == 1
    assert [entry["kind"] for entry in transition.log] == ["submit_attempt"]
    assert transition.events == []


def test_a_held_lease_defers_every_other_delivery_until_it_runs_out() -> None:
    record = leased()

    held = advance(record, request("a2"), NOW + timedelta(seconds=59))
    assert held.lease == LeaseVerdict.HELD and not held.changed

    # The holder died: once the lease ran out, the ambiguity wait of its intent still holds.
    later = advance(record, request("a2"), NOW + timedelta(seconds=61))
    assert later.lease == LeaseVerdict.AWAITING_SRP and not later.changed


def test_after_the_ambiguity_wait_another_delivery_may_post_again() -> None:
    transition = advance(leased(), request("a2"), NOW + timedelta(seconds=301))

    assert transition.lease == LeaseVerdict.TAKEN
    assert transition.record.lease_owner == "a2"
    assert transition.record.submit_attempts == 2
    assert transition.record.unconfirmed_submissions == 2


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        (TaskSubmitted(TASK), LeaseVerdict.ALREADY_SUBMITTED),
        (TaskFailed("x", "y"), LeaseVerdict.ALREADY_FINAL),
    ],
)
def test_a_record_with_a_task_or_a_final_state_never_posts(change, verdict) -> None:
    record = advance(fresh(), change, NOW).record

    for expired in (None, "too old"):
        transition = advance(record, request(expired=expired), NOW)
        assert transition.lease == verdict and not transition.changed
        assert transition.record.state == record.state


def test_an_expired_request_without_a_task_fails_request_expired_in_the_same_change() -> None:
    transition = advance(leased(), request("a2", expired="published 90000s ago"), NOW)

    record = transition.record
    assert transition.lease == LeaseVerdict.EXPIRED
    assert record.state == State.FAILED
    assert record.error == {"code": "request_expired", "message": "published 90000s ago"}
    assert record.lease_owner is None
    assert [event["type"] for event in transition.events] == [EventType.TASK_FAILED]


def test_a_post_that_created_nothing_settles_its_intent() -> None:
    transition = advance(leased(), LeaseReleased("a1", "srp_rejected", "422"), NOW)

    record = transition.record
    assert record.lease_owner is None and record.lease_expires_at is None
    assert record.ambiguous_submit_at is None and record.unconfirmed_submissions == 0
    assert record.last_error == {"code": "srp_rejected", "message": "422"}
    assert advance(record, request("a2"), NOW).lease == LeaseVerdict.TAKEN  # no wait


def test_a_post_whose_outcome_is_unknown_starts_the_wait_and_stays_counted() -> None:
    later = NOW + timedelta(seconds=20)
    transition = advance(leased(), SubmitOutcomeUnknown("a1", "srp_unavailable", "504"), later)

    record = transition.record
    assert record.lease_owner is None
    assert record.ambiguous_submit_at == later and record.unconfirmed_submissions == 1
    assert transition.log[-1]["ambiguous"] is True
    waiting = advance(record, request("a2"), later + timedelta(seconds=299))
    assert waiting.lease == LeaseVerdict.AWAITING_SRP


@pytest.mark.parametrize("change", [LeaseReleased, SubmitOutcomeUnknown])
def test_only_the_lease_owner_can_release_it(change) -> None:
    record = leased("a2")

    transition = advance(record, change("a1", "x", "y"), NOW)

    assert not transition.changed and transition.record.lease_owner == "a2"


def test_a_release_after_the_task_was_attached_changes_nothing() -> None:
    record = advance(leased(), TaskSubmitted(TASK), NOW).record

    transition = advance(record, SubmitOutcomeUnknown("a1", "x", "y"), NOW)

    assert not transition.changed and transition.record.ambiguous_submit_at is None


def test_a_redrive_is_marked_only_on_a_rendered_record() -> None:
    record = advance(fresh(), TaskSubmitted(TASK), NOW).record
    assert not advance(record, PostprocessRedriven(), NOW).changed

    rendered = advance(record, SrpStatusReported(TASK, "done", ("render/d/x.png",)), NOW).record
    transition = advance(rendered, PostprocessRedriven(), NOW + timedelta(hours=1))
    assert transition.record.redriven_at == NOW + timedelta(hours=1)
    assert transition.log[-1]["missing"] == ["render/d/x.png"]


def test_no_news_moves_only_an_active_record_to_the_back_of_the_queue() -> None:
    later = NOW + timedelta(minutes=15)
    active = advance(fresh(), NoNews(), later)
    assert active.changed and active.record.updated_at == later and not active.log

    failed = advance(fresh(), TaskFailed("x", "y"), NOW).record
    assert not advance(failed, NoNews(), later).changed
