"""Batches: one done signal and exact counts for a collection of render requests.

A producer declares a batch with `{"batch": {"batch_id", "total", "metadata"?}}` on the
render-requests topic; its members are render requests carrying `batch_id`. Layout:
- `{TASKS_COLLECTION}_batches/{batch_id}`: the batch record (`BatchRecord`), written by the
  declaration and once more when the batch is done: never by its members;
- `{TASKS_COLLECTION}_batches/{batch_id}/shards/{n}`: the counters. A member's terminal
  transition adds one to shard `hash(request_id) % SHARD_COUNT` in the same transaction
  as the transition itself (task_store), so each member counts exactly once and members
  finishing at 50/s spread over SHARD_COUNT documents (decision 0018);
- `{TASKS_COLLECTION}_batches/{batch_id}/refused/{digest}`: declarations refused, with why.

The done check (`complete_if_done`) runs after every member's terminal event is published
and after every declaration: one read of the batch record and one `sum` aggregation over
the shards, never a read of the members. The first check that finds `total` members
counted marks the batch `done` in a transaction on the batch record and writes
`batch.completed` to the outbox in it: published once, with a stable event id.
Members beyond `total` are counted in the shards (`status --batch` shows them as
`beyond_total`) but never move a batch that is done. Retries (`retry_of`) count apart,
in `retries_completed` / `retries_failed`, so they never count against `total`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from srp_bundle.errors import InvalidMessageError
from srp_bundle.events import EventType
from srp_bundle.log import get_logger, log_fields
from srp_bundle.task_state import State, TaskRecord

if TYPE_CHECKING:
    from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)

BATCHES_SUFFIX = "_batches"
SHARDS_SUBCOLLECTION = "shards"
REFUSED_SUBCOLLECTION = "refused"
# 50 members/s over 512 shards: 0.1 writes/s per shard on average, at most 7 in any 10 s
# measured (decision 0018 has the arithmetic); one aggregation still sums them in one read.
SHARD_COUNT = 512
COUNTERS = ("completed", "failed", "retries_completed", "retries_failed")
_BATCH_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_DECLARATION_KEYS = {"batch_id", "total", "metadata"}


class BatchState:
    """The batch record's `state` values."""

    OPEN = "open"
    DONE = "done"


def check_batch_id(value: object, where: str = "batch_id") -> str:
    """A batch id: 1-128 characters `[A-Za-z0-9._~-]`, a valid document id."""
    if not isinstance(value, str) or not _BATCH_ID.match(value):
        raise InvalidMessageError(
            f"{where} must be 1-128 characters A-Z a-z 0-9 . _ ~ -, got {value!r:.60}"
        )
    if value in (".", "..") or (value.startswith("__") and value.endswith("__")):
        raise InvalidMessageError(f"{where} {value!r} is reserved")
    return value


@dataclass(frozen=True)
class BatchDeclaration:
    """`{"batch": {"batch_id", "total", "metadata"?}}`: how many members a batch has."""

    batch_id: str
    total: int
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_declaration(body: dict[str, Any]) -> BatchDeclaration:
    """Validate a declaration's JSON body; raise `InvalidMessageError` saying what is wrong.

    Whether Firestore can store `metadata` is checked by the caller (render_requests).
    """
    unknown = sorted(set(body) - {"batch"})
    if unknown:
        raise InvalidMessageError(
            f"a batch declaration has only the field batch; unknown: {', '.join(unknown)}"
        )
    batch = body["batch"]
    if not isinstance(batch, dict):
        raise InvalidMessageError(f"batch must be a JSON object, got {type(batch).__name__}")
    unknown = sorted(set(batch) - _DECLARATION_KEYS)
    if unknown:
        raise InvalidMessageError(f"unknown field(s) in batch: {', '.join(unknown)}")
    total = batch.get("total")
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise InvalidMessageError(f"batch.total must be an integer >= 1, got {total!r:.30}")
    metadata = batch.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidMessageError(
            f"batch.metadata must be a JSON object, got {type(metadata).__name__}"
        )
    batch_id = check_batch_id(batch.get("batch_id"), "batch.batch_id")
    return BatchDeclaration(batch_id, total, metadata)


