"""The task record and its state machine: the one place that decides transitions and completion.

Pure code, no I/O. Every job (submission, callbacks, reconciliation, post-processing,
dead letters) describes what it learned as a *change*; `advance()` decides what that
means for the record, which events go out, and what the event log keeps.

    received -> submitted -> rendering -> rendered -> completed
         \\__________\\____________\\__________\\________> failed

A record never moves backwards; `completed` and `failed` are final. `render.completed`
goes out exactly once: on the transition into `completed`, which needs both SRP's
`done` and every file of its `output_files` post-processed (or described), in whichever
order the callback and the storage events arrive. The jobs pass only a trusted list
(SRP's answer or the task's render folder, see render_listing); without one, nothing
completes.

Over 300 lines: the whole state machine in one reading; each change's rule sits beside the
others it must agree with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from srp_bundle.events import EventType

# Per record: duplicate task ids kept, and event-log entries written (the rest are counted).
MAX_LIST_ENTRIES = 200


class State(StrEnum):
    """Our own view of a request's progress."""

    RECEIVED = "received"
    SUBMITTED = "submitted"
    RENDERING = "rendering"
    RENDERED = "rendered"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED})
ACTIVE_STATES = tuple(s for s in State if s not in TERMINAL_STATES)
_RANK = {
    State.RECEIVED: 0,
    State.SUBMITTED: 1,
    State.RENDERING: 2,
    State.RENDERED: 3,
    State.COMPLETED: 4,
    State.FAILED: 5,
}
# The order a record moves in (any state may still fail); the simulator's invariants read it.
STATE_ORDER: tuple[State, ...] = tuple(sorted(_RANK, key=_RANK.__getitem__))


def state_rank(state: State) -> int:
    """Where `state` stands in STATE_ORDER: a record never moves to a lower rank."""
    return _RANK[state]


# SRP's documented status is `done`; the others are what a task queue reports on the way.
_STATUS_TO_STATE = {
    "new": State.SUBMITTED,
    "created": State.SUBMITTED,
    "queued": State.SUBMITTED,
    "pending": State.SUBMITTED,
    "waiting": State.SUBMITTED,
    "in_progress": State.RENDERING,
    "processing": State.RENDERING,
    "rendering": State.RENDERING,
    "running": State.RENDERING,
    "started": State.RENDERING,
    "done": State.RENDERED,
    "failed": State.FAILED,
    "error": State.FAILED,
    "canceled": State.FAILED,
    "cancelled": State.FAILED,
    "rejected": State.FAILED,
}


def state_for_status(status: str) -> State | None:
    """Our state for an SRP status, or None for a status we do not know."""
    return _STATUS_TO_STATE.get(status.strip().lower())


def is_terminal_status(status: str) -> bool:
    """Whether an SRP status ends the task (done or failed)."""
    return state_for_status(status) in (State.RENDERED, State.FAILED)


def utc_now() -> datetime:
    """Timezone-aware now from the system clock: only a default, the jobs read `Effects.clock`."""
    return datetime.now(UTC)


# What use cases read the time from; production passes `utc_now`, tests and the simulator
# their own.
Clock = Callable[[], datetime]


