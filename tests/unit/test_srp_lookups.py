"""The per-request budget of SRP look-ups and the refusals it remembers (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from srp_bundle.srp_lookups import MAX_REMEMBERED_REFUSALS, LookupLedger, Refusal

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_budget_is_per_hour_and_refills_after_the_window() -> None:
    ledger = LookupLedger()
    assert [ledger.take(NOW + timedelta(minutes=i), 3) for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert ledger.take(NOW + timedelta(minutes=59), 3) is False
    assert ledger.take(NOW + timedelta(minutes=60), 3) is True
    assert ledger.lookups == 1


def test_refusals_are_remembered_once_each_and_bounded() -> None:
    ledger = LookupLedger()
    for i in range(MAX_REMEMBERED_REFUSALS + 10):
        ledger.remember(Refusal(f"task-{i}", 422, "unknown"))
        ledger.remember(Refusal(f"task-{i}", 422, "unknown"))
    assert len(ledger.refusals) == MAX_REMEMBERED_REFUSALS
    assert ledger.refusal("task-0") is None  # the oldest went first
    assert ledger.refusal("TASK-59") == Refusal("task-59", 422, "unknown")


def test_a_ledger_survives_its_firestore_form() -> None:
    ledger = LookupLedger()
    ledger.take(NOW, 5)
    ledger.remember(Refusal("t", 200, "not this request's"))
    again = LookupLedger.from_document(ledger.to_document())
    assert again == ledger
    assert LookupLedger.from_document(None) == LookupLedger()