@dataclass
class BatchRecord:
    """`{TASKS_COLLECTION}_batches/{batch_id}`: the batch's answer."""

    batch_id: str
    total: int | None = None
    state: str = BatchState.OPEN
    completed: int = 0
    failed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    done_at: datetime | None = None

    def to_document(self) -> dict[str, Any]:
        """The Firestore document."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> BatchRecord:
        """Rebuild from Firestore, ignoring fields we do not know."""
        return cls(**{k: v for k, v in document.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Counts:
    """What the shards say: members counted per final state, first attempts and retries."""

    completed: int = 0
    failed: int = 0
    retries_completed: int = 0
    retries_failed: int = 0

    @property
    def finished(self) -> int:
        """First attempts in a final state: what `total` is compared with."""
        return self.completed + self.failed

    @property
    def unresolved_failures(self) -> int:
        """Items whose every attempt failed so far (a completed retry resolves one)."""
        return max(0, self.failed - self.retries_completed)


@dataclass(frozen=True)
class DeclarationOutcome:
    """What a declaration did: `accepted` False with `reason` when refused."""

    batch: BatchRecord
    accepted: bool
    reason: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def shard_number(request_id: str) -> int:
    """The shard a member counts in: fixed by its request id, so a retried transaction and
    a redelivery pick the same one, and spread evenly over SHARD_COUNT."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % SHARD_COUNT


def counter_for(record: TaskRecord) -> str:
    """Which counter a member in a final state adds one to."""
    name = "completed" if record.state == State.COMPLETED else "failed"
    return f"retries_{name}" if record.retry_of else name


def batch_event(batch: BatchRecord) -> dict[str, Any]:
    """`batch.completed`, its id fixed by the batch id: a re-send is the same event."""
    data = {
        "batch_id": batch.batch_id,
        "total": batch.total,
        "completed": batch.completed,
        "failed": batch.failed,
        "state": batch.state,
        "metadata": batch.metadata,
        # Every event carries these; a batch has no single request, task or collection.
        "request_id": None,
        "task_id": None,
        "collection_id": None,
        "time": batch.done_at.isoformat() if batch.done_at else None,
    }
    identity = f"batch:{batch.batch_id}:{EventType.BATCH_COMPLETED}"
    event_id = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return {"event_id": event_id, "type": str(EventType.BATCH_COMPLETED), "data": data}


def batch_ids_finished(events: list[dict[str, Any]]) -> list[str]:
    """The batches whose members these events say reached a final state."""
    terminal = (str(EventType.RENDER_COMPLETED), str(EventType.TASK_FAILED))
    found = {
        str(event["data"]["batch_id"])
        for event in events
        if event["type"] in terminal and event["data"].get("batch_id")
    }
    return sorted(found)