@dataclass
class TaskRecord:
    """`TASKS_COLLECTION/{request_id}`: the design's fixed fields plus what the jobs need."""

    request_id: str
    collection_id: str
    state: State = State.RECEIVED
    task_id: str | None = None
    status: str | None = None
    output_files: list[str] = field(default_factory=list)
    derivatives: list[dict[str, Any]] = field(default_factory=list)
    # Every output file post-processed: {path, generation, kind, format, content_type,
    # bytes, sha256} plus what its kind measures (duration, codec, meshes, ...).
    files: list[dict[str, Any]] = field(default_factory=list)
    # The files without derivatives (3D and anything else), as described in `files`.
    other_files: list[dict[str, Any]] = field(default_factory=list)
    # The primary render: the first output file that is an image or a video.
    render_path: str | None = None
    render_generation: int | None = None
    # When SRP said done, and when reconcile re-drove post-processing past the deadline.
    rendered_at: datetime | None = None
    redriven_at: datetime | None = None
    error: dict[str, str] | None = None
    duplicate_task_ids: list[str] = field(default_factory=list)
    # The producer's input_data text, as published and as sent to SRP: a string is what
    # Firestore always stores (not every JSON object is a valid map), unindexed.
    input_data_json: str = "{}"
    priority: int | None = None
    # The producer's callbacks with header values redacted; with `callback_headers_kept_apart`
    # the complete entries are in `{TASKS_COLLECTION}_secrets/{request_id}` (task_store).
    callback_urls: list[Any] = field(default_factory=list)
    callback_headers_kept_apart: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None
    # The batch this request is a member of (indexed: `batch_id == X and state == S`).
    batch_id: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    # Submission bookkeeping: who may POST now, and whether an earlier POST may have landed.
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    submit_attempts: int = 0
    ambiguous_submit_at: datetime | None = None
    # POSTs whose answer was lost and whose task SRP has not named yet: each may (or may
    # not) have created a task we cannot see, since SRP cannot list tasks by request.
    unconfirmed_submissions: int = 0
    # The latest transient failure, kept so a dead-lettered request can say why it gave up.
    last_error: dict[str, str] | None = None
    # Bounds: at most MAX_LIST_ENTRIES duplicates and event-log writes, the rest counted.
    duplicate_task_ids_dropped: int = 0
    event_log_entries: int = 0
    event_log_dropped: int = 0
    # sha256 of the Pub/Sub message data that created the record: a dead-lettered copy of
    # a message without request_id comes with a new message id and finds its record by this.
    message_digest: str | None = None
    # Bound into this request's callback tokens (callback_auth); drawn before the first
    # POST, replaced to revoke them. None on records older than nonces (v1 tokens).
    callback_nonce: str | None = None

    @property
    def input_data(self) -> dict[str, Any]:
        """The producer's input_data as a Python object."""
        value: dict[str, Any] = json.loads(self.input_data_json)
        return value

    @property
    def is_terminal(self) -> bool:
        """Whether the record can no longer change state."""
        return self.state in TERMINAL_STATES

    def to_document(self) -> dict[str, Any]:
        """The Firestore document."""
        document = {name: getattr(self, name) for name in self.__dataclass_fields__}
        document["state"] = str(self.state)
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any] | None) -> TaskRecord:
        """Rebuild a record from its Firestore document, ignoring fields we do not know."""
        document = document or {}
        known = {k: v for k, v in document.items() if k in cls.__dataclass_fields__}
        known["state"] = State(known.get("state", State.RECEIVED))
        if "input_data_json" not in known and isinstance(document.get("input_data"), dict):
            known["input_data_json"] = json.dumps(document["input_data"])  # an older record
        return cls(**known)

    def event_data(self) -> dict[str, Any]:
        """What every outgoing event about this record carries."""
        return {
            "request_id": self.request_id,
            "task_id": self.task_id,
            "collection_id": self.collection_id,
            "state": str(self.state),
            "status": self.status,
            "batch_id": self.batch_id,
        }


# ---- changes: what a job learned ------------------------------------------------------


@dataclass(frozen=True)
class TaskSubmitted:
    """SRP accepted our POST and told us the task id."""

    task_id: str
    status: str | None = None


@dataclass(frozen=True)
class SrpStatusReported:
    """A status for a task, from a callback or from polling SRP."""

    task_id: str
    status: str
    output_files: tuple[str, ...] = ()
    timestamp: str | None = None
    source: str = "callback"
    reason: str | None = None


