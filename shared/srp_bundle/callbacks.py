"""Callbacks: authenticate and validate what SRP says about a task, then advance its record.

Nothing is written for a request that fails authentication (401), uses the wrong method
(405) or sends a malformed body (400). A terminal status is confirmed with SRP's
`GET /api/v1/tasks?id=` before it is accepted, so a forged or replayed body cannot
finish a task; if SRP disagrees, SRP's own status is what the record gets. A task the
record does not name yet is read back from SRP too: it is attached (or kept as a
duplicate of a lost POST) only if SRP says it renders the request's collection and was
posted with this request's callback; otherwise the callback is logged and changes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from srp_bundle.callback_auth import CALLBACK_METHOD, REQUEST_ID_PARAM, token_is_valid
from srp_bundle.errors import InvalidMessageError, SrpError, SrpNotFoundError
from srp_bundle.events import EventPublisher
from srp_bundle.json_limits import parse_json
from srp_bundle.log import get_logger, log_fields
from srp_bundle.outbox import apply_and_publish
from srp_bundle.redaction import redact, redact_json
from srp_bundle.render_paths import check_output_files
from srp_bundle.settings import Settings
from srp_bundle.srp_models import CallbackUrl, SrpCallback, SrpTask, parse_callback
from srp_bundle.task_state import SrpStatusReported, TaskRecord, is_terminal_status
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
    ) -> None:
        """`srp` makes the SRP client on first need: only terminal statuses are confirmed."""
        self.settings = settings
        self.store = store
        self.srp = srp
        self.publisher = publisher
        self.secrets = (settings.webhook_secret, settings.webhook_secret_previous)

    def ingest(self, method: str, request_id: str | None, token: str | None, body: bytes) -> Reply:
        """Handle one HTTP callback and say what to answer."""
        if method.lower() != CALLBACK_METHOD:
            return Reply(405, {"error": f"method {method} not allowed; use POST"})
        if not request_id or not token_is_valid(token, request_id, self.secrets):
            logger.warning("callback rejected: missing or wrong token")
            return Reply(401, {"error": "missing or invalid callback token"})
        try:
            callback = self._parse(body)
        except InvalidMessageError as error:
            logger.warning("malformed callback: %s", error)
            return Reply(400, {"error": str(error)})
        record = self.store.get(request_id)
        if record is None:
            logger.error(
                "callback for an unknown request", extra=log_fields(task_id=callback.task_id)
            )
            return Reply(404, {"error": f"no render request {request_id!r}"})
        # SRP's words may echo the request's callbacks: no header value goes further.
        secrets = self.store.callback_header_values(record)
        status, reason = callback.status, _reason(callback)
        reason = None if reason is None else redact(reason, secrets)
        confirm = (
            self.settings.confirm_terminal_status
            and is_terminal_status(status)
            and not record.is_terminal
        )
        srp_task: SrpTask | None = None
        if callback.task_id != record.task_id or confirm:
            checked = self._check_task(record, callback.task_id)
            if isinstance(checked, Reply):
                return checked
            srp_task = checked
        if confirm and srp_task is not None and srp_task.status != status:
            logger.warning(
                "callback said %s but SRP says %s; recording SRP's status",
                status,
                srp_task.status,
                extra=log_fields(task_id=callback.task_id),
            )
            status, reason = srp_task.status, None
        # Output files only count when SRP's own status is the one the callback reported.
        output_files = (callback.output_files or ()) if status == callback.status else ()
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
            return Reply(404, {"error": f"no render request {request_id!r}"})
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

    def _check_task(self, record: TaskRecord, task_id: str) -> SrpTask | Reply:
        """SRP's own view of the task, or the answer when it cannot be the record's."""
        try:
            task = self._srp_task(task_id)
        except SrpError as error:
            # SRP retries a failed callback delivery; nothing was written.
            logger.warning("could not check the task with SRP: %s", error)
            return Reply(503, {"error": "could not confirm the task with SRP; retry"})
        if task is None:
            logger.warning(
                "callback for a task SRP does not know; ignored", extra=log_fields(task_id=task_id)
            )
            return Reply(422, {"error": f"SRP has no task {task_id!r}"})
        problem = self._not_this_requests_task(record, task_id, task)
        if problem is None:
            return task
        logger.warning("callback ignored: %s", problem, extra=log_fields(task_id=task_id))
        return Reply(
            200,
            {
                "request_id": record.request_id,
                "state": str(record.state),
                "changed": False,
                "ignored": problem,
            },
        )

    def _srp_task(self, task_id: str) -> SrpTask | None:
        """The task as SRP has it, or None if SRP does not know it."""
        try:
            return self.srp().get_task(task_id)
        except SrpNotFoundError:
            return None

    def _not_this_requests_task(
        self, record: TaskRecord, task_id: str, task: SrpTask
    ) -> str | None:
        """Why SRP's task cannot be the record's (or a duplicate of its POST), or None."""
        if task.id != task_id:
            return f"SRP answered with task {task.id!r} for {task_id!r}"
        collection = task.collection.uid if task.collection else None
        if collection and record.collection_id and not _same_uuid(collection, record.collection_id):
            return f"task {task_id} renders collection {collection}, not {record.collection_id}"
        if task_id == record.task_id:
            return None
        # SRP echoes the callbacks it was given: ours names the request that posted the task.
        # Without that proof the task is never adopted (a byte-identical request's task would
        # pass every other check).
        named = {_request_named_by(callback) for callback in task.options.callback_urls}
        if record.request_id not in named:
            return f"task {task_id} was not posted for request {record.request_id}"
        owner = self.store.find_by_task_id(task_id)
        if owner is not None and owner.request_id != record.request_id:
            return f"task {task_id} is request {owner.request_id}'s"
        return None


def _request_named_by(callback: CallbackUrl) -> str | None:
    url = callback if isinstance(callback, str) else callback.url
    values = parse_qs(urlsplit(url).query).get(REQUEST_ID_PARAM) if isinstance(url, str) else None
    return values[0] if values else None


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
