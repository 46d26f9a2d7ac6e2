"""Firestore persistence of task records: every change goes through one transaction.

Layout (collection names derive from `TASKS_COLLECTION`, default `srp_tasks`):
- `srp_tasks/{request_id}`: the task record (`task_state.TaskRecord`);
- `srp_tasks/{request_id}/events/{entry_id}`: the append-only event log;
- `srp_tasks_renders/{task_id}`: post-processing results keyed by SRP's task id, kept
  until (and after) a record with that task id exists, so the two can meet in any order;
- `srp_tasks_outbox/{event}`: events decided by a committed change and not yet published
  (written in the change's transaction, deleted once Pub/Sub has them);
- `srp_tasks_outbox_parked/{event}`: events Pub/Sub refused, with the reason (never retried);
- `srp_tasks_secrets/{request_id}`: the producer's complete `callback_urls` when they carry
  header values (credentials for the producer's endpoints), written with the record in one
  transaction. The record keeps only the header names; submission, reconciliation and
  `retry` read the values here, and nothing that shows a record (CLI, events) does.

Over 300 lines: every Firestore read and transaction of the task record is here, so no other
module touches the documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from srp_bundle.batches import BatchStore
from srp_bundle.errors import InvalidMessageError
from srp_bundle.redaction import header_values
from srp_bundle.srp_models import parse_callback_urls
from srp_bundle.task_state import (
    ACTIVE_STATES,
    Change,
    Clock,
    DerivativesReady,
    TaskFailed,
    TaskRecord,
    Transition,
    advance,
    capped_log,
    log_entry_id,
    utc_now,
)

EVENTS_SUBCOLLECTION = "events"
RENDERS_SUFFIX = "_renders"
OUTBOX_SUFFIX = "_outbox"
PARKED_SUFFIX = "_outbox_parked"
SECRETS_SUFFIX = "_secrets"


class RecordNotFoundError(LookupError):
    """No task record with that request id."""


@dataclass(frozen=True)
class RenderResult:
    """What post-processing recorded for one output file of one SRP task.

    With `error` (`{code, message}`), that generation of the file can never be
    post-processed: `change` then lists no derivatives, and the record it meets fails.
    """

    task_id: str
    change: DerivativesReady
    error: dict[str, str] | None = None

    @property
    def path(self) -> str:
        """The output file this result is about."""
        return self.change.render_path

    def record_change(self) -> DerivativesReady | TaskFailed:
        """What this result means for the task record."""
        if self.error is not None:
            return TaskFailed(self.error["code"], self.error["message"])
        return self.change

    def to_entry(self) -> dict[str, Any]:
        """One item of the task's `files` list in Firestore."""
        return {
            "render_path": self.change.render_path,
            "generation": self.change.generation,
            "derivatives": list(self.change.derivatives),
            "file": dict(self.change.file),
            "error": self.error,
        }

    @classmethod
    def from_entry(cls, task_id: str, entry: dict[str, Any]) -> RenderResult:
        """Rebuild one file's result from Firestore."""
        return cls(
            task_id=task_id,
            change=DerivativesReady(
                render_path=entry["render_path"],
                generation=int(entry["generation"]),
                derivatives=tuple(entry.get("derivatives", [])),
                file=dict(entry.get("file") or {}),
            ),
            error=entry.get("error"),
        )


def _render_results(document: dict[str, Any] | None) -> list[RenderResult]:
    document = document or {}
    task_id = document.get("task_id", "")
    return [RenderResult.from_entry(task_id, entry) for entry in document.get("files", [])]