@dataclass(frozen=True)
class DerivativesReady:
    """Post-processing finished for one generation of one output file (`render_path`).

    `derivatives` are its derivatives (each with `source` and `role`), `file` its
    description (kind, format, content_type, bytes, sha256, measures).
    """

    render_path: str
    generation: int
    derivatives: tuple[dict[str, Any], ...]
    file: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskFailed:
    """Something permanent went wrong; `code` is machine-readable, `message` for people."""

    code: str
    message: str


@dataclass(frozen=True)
class DeadLettered:
    """Pub/Sub gave up delivering the request: fail it, unless SRP already has its task."""

    attempts: str
    source: str


@dataclass(frozen=True)
class LeaseRequested:
    """A delivery asks to POST the request to SRP: take the lease, recording the POST's intent.

    The intent (`ambiguous_submit_at`, one more `unconfirmed_submissions`) is written before
    the POST: if its outcome is never recorded (the answer lost, or the write after it
    failed), the POST already counts as one that may have created a task. With
    `expired_reason`, a request without a task is failed `request_expired` instead.
    """

    attempt: str
    lease_seconds: float
    ambiguous_wait_seconds: float
    expired_reason: str | None = None
    # The callback nonce a record without one gets with its lease (new records, and records
    # made before nonces existed).
    fresh_nonce: str | None = None


@dataclass(frozen=True)
class LeaseReleased:
    """The POST failed and created nothing (a 4xx, or never sent): lease back, intent settled."""

    attempt: str
    code: str
    message: str


@dataclass(frozen=True)
class SubmitOutcomeUnknown:
    """The POST may have created the task (its answer lost, a 5xx): lease back, and the
    ambiguity wait starts now, for SRP's callback to name the task."""

    attempt: str
    code: str
    message: str


@dataclass(frozen=True)
class PostprocessRedriven:
    """Reconcile re-drove post-processing of a `rendered` request from the renders bucket."""


@dataclass(frozen=True)
class CallbackTokensRevoked:
    """Every callback token issued for the request stops working: the record gets `nonce`."""

    nonce: str


@dataclass(frozen=True)
class NoNews:
    """Reconcile looked at a record and learned nothing: it goes to the back of the queue."""


Change = (
    TaskSubmitted
    | SrpStatusReported
    | DerivativesReady
    | TaskFailed
    | DeadLettered
    | LeaseRequested
    | LeaseReleased
    | SubmitOutcomeUnknown
    | PostprocessRedriven
    | CallbackTokensRevoked
    | NoNews
)


class LeaseVerdict(StrEnum):
    """What a `LeaseRequested` change decided for the delivery that asked."""

    TAKEN = "taken"  # this delivery may POST now
    ALREADY_SUBMITTED = "already_submitted"
    ALREADY_FINAL = "already_final"
    HELD = "held"  # another delivery holds the lease
    AWAITING_SRP = "awaiting_srp"  # an earlier POST may have created the task
    EXPIRED = "expired"  # too old to submit: failed request_expired


@dataclass
class Transition:
    """The outcome of applying one change: the new record, what to publish and to log."""

    record: TaskRecord
    events: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False
    attached_task_id: str | None = None
    # Set for a `LeaseRequested` change only.
    lease: LeaseVerdict | None = None


def advance(record: TaskRecord, change: Change, now: datetime | None = None) -> Transition:
    """Apply `change` to `record` without ever moving it backwards."""
    now = now or utc_now()
    current = replace(
        record,
        output_files=list(record.output_files),
        derivatives=list(record.derivatives),
        files=list(record.files),
        other_files=list(record.other_files),
        duplicate_task_ids=list(record.duplicate_task_ids),
    )
    transition = Transition(record=current)
    if isinstance(change, TaskSubmitted):
        _attach_task(transition, change.task_id, change.status, now)
    elif isinstance(change, SrpStatusReported):
        _apply_status(transition, change, now)
    elif isinstance(change, DerivativesReady):
        _apply_derivatives(transition, change, now)
    elif isinstance(change, DeadLettered):
        _apply_dead_letter(transition, change, now)
    elif isinstance(change, LeaseRequested):
        _take_lease(transition, change, now)
    elif isinstance(change, LeaseReleased | SubmitOutcomeUnknown):
        _release_lease(transition, change, now)
    elif isinstance(change, PostprocessRedriven):
        _mark_redriven(transition, now)
    elif isinstance(change, CallbackTokensRevoked):
        current.callback_nonce = change.nonce
        transition.changed = True
        transition.log.append(_log_entry("callback_tokens_revoked", now))
    elif isinstance(change, NoNews):
        transition.changed = not current.is_terminal  # only the record's updated_at moves
    else:
        _fail(transition, change.code, change.message, now)
    if transition.changed:
        current.updated_at = now
    return transition


