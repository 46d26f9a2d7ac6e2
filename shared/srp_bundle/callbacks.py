"""Callbacks: authenticate and validate what SRP says about a task, then advance its record.

Nothing is written for a request that fails authentication (401), uses the wrong method
(405) or sends a malformed body (400). The token is checked against the record (its
nonce, see callback_auth), so the record is read first; an unknown request is a 401 too.
A terminal status is confirmed with SRP's `GET /api/v1/tasks?id=` before it is
accepted, so a forged or replayed body cannot finish a task; if SRP disagrees, SRP's own
status is what the record gets. The files a `done` request completes on come from SRP's
answer or the task's render folder (render_listing), never from the body. A task the
record does not name yet is read back from SRP too: it is attached (or kept as a
duplicate of a lost POST) only if SRP says it renders the request's collection and echoes
our own callback for this request, token included; otherwise the callback is logged and
changes nothing. A callback for a final record is answered 200 without a look-up or a
write; look-ups are budgeted per request and refusals remembered (srp_lookups).

Over 300 lines: authentication, the SRP cross-check and the trusted file list are one
decision about one callback.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as google_exceptions

from srp_bundle.callback_auth import (
    CALLBACK_METHOD,
    CallbackSigner,
    has_token_shape,
    new_callback_nonce,
)
from srp_bundle.errors import InvalidMessageError, SrpError, SrpNotFoundError
from srp_bundle.events import EventPublisher
from srp_bundle.json_limits import parse_json
from srp_bundle.log import get_logger, log_fields
from srp_bundle.outbox import apply_and_publish
from srp_bundle.redaction import redact, redact_json
from srp_bundle.render_listing import RenderFolder, trusted_output_files, warn_if_untrusted
from srp_bundle.render_paths import check_output_files
from srp_bundle.settings import Settings
from srp_bundle.srp_lookups import LookupLedgers, Refusal
from srp_bundle.srp_models import SrpCallback, SrpTask, parse_callback
from srp_bundle.task_state import (
    CallbackTokensRevoked,
    SrpStatusReported,
    State,
    TaskRecord,
    is_terminal_status,
    state_for_status,
)
from srp_bundle.task_store import RecordNotFoundError, TaskStore

if TYPE_CHECKING:
    from srp_bundle.srp_client import SrpClient

logger = get_logger(__name__)
MAX_CALLBACK_BYTES = 64 * 1024
MAX_STATUS_CHARS = 64
# SRP's task ids are UUIDs; anything else is not a task SRP made.
_SRP_TASK_ID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# SRP's callbacks are flat; the body is kept in the event log, and Firestore refuses
# values nested deeper than 20 levels.
MAX_CALLBACK_DEPTH = 16
_UNAUTHORIZED = {"error": "missing or invalid callback token"}


@dataclass(frozen=True)
class Reply:
    """The HTTP answer to one callback."""

    status_code: int
    body: dict[str, Any]


class CallbackIngestor:
    """Turns SRP callbacks into record changes."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        srp: Callable[[], SrpClient],
        publisher: EventPublisher,
        *,
        render_folder: RenderFolder | None = None,
        ledgers: LookupLedgers | None = None,
    ) -> None:
        """`srp` makes the SRP client on first need; `render_folder` lists a done task's files.

        Without `render_folder`, a done request's files come from SRP's answer only.
        """
        self.settings = settings
        self.store = store
        self.srp = srp
        self.publisher = publisher
        self.render_folder = render_folder
        self.ledgers = ledgers or LookupLedgers(store.client, store.collection_name)
        self.signer = CallbackSigner.from_settings(settings)

    def ingest(self, method: str, request_id: str | None, token: str | None, body: bytes) -> Reply:
        """Handle one HTTP callback and say what to answer."""
        if method.lower() != CALLBACK_METHOD:
            return Reply(405, {"error": f"method {method} not allowed; use POST"})
        if not request_id or not has_token_shape(token):
            logger.warning("callback rejected: missing or malformed token")
            return Reply(401, _UNAUTHORIZED)
        # The token is bound to the record's nonce: read it first (one read, no write).
        record = self.store.get(request_id)
        if record is None or not self.signer.is_valid(token, request_id, record.callback_nonce):
            logger.warning("callback rejected: wrong token or unknown request")
            return Reply(401, _UNAUTHORIZED)
        try:
            callback = self._parse(body)
        except InvalidMessageError as error:
            logger.warning("malformed callback: %s", error)
            return Reply(400, {"error": str(error)})
        status, reason = callback.status, _reason(callback)
        srp_task: SrpTask | None = None
        if record.is_terminal:
            # A final record never changes: no look-up, no transaction, nothing written.
            return _ignored(record, f"request is {record.state}")
        # SRP's words may echo the request's callbacks: no header value goes further.
        secrets = self.store.callback_header_values(record)
        reason = None if reason is None else redact(reason, secrets)
        if callback.task_id != record.task_id or (
            self.settings.confirm_terminal_status and is_terminal_status(status)
        ):
            checked = self._check_task(record, callback.task_id)
            if isinstance(checked, Reply):
                return checked
            srp_task = checked
        if srp_task is not None and is_terminal_status(status) and srp_task.status != status:
            logger.warning(
                "callback said %s but SRP says %s; recording SRP's status",
                status,
                srp_task.status,
                extra=log_fields(task_id=callback.task_id),
            )
            status, reason = srp_task.status, None
        try:
            output_files = self._output_files(record, callback, status, srp_task)
        except google_exceptions.GoogleAPIError as error:
            logger.warning("could not list the task's render folder: %s", error)
            return Reply(503, {"error": "could not list the task's files; retry"})
        change = SrpStatusReported(
            task_id=callback.task_id,
            status=status,
            output_files=output_files,
            timestamp=callback.timestamp.isoformat(),
            source="callback",
            reason=reason,
        )
        received = {"kind": "callback", "payload": redact_json(json.loads(body), secrets)}
        try:
            transition = apply_and_publish(
                self.store, self.publisher, request_id, change, received=received
            )
        except RecordNotFoundError:
            return Reply(401, _UNAUTHORIZED)
        record = transition.record
        logger.info(
            "callback %s: state %s",
            status,
            record.state,
            extra=log_fields(task_id=change.task_id, changed=transition.changed),
        )
        return Reply(
            200,
            {"request_id": request_id, "state": str(record.state), "changed": transition.changed},
        )

    def _parse(self, body: bytes) -> SrpCallback:
        payload = parse_json(
            body, what="body", max_bytes=MAX_CALLBACK_BYTES, max_depth=MAX_CALLBACK_DEPTH
        )
        callback = parse_callback(payload)
        if not _SRP_TASK_ID.match(callback.task_id):
            raise InvalidMessageError(f"task_id must be a UUID, got {callback.task_id!r:.60}")
        if len(callback.status) > MAX_STATUS_CHARS:
            raise InvalidMessageError(
                f"status must be at most {MAX_STATUS_CHARS} characters, got {len(callback.status)}"
            )
        check_output_files(callback.output_files, callback.task_id)
        if callback.status.strip().lower() == "done" and not callback.output_files:
            raise InvalidMessageError("a done callback must list output_files")
        return callback

    def _output_files(
        self, record: TaskRecord, callback: SrpCallback, status: str, srp_task: SrpTask | None
    ) -> tuple[str, ...]:
        """A done task's files from SRP's answer or its render folder, never from the body."""
        if (
            state_for_status(status) != State.RENDERED
            or record.output_files
            or record.task_id not in (None, callback.task_id)
        ):
            return ()
        if srp_task is None:
            # CONFIRM_TERMINAL_STATUS=false: SRP was not asked, so the callback names the
            # collection folder; the folder is still the task's own and the bucket still
            # decides which files there are.
            task = SrpTask(id=callback.task_id, status=status)
            files = trusted_output_files(task, self.render_folder, _collection_named_by(callback))
        else:
            files = trusted_output_files(srp_task, self.render_folder)
        warn_if_untrusted(callback.output_files, files, callback.task_id)
        return files

    def _check_task(self, record: TaskRecord, task_id: str) -> SrpTask | Reply:
        """SRP's own view of the task, or the answer when it cannot be the record's."""
        limit = self.settings.webhook_srp_lookups_per_hour
        decision = self.ledgers.take(record.request_id, task_id, self.store.clock(), limit)
        if decision.refusal is not None:
            return self._refused(record, decision.refusal, remembered=True)
        if not decision.allowed:
            logger.warning(
                "callback refused: %d SRP look-ups this hour for this request already",
                limit,
                extra=log_fields(task_id=task_id),
            )
            return Reply(429, {"error": f"more than {limit} SRP look-ups per hour; retry later"})
        try:
            task = self._srp_task(task_id)
        except SrpError as error:
            # SRP retries a failed callback delivery; nothing was written.
            logger.warning("could not check the task with SRP: %s", error)
            return Reply(503, {"error": "could not confirm the task with SRP; retry"})
        if task is None:
            refusal = Refusal(task_id, 422, f"SRP has no task {task_id!r}")
        else:
            problem, lasting = self._not_this_requests_task(record, task_id, task)
            if problem is None:
                return task
            refusal = Refusal(task_id, 200, problem)
            if not lasting:
                return self._refused(record, refusal, remembered=False)
        if task_id != record.task_id:
            self.ledgers.remember(record.request_id, refusal)
        return self._refused(record, refusal, remembered=False)

    def _refused(self, record: TaskRecord, refusal: Refusal, *, remembered: bool) -> Reply:
        """The answer to a callback for a task SRP does not know or that is not the record's."""
        logger.warning(
            "callback ignored%s: %s",
            " (remembered)" if remembered else "",
            refusal.reason,
            extra=log_fields(task_id=refusal.task_id),
        )
        if refusal.status_code != 200:
            return Reply(refusal.status_code, {"error": refusal.reason})
        return _ignored(record, refusal.reason)

    def _srp_task(self, task_id: str) -> SrpTask | None:
        """The task as SRP has it, or None if SRP does not know it."""
        try:
            return self.srp().get_task(task_id)
        except SrpNotFoundError:
            return None

    def _not_this_requests_task(
        self, record: TaskRecord, task_id: str, task: SrpTask
    ) -> tuple[str | None, bool]:
        """Why SRP's task cannot be the record's (or a duplicate of its POST), or None.

        The flag says whether the reason lasts (worth remembering): SRP's answer about
        which request a task belongs to does not change.
        """
        if task.id != task_id:
            return f"SRP answered with task {task.id!r} for {task_id!r}", False
        collection = task.collection.uid if task.collection else None
        if collection and record.collection_id and not _same_uuid(collection, record.collection_id):
            return (
                f"task {task_id} renders collection {collection}, not {record.collection_id}",
                True,
            )
        if task_id == record.task_id:
            return None, False
        # SRP echoes the callbacks it was given: ours (our URL, our token for this request)
        # proves the task was posted for it. Without that proof the task is never adopted (a
        # byte-identical request's task would pass every other check, and a producer's URL
        # can name any request).
        echoed = task.options.callback_urls
        webhook_url = self.settings.webhook_url
        if not webhook_url or not any(
            self.signer.is_our_echo(entry, webhook_url, record.request_id, record.callback_nonce)
            for entry in echoed
        ):
            # An answer that echoes no callback at all may be SRP's omission: not remembered.
            return f"task {task_id} was not posted for request {record.request_id}", bool(echoed)
        owner = self.store.find_by_task_id(task_id)
        if owner is not None and owner.request_id != record.request_id:
            return f"task {task_id} is request {owner.request_id}'s", True
        return None, False


def revoke_callback_tokens(store: TaskStore, request_id: str) -> bool:
    """Replace the record's nonce: every token issued for the request stops working.

    SRP's own callbacks for the request are refused from then on (401); reconcile still
    polls SRP for its status and lists its files. False if there is no such record.
    """

    try:
        store.apply(request_id, CallbackTokensRevoked(new_callback_nonce()))
    except RecordNotFoundError:
        return False
    return True


def _ignored(record: TaskRecord, problem: str) -> Reply:
    return Reply(
        200,
        {
            "request_id": record.request_id,
            "state": str(record.state),
            "changed": False,
            "ignored": problem,
        },
    )


def _collection_named_by(callback: SrpCallback) -> str | None:
    """The collection folder of the callback's (already checked) output files."""
    files = callback.output_files or ()
    return files[0].split("/")[1] if files else None


def _same_uuid(one: str, other: str) -> bool:
    try:
        return uuid.UUID(one) == uuid.UUID(other)
    except ValueError:
        return one == other


def _reason(callback: SrpCallback) -> str | None:
    for key in ("reason", "error", "message"):
        value = callback.extra.get(key)
        if isinstance(value, str) and value:
            return value[:500]
    return None