class TaskStore:
    """Reads and transactional updates of task records, their event log and render results."""

    def __init__(
        self, client: firestore.Client, collection: str, *, clock: Clock = utc_now
    ) -> None:
        """`clock` stamps every write (`updated_at`, log and outbox times, transitions)."""
        self.client = client
        self.clock = clock
        self.collection_name = collection
        self.records = client.collection(collection)
        self.renders = client.collection(collection + RENDERS_SUFFIX)
        self.outbox = client.collection(collection + OUTBOX_SUFFIX)
        self.parked = client.collection(collection + PARKED_SUFFIX)
        self.secrets = client.collection(collection + SECRETS_SUFFIX)

    # ---- reads --------------------------------------------------------------------------

    def get(self, request_id: str) -> TaskRecord | None:
        """The record, or None."""
        snapshot = self.records.document(request_id).get()
        return TaskRecord.from_document(snapshot.to_dict()) if snapshot.exists else None

    def find_by_task_id(self, task_id: str) -> TaskRecord | None:
        """The record whose attached SRP task is `task_id`, or None."""
        for snapshot in (
            self.records.where(filter=FieldFilter("task_id", "==", task_id)).limit(1).stream()
        ):
            return TaskRecord.from_document(snapshot.to_dict())
        return None

    def find_by_message_digest(self, digest: str) -> list[TaskRecord]:
        """Records created by a Pub/Sub message with this data digest (usually one)."""
        query = self.records.where(filter=FieldFilter("message_digest", "==", digest)).limit(20)
        return [TaskRecord.from_document(snapshot.to_dict()) for snapshot in query.stream()]

    def event_log(self, request_id: str) -> list[dict[str, Any]]:
        """The record's event log, oldest first."""
        entries = self.records.document(request_id).collection(EVENTS_SUBCOLLECTION).stream()
        return sorted((e.to_dict() for e in entries), key=lambda entry: entry["at"])

    def producer_callbacks(self, record: TaskRecord) -> list[Any]:
        """The record's `callback_urls` as the producer sent them, header values included.

        Raises `InvalidMessageError` when the values were kept apart and are gone: sending
        the redacted ones would call the producer with wrong credentials.
        """
        if not record.callback_headers_kept_apart:
            return list(record.callback_urls)  # no headers, or a record older than the split
        snapshot = self.secrets.document(record.request_id).get()
        stored = (snapshot.to_dict() or {}).get("callback_urls") if snapshot.exists else None
        if not isinstance(stored, list):
            raise InvalidMessageError(
                f"the header values of the producer's callback_urls are missing from "
                f"{self.secrets.id}/{record.request_id}; publish the request again"
            )
        return stored

    def callback_header_values(self, record: TaskRecord) -> tuple[str, ...]:
        """The producer's header values for this record (to redact them), or () if none."""
        if not record.callback_urls:
            return ()
        try:
            return header_values(parse_callback_urls(self.producer_callbacks(record)))
        except InvalidMessageError:
            return ()

    def render_results(self, task_id: str) -> list[RenderResult]:
        """Post-processing results stored for an SRP task, one per output file."""
        snapshot = self.renders.document(task_id).get()
        return _render_results(snapshot.to_dict()) if snapshot.exists else []

    def render_result(self, task_id: str, path: str) -> RenderResult | None:
        """The result stored for one output file of an SRP task, or None."""
        return next((r for r in self.render_results(task_id) if r.path == path), None)

    def stale_records(
        self, updated_before: datetime, limit: int, start_after: datetime | None = None
    ) -> list[TaskRecord]:
        """Active records with no news since `updated_before`, oldest first, one page."""
        query = (
            self.records.where(filter=FieldFilter("state", "in", [str(s) for s in ACTIVE_STATES]))
            .where(filter=FieldFilter("updated_at", "<", updated_before))
            .order_by("updated_at")
        )
        if start_after is not None:
            query = query.start_after({"updated_at": start_after})
        return [TaskRecord.from_document(s.to_dict()) for s in query.limit(limit).stream()]

    def pending_events(
        self, decided_before: datetime, limit: int, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Events decided before `decided_before` whose publication was never confirmed."""
        if request_id is None:
            query = self.outbox.where(filter=FieldFilter("decided_at", "<", decided_before))
        else:
            query = self.outbox.where(filter=FieldFilter("request_id", "==", request_id))
        entries = [snapshot.to_dict() or {} for snapshot in query.limit(limit).stream()]
        return [e["event"] for e in entries if e["decided_at"] < decided_before]

    # ---- writes -------------------------------------------------------------------------

    def create(
        self,
        record: TaskRecord,
        log: Iterable[dict[str, Any]] = (),
        events: Iterable[dict[str, Any]] = (),
    ) -> bool:
        """Create the record if no record has its request id; False if one already exists."""
        reference = self.records.document(record.request_id)

        @firestore.transactional
        def create_in(transaction: firestore.Transaction) -> bool:
            if reference.get(transaction=transaction).exists:
                return False
            kept = capped_log(record, list(log))
            if record.is_terminal and record.batch_id is not None:
                BatchStore(self).count_member(transaction, record)
            transaction.create(reference, record.to_document())
            self._write_log(transaction, record.request_id, kept)
            self._write_outbox(transaction, record.request_id, events)
            return True

        return bool(create_in(self.client.transaction()))

    def apply(
        self,
        request_id: str,
        change: Change,
        *,
        received: dict[str, Any] | None = None,
        create: TaskRecord | None = None,
        log_if_created: list[dict[str, Any]] | None = None,
        secrets_if_created: dict[str, Any] | None = None,
    ) -> Transition:
        """Apply a change to a record in one transaction; `received` is logged verbatim.

        Without a record, the change applies to `create` (or RecordNotFoundError is raised),
        `log_if_created` goes first into the new record's event log and `secrets_if_created`
        is written to `<TASKS_COLLECTION>_secrets/{request_id}` in the same transaction.
        When the change attaches a task id for the first time, post-processing results
        already stored for that task are applied in the same transaction.
        """
        reference = self.records.document(request_id)

        @firestore.transactional
        def apply_in(transaction: firestore.Transaction) -> Transition:
            snapshot = reference.get(transaction=transaction)
            created: list[dict[str, Any]] = []
            if snapshot.exists:
                record = TaskRecord.from_document(snapshot.to_dict())
            elif create is not None:
                record, created = create, list(log_if_created or [])
            else:
                raise RecordNotFoundError(request_id)
            now = self.clock()
            was_terminal = record.is_terminal
            transition = advance(record, change, now)
            if transition.attached_task_id is not None:
                pending = self.renders.document(transition.attached_task_id).get(
                    transaction=transaction
                )
                for result in _render_results(pending.to_dict() if pending.exists else None):
                    follow_up = advance(transition.record, result.record_change(), now)
                    transition.record = follow_up.record
                    transition.events += follow_up.events
                    transition.log += follow_up.log
                    transition.changed = transition.changed or follow_up.changed
            log = created + list(transition.log)
            if received is not None:
                log.append(received)
            kept = capped_log(transition.record, log)
            final = transition.record
            if final.batch_id is not None and final.is_terminal and not was_terminal:
                # The one place a member reaches its final state: it counts here, once.
                BatchStore(self).count_member(transaction, final)
            if transition.changed or created or kept or len(kept) < len(log):
                # The record carries the log's counters, so it is written with every entry.
                transaction.set(reference, transition.record.to_document())
            self._write_log(transaction, request_id, kept)
            self._write_outbox(transaction, request_id, transition.events)
            if created and secrets_if_created is not None:
                transaction.set(self.secrets.document(request_id), secrets_if_created)
            return transition

        result: Transition = apply_in(self.client.transaction())
        return result

    def save_render_result(self, result: RenderResult) -> None:
        """Store one file's result (a newer generation of the file replaces an older one)."""
        reference = self.renders.document(result.task_id)

        @firestore.transactional
        def save_in(transaction: firestore.Transaction) -> None:
            snapshot = reference.get(transaction=transaction)
            stored = _render_results(snapshot.to_dict()) if snapshot.exists else []
            known = next((r for r in stored if r.path == result.path), None)
            if known is not None and known.change.generation >= result.change.generation:
                return
            entries = [r.to_entry() for r in stored if r.path != result.path]
            entries.append(result.to_entry())
            entries.sort(key=lambda entry: str(entry["render_path"]))
            document = {"task_id": result.task_id, "files": entries, "updated_at": self.clock()}
            transaction.set(reference, document)

        save_in(self.client.transaction())

    def confirm_published(self, event_ids: Iterable[str]) -> None:
        """Drop published events from the outbox (one commit, no reads)."""
        batch = self.client.batch()
        deleted = 0
        for event_id in set(event_ids):
            batch.delete(self.outbox.document(_outbox_id(event_id)))
            deleted += 1
        if deleted:
            batch.commit()

    def park_events(self, reasons: dict[str, str]) -> None:
        """Move events Pub/Sub refuses out of the outbox, with the reason (one commit)."""
        batch = self.client.batch()
        for event_id, reason in reasons.items():
            source = self.outbox.document(_outbox_id(event_id))
            snapshot = source.get()
            if not snapshot.exists:
                continue
            parked = {**(snapshot.to_dict() or {}), "reason": reason, "parked_at": self.clock()}
            batch.set(self.parked.document(_outbox_id(event_id)), parked)
            batch.delete(source)
        batch.commit()

    def stage_events(
        self, transaction: firestore.Transaction, key: str, events: Iterable[dict[str, Any]]
    ) -> None:
        """Put events in the outbox within another document's transaction (the batch record's):
        published after its commit, re-published by reconcile as every other event."""
        self._write_outbox(transaction, key, events)

    def _write_outbox(
        self, transaction: firestore.Transaction, request_id: str, events: Iterable[dict[str, Any]]
    ) -> None:
        for event in events:
            transaction.set(
                self.outbox.document(_outbox_id(event["event_id"])),
                {"request_id": request_id, "event": event, "decided_at": self.clock()},
            )

    def _write_log(
        self, transaction: firestore.Transaction, request_id: str, entries: Iterable[dict[str, Any]]
    ) -> None:
        log = self.records.document(request_id).collection(EVENTS_SUBCOLLECTION)
        for entry in entries:
            entry = {"at": self.clock(), **entry}
            # Deterministic ids: an identical duplicate (same callback twice) is kept once.
            transaction.set(log.document(log_entry_id(entry)), entry)


def _outbox_id(event_id: str) -> str:
    # Event ids are digests already; hashing again keeps older, longer ids valid document ids.
    return hashlib.sha256(event_id.encode()).hexdigest()[:32]