def _attach_task(transition: Transition, task_id: str, status: str | None, now: datetime) -> bool:
    """Attach SRP's task id; a second, different id is a duplicate SRP task. True if ours.

    Every POST counts in `unconfirmed_submissions` from before it is sent; each task SRP
    names for the request (in our POST's answer, a callback or a poll; attached or a
    duplicate) is one POST's outcome: one fewer unconfirmed submission.
    """
    record = transition.record
    if record.task_id == task_id:
        return True
    if record.task_id is not None:
        if task_id not in record.duplicate_task_ids:
            if len(record.duplicate_task_ids) < MAX_LIST_ENTRIES:
                record.duplicate_task_ids.append(task_id)
            else:
                record.duplicate_task_ids_dropped += 1  # the record stays under 1 MiB
            record.unconfirmed_submissions = max(0, record.unconfirmed_submissions - 1)
            transition.changed = True
            transition.log.append(
                _log_entry("duplicate_task", now, task_id=task_id, kept_task_id=record.task_id)
            )
        return False
    record.task_id = task_id
    record.unconfirmed_submissions = max(0, record.unconfirmed_submissions - 1)
    record.lease_owner = None
    record.lease_expires_at = None
    record.ambiguous_submit_at = None
    transition.attached_task_id = task_id
    transition.changed = True
    if record.is_terminal:
        # A request failed before SRP's answer reached us: keep the id, never revive it.
        return True
    if status is not None and state_for_status(status) == State.SUBMITTED:
        record.status = status
    _move(transition, State.SUBMITTED, now, EventType.TASK_SUBMITTED)
    return True


def _apply_status(transition: Transition, change: SrpStatusReported, now: datetime) -> None:
    record = transition.record
    if not _attach_task(transition, change.task_id, None, now):
        return
    if record.is_terminal:
        return
    target = state_for_status(change.status)
    if target is None:
        transition.log.append(_log_entry("unknown_status", now, status=change.status))
        return
    if target == State.FAILED:
        record.status = change.status
        reason = change.reason or f"SRP reported status {change.status!r}"
        _fail(transition, "srp_render_failed", reason, now)
        return
    if target == State.RENDERED == record.state and change.output_files and not record.output_files:
        # `done` came without a file list (an empty folder, or a record older than
        # trusted lists); a later look at SRP or the bucket brings it now.
        record.output_files = list(change.output_files)
        transition.changed = True
        _choose_render_path(record)
        if all_outputs_handled(record):
            _move(transition, State.COMPLETED, now)
        return
    if _RANK[target] < _RANK[record.state] or (
        _RANK[target] == _RANK[record.state] and record.status == change.status
    ):
        return  # out of order or a repeat: the log keeps it, the record does not move
    record.status = change.status
    transition.changed = True
    if target == State.RENDERED:
        record.output_files = list(change.output_files)
        record.rendered_at = now
        _choose_render_path(record)
        if all_outputs_handled(record):
            target = State.COMPLETED
    if target == record.state:
        transition.events.append(_event(EventType.TASK_STATUS_CHANGED, record, now))
        return
    _move(transition, target, now)