class BatchStore:
    """The batch records and their shards, beside the task store that owns the outbox."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.batches = store.client.collection(store.collection_name + BATCHES_SUFFIX)

    def shard(self, batch_id: str, request_id: str) -> Any:
        """The counter document a member of `batch_id` counts in."""
        document = self.batches.document(batch_id)
        return document.collection(SHARDS_SUBCOLLECTION).document(str(shard_number(request_id)))

    # ---- inside a member's transaction (task_store) -------------------------------------

    def count_member(self, transaction: Any, record: TaskRecord) -> None:
        """Add a member that just reached its final state to its shard (read, then write).

        Called once per member: in the transaction that moves it into `completed` or
        `failed`, after that transaction's other reads and before its writes.
        """
        assert record.batch_id is not None and record.is_terminal
        reference = self.shard(record.batch_id, record.request_id)
        snapshot = reference.get(transaction=transaction)
        document = (snapshot.to_dict() or {}) if snapshot.exists else {}
        counts = {name: int(document.get(name, 0)) for name in COUNTERS}
        counts[counter_for(record)] += 1
        transaction.set(
            reference,
            {"batch_id": record.batch_id, **counts, "updated_at": self.store.clock()},
        )

    # ---- reads ---------------------------------------------------------------------------

    def get(self, batch_id: str) -> BatchRecord | None:
        """The batch record, or None when the batch was never declared."""
        snapshot = self.batches.document(batch_id).get()
        return BatchRecord.from_document(snapshot.to_dict() or {}) if snapshot.exists else None

    def counts(self, batch_id: str) -> Counts:
        """The shards summed by one aggregation query (billed as one read per 1,000 shards)."""
        shards = self.batches.document(batch_id).collection(SHARDS_SUBCOLLECTION)
        query: Any = shards.sum(COUNTERS[0], alias=COUNTERS[0])
        for name in COUNTERS[1:]:
            query = query.sum(name, alias=name)
        values = {result.alias: result.value for result in query.get()[0]}
        return Counts(**{name: int(values.get(name) or 0) for name in COUNTERS})

    def refusals(self, batch_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """Declarations refused for this batch (at most `limit`)."""
        refused = self.batches.document(batch_id).collection(REFUSED_SUBCOLLECTION)
        return [snapshot.to_dict() or {} for snapshot in refused.limit(limit).stream()]

    def open_batches(self, limit: int) -> list[str]:
        """Declared batches not done yet (reconcile checks them: a lost done check)."""
        query = self.batches.where(filter=FieldFilter("state", "==", BatchState.OPEN))
        return [snapshot.id for snapshot in query.limit(limit).stream()]

    # ---- writes --------------------------------------------------------------------------

    def declare(self, declaration: BatchDeclaration, digest: str) -> DeclarationOutcome:
        """Record the batch's total (once), then check whether it is done already."""
        reference = self.batches.document(declaration.batch_id)

        @firestore.transactional
        def declare_in(transaction: firestore.Transaction) -> DeclarationOutcome:
            snapshot = reference.get(transaction=transaction)
            now = self.store.clock()
            if snapshot.exists:
                batch = BatchRecord.from_document(snapshot.to_dict() or {})
                if batch.total == declaration.total:
                    return DeclarationOutcome(batch, accepted=True)  # declared twice: the same
                reason = (
                    f"batch {declaration.batch_id!r} is declared with total {batch.total}; "
                    f"a declaration with total {declaration.total} is refused"
                )
                refusal = {"total": declaration.total, "reason": reason, "at": now}
                refused = reference.collection(REFUSED_SUBCOLLECTION).document(digest[:32])
                transaction.set(refused, refusal)
                return DeclarationOutcome(batch, accepted=False, reason=reason)
            batch = BatchRecord(
                batch_id=declaration.batch_id,
                total=declaration.total,
                metadata=declaration.metadata,
                created_at=now,
                updated_at=now,
            )
            transaction.create(reference, batch.to_document())
            return DeclarationOutcome(batch, accepted=True)

        outcome: DeclarationOutcome = declare_in(self.store.client.transaction())
        if not outcome.accepted:
            logger.warning(
                "batch declaration refused: %s",
                outcome.reason,
                extra=log_fields(batch_id=declaration.batch_id),
            )
            return outcome
        return DeclarationOutcome(
            outcome.batch, accepted=True, events=self.complete_if_done(declaration.batch_id)
        )

    def complete_if_done(self, batch_id: str) -> list[dict[str, Any]]:
        """Mark the batch done if `total` members are counted; the events to publish.

        Cheap for a batch still running: one read and one aggregation. The transaction on
        the batch record makes `done` (and `batch.completed` in the outbox) happen once.
        """
        batch = self.get(batch_id)
        if batch is None or batch.total is None or batch.state == BatchState.DONE:
            return []
        counts = self.counts(batch_id)
        if counts.finished < batch.total:
            return []
        reference = self.batches.document(batch_id)

        @firestore.transactional
        def complete_in(transaction: firestore.Transaction) -> list[dict[str, Any]]:
            snapshot = reference.get(transaction=transaction)
            current = BatchRecord.from_document(snapshot.to_dict() or {})
            if current.state == BatchState.DONE:
                return []
            now = self.store.clock()
            current.state = BatchState.DONE
            current.completed, current.failed = counts.completed, counts.failed
            current.done_at = current.updated_at = now
            transaction.set(reference, current.to_document())
            events = [batch_event(current)]
            self.store.stage_events(transaction, f"batch:{batch_id}", events)
            return events

        events: list[dict[str, Any]] = complete_in(self.store.client.transaction())
        if events:
            logger.info(
                "batch done",
                extra=log_fields(
                    batch_id=batch_id, completed=counts.completed, failed=counts.failed
                ),
            )
        return events
