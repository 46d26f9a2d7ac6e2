"""The webhook's SRP look-ups per request: an hourly budget and the refusals SRP gave.

A callback naming a task other than the record's, or a terminal status, costs a
`GET /api/v1/tasks?id=` with our API key. So that one token cannot drive unlimited
calls (SRP's 429s would starve submission and reconcile), each request has a ledger:
at most `WEBHOOK_SRP_LOOKUPS_PER_HOUR` look-ups in a fixed one-hour window, and the
task ids SRP said it does not know or are not this request's (at most
MAX_REMEMBERED_REFUSALS, oldest dropped), answered again without asking SRP.

The ledger is its own document, `<TASKS_COLLECTION>_lookups/{request_id}`, beside the
record rather than on it: a callback for another task must never change the record
(the design's rule), and writing the record would move its `updated_at`, which is how
reconcile finds records with no news. It is still one document per request, so there
is no hot shared document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore

LOOKUPS_SUFFIX = "_lookups"
LOOKUP_WINDOW = timedelta(hours=1)
MAX_REMEMBERED_REFUSALS = 50


@dataclass(frozen=True)
class Refusal:
    """What SRP's answer meant for a task id: the HTTP answer the webhook gives again."""

    task_id: str
    status_code: int
    reason: str

    def to_entry(self) -> dict[str, Any]:
        """The Firestore form."""
        return {"task_id": self.task_id, "status_code": self.status_code, "reason": self.reason}


@dataclass
class LookupLedger:
    """One request's look-ups in the current window and its remembered refusals."""

    window_started_at: datetime | None = None
    lookups: int = 0
    refusals: list[Refusal] = field(default_factory=list)

    @classmethod
    def from_document(cls, document: dict[str, Any] | None) -> LookupLedger:
        """Rebuild from Firestore (an absent document is an empty ledger)."""
        document = document or {}
        return cls(
            window_started_at=document.get("window_started_at"),
            lookups=int(document.get("lookups", 0)),
            refusals=[
                Refusal(str(e["task_id"]), int(e["status_code"]), str(e["reason"]))
                for e in document.get("refusals", [])
            ],
        )

    def to_document(self) -> dict[str, Any]:
        """The Firestore document."""
        return {
            "window_started_at": self.window_started_at,
            "lookups": self.lookups,
            "refusals": [r.to_entry() for r in self.refusals],
        }

    def refusal(self, task_id: str) -> Refusal | None:
        """What SRP said about `task_id` before, if it refused it."""
        wanted = task_id.lower()
        return next((r for r in self.refusals if r.task_id.lower() == wanted), None)

    def take(self, now: datetime, limit: int) -> bool:
        """Count one look-up if the window has room; False if the budget is spent."""
        if self.window_started_at is None or now - self.window_started_at >= LOOKUP_WINDOW:
            self.window_started_at, self.lookups = now, 0
        if self.lookups >= limit:
            return False
        self.lookups += 1
        return True

    def remember(self, refusal: Refusal) -> None:
        """Keep a refusal (the oldest goes once MAX_REMEMBERED_REFUSALS are kept)."""
        if self.refusal(refusal.task_id) is None:
            self.refusals = [*self.refusals, refusal][-MAX_REMEMBERED_REFUSALS:]


@dataclass(frozen=True)
class LookupDecision:
    """Whether the webhook may ask SRP now, or what it answered before."""

    allowed: bool
    refusal: Refusal | None = None


class LookupLedgers:
    """The ledgers in Firestore, each read and written in its own transaction."""

    def __init__(self, client: firestore.Client, tasks_collection: str) -> None:
        """Ledgers live in `<tasks_collection>_lookups`."""
        self.client = client
        self.ledgers = client.collection(tasks_collection + LOOKUPS_SUFFIX)

    def take(self, request_id: str, task_id: str, now: datetime, limit: int) -> LookupDecision:
        """A remembered refusal for `task_id`, else one look-up from the budget (or none)."""
        reference = self.ledgers.document(request_id)

        @firestore.transactional
        def take_in(transaction: firestore.Transaction) -> LookupDecision:
            snapshot = reference.get(transaction=transaction)
            ledger = LookupLedger.from_document(snapshot.to_dict() if snapshot.exists else None)
            refusal = ledger.refusal(task_id)
            if refusal is not None:
                return LookupDecision(False, refusal)
            if not ledger.take(now, limit):
                return LookupDecision(False)
            transaction.set(reference, ledger.to_document())
            return LookupDecision(True)

        decision: LookupDecision = take_in(self.client.transaction())
        return decision

    def remember(self, request_id: str, refusal: Refusal) -> None:
        """Keep what SRP said, so the same task id is answered without asking again."""
        reference = self.ledgers.document(request_id)

        @firestore.transactional
        def remember_in(transaction: firestore.Transaction) -> None:
            snapshot = reference.get(transaction=transaction)
            ledger = LookupLedger.from_document(snapshot.to_dict() if snapshot.exists else None)
            ledger.remember(refusal)
            transaction.set(reference, ledger.to_document())

        remember_in(self.client.transaction())