def _apply_derivatives(transition: Transition, change: DerivativesReady, now: datetime) -> None:
    record = transition.record
    if record.state == State.FAILED:
        transition.log.append(_log_entry("derivatives_ignored", now, reason="task failed"))
        return
    path = change.render_path
    known = next((f for f in record.files if f.get("path") == path), None)
    if known is not None and int(known.get("generation", 0)) >= change.generation:
        return  # this generation of this file (or a newer one) is already recorded
    description = {**change.file, "path": path, "generation": change.generation}
    record.files = sorted(
        [f for f in record.files if f.get("path") != path] + [description],
        key=lambda f: str(f["path"]),
    )
    # Stable sort: each file's derivatives keep their order (the specs', then the preview).
    record.derivatives = sorted(
        [d for d in record.derivatives if d.get("source") != path] + list(change.derivatives),
        key=lambda d: str(d.get("source", "")),
    )
    record.other_files = [f for f in record.files if not _has_derivatives(f)]
    _choose_render_path(record)
    transition.changed = True
    transition.log.append(
        _log_entry(
            "derivatives",
            now,
            path=path,
            generation=change.generation,
            count=len(change.derivatives),
        )
    )
    if record.state == State.RENDERED and all_outputs_handled(record):
        _move(transition, State.COMPLETED, now)


def all_outputs_handled(record: TaskRecord) -> bool:
    """Every file in `output_files` is post-processed; never without the list.

    The list comes from SRP or the task's render folder (never from a callback body), so
    without it nothing says which files a complete render has.
    """
    handled = {f.get("path") for f in record.files}
    return bool(record.output_files) and all(path in handled for path in record.output_files)


def missing_outputs(record: TaskRecord) -> list[str]:
    """The files of `output_files` not post-processed yet."""
    handled = {f.get("path") for f in record.files}
    return [path for path in record.output_files if path not in handled]


def _has_derivatives(file: dict[str, Any]) -> bool:
    return file.get("kind") in ("image", "video", "audio")


def _choose_render_path(record: TaskRecord) -> None:
    """The primary render: the first image or video in `output_files` order, else any file."""
    by_path = {f["path"]: f for f in record.files}
    order = [p for p in record.output_files if p in by_path] + sorted(
        p for p in by_path if p not in record.output_files
    )
    visual = [p for p in order if by_path[p].get("kind") in ("image", "video")]
    chosen = (visual or order or [None])[0]
    if chosen is None:
        return
    record.render_path = chosen
    record.render_generation = int(by_path[chosen]["generation"])


def _take_lease(transition: Transition, change: LeaseRequested, now: datetime) -> None:
    record = transition.record
    if record.task_id is not None:
        transition.lease = LeaseVerdict.ALREADY_SUBMITTED
    elif record.is_terminal:
        transition.lease = LeaseVerdict.ALREADY_FINAL
    elif change.expired_reason is not None:
        transition.lease = LeaseVerdict.EXPIRED
        _fail(transition, "request_expired", change.expired_reason, now)
    elif record.lease_expires_at is not None and record.lease_expires_at > now:
        transition.lease = LeaseVerdict.HELD
    elif record.ambiguous_submit_at is not None and now < record.ambiguous_submit_at + timedelta(
        seconds=change.ambiguous_wait_seconds
    ):
        transition.lease = LeaseVerdict.AWAITING_SRP
    else:
        transition.lease = LeaseVerdict.TAKEN
        if record.callback_nonce is None:
            record.callback_nonce = change.fresh_nonce
        record.lease_owner = change.attempt
        record.lease_expires_at = now + timedelta(seconds=change.lease_seconds)
        record.submit_attempts += 1
        record.ambiguous_submit_at = now
        record.unconfirmed_submissions += 1
        transition.changed = True
        transition.log.append(_log_entry("submit_attempt", now, attempt=record.submit_attempts))


def _release_lease(
    transition: Transition, change: LeaseReleased | SubmitOutcomeUnknown, now: datetime
) -> None:
    record = transition.record
    if record.lease_owner != change.attempt or record.task_id is not None:
        return  # the lease ran out and another delivery took it, or the task is attached
    ambiguous = isinstance(change, SubmitOutcomeUnknown)
    record.lease_owner = None
    record.lease_expires_at = None
    record.last_error = {"code": change.code, "message": change.message}
    if ambiguous:
        record.ambiguous_submit_at = now  # the wait for SRP's callback starts now
    else:
        record.ambiguous_submit_at = None
        record.unconfirmed_submissions = max(0, record.unconfirmed_submissions - 1)
    transition.changed = True
    transition.log.append(
        _log_entry("submit_interrupted", now, ambiguous=ambiguous, **record.last_error)
    )


def _mark_redriven(transition: Transition, now: datetime) -> None:
    record = transition.record
    if record.state != State.RENDERED:
        return
    record.redriven_at = now
    transition.changed = True
    transition.log.append(_log_entry("postprocess_redriven", now, missing=missing_outputs(record)))


def _apply_dead_letter(transition: Transition, change: DeadLettered, now: datetime) -> None:
    record = transition.record
    if record.task_id is not None or record.is_terminal:
        # SRP has the task (its callbacks finish the request), or the request is final.
        transition.log.append(_log_entry("dead_letter_ignored", now, state=str(record.state)))
        return
    reason = f"gave up after {change.attempts} delivery attempts from {change.source}"
    if record.last_error and record.last_error.get("message"):
        reason += f"; last error: {record.last_error['message']}"
    _fail(transition, "dead_lettered", reason, now)


def _fail(transition: Transition, code: str, message: str, now: datetime) -> None:
    record = transition.record
    if record.is_terminal:
        return
    record.error = {"code": code, "message": message}
    record.lease_owner = None
    record.lease_expires_at = None
    transition.changed = True
    _move(transition, State.FAILED, now)


def _move(
    transition: Transition, target: State, now: datetime, event_type: EventType | None = None
) -> None:
    record = transition.record
    if _RANK[target] <= _RANK[record.state] and target != State.FAILED:
        return
    previous = record.state
    record.state = target
    transition.changed = True
    transition.log.append(_log_entry("transition", now, previous=str(previous), state=str(target)))
    if event_type is None:
        event_type = {
            State.FAILED: EventType.TASK_FAILED,
            State.COMPLETED: EventType.RENDER_COMPLETED,
        }.get(target, EventType.TASK_STATUS_CHANGED)
    transition.events.append(_event(event_type, record, now))


def _event(event_type: EventType, record: TaskRecord, now: datetime) -> dict[str, Any]:
    data = record.event_data()
    if event_type == EventType.TASK_FAILED:
        data["error"] = record.error
    if event_type == EventType.RENDER_COMPLETED:
        data["output_files"] = record.output_files
        data["derivatives"] = record.derivatives
        data["files"] = record.files
        data["render_path"] = record.render_path
    data["metadata"] = record.metadata
    data["time"] = now.isoformat()
    # Deterministic per transition, so a consumer can drop a re-sent event; a digest, so
    # it stays 32 characters whatever SRP's status is (Pub/Sub attributes are limited).
    identity = f"{record.request_id}:{event_type}:{record.state}:{record.status or ''}"
    event_id = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return {"event_id": event_id, "type": str(event_type), "data": data}


def capped_log(record: TaskRecord, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries the record's event log still has room for; counts the ones dropped."""
    room = max(0, MAX_LIST_ENTRIES - record.event_log_entries)
    kept = entries[:room]
    record.event_log_entries += len(kept)
    record.event_log_dropped += len(entries) - len(kept)
    return kept


def _log_entry(kind: str, now: datetime, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "at": now, **fields}


def log_entry_id(entry: dict[str, Any]) -> str:
    """A deterministic id for an event-log entry, so an identical duplicate is logged once."""
    stable = {k: v for k, v in entry.items() if k not in ("at", "received_at")}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
    return f"{entry['kind']}-{digest[:24]}"
