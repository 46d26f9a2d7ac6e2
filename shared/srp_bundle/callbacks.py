"""Callbacks: authenticate and validate what SRP says about a task, then advance its record.

Nothing is written for a request that fails authentication (401), uses the wrong method
(405) or sends a malformed body (400). A terminal status is confirmed with SRP's
`GET /api/v1/tasks?id=` before it is accepted, so a forged or replayed body cannot
finish a task; if SRP disagrees, SRP's own status is what the record gets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from srp_bundle.callback_auth import CALLBACK_METHOD, token_is_valid
from srp_bundle.errors import InvalidMessageError, SrpError, SrpNotFoundError
from srp_bundle.events import EventPublisher, publish_transition
from srp_bundle.json_limits import parse_json
from srp_bundle.log import get_logger, log_fields
from srp_bundle.render_paths import check_output_files
from srp_bundle.settings import Settings
from srp_bundle.srp_models import SrpCallback, parse_callback
from srp_bundle.task_state import SrpStatusReported, is_terminal_status
from srp_bundle.task_store import RecordNotFoundError, TaskStore

if TYPE_CHECKING:
    from srp_bundle.srp_client import SrpClient

logger = get_logger(__name__)
MAX_CALLBACK_BYTES = 64 * 1024
# SRP's callbacks are flat; the body is kept in the event log, and Firestore refuses
# values nested deeper than 20 levels.
MAX_CALLBACK_DEPTH = 16
_UNKNOWN_TO_SRP = "\0unknown"


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
        status, reason = callback.status, _reason(callback)
        if self.settings.confirm_terminal_status and is_terminal_status(status):
            try:
                confirmed = self._confirm(request_id, callback)
            except SrpError as error:
                # SRP retries a failed callback delivery; nothing was written.
                logger.warning("could not confirm %s with SRP: %s", status, error)
                return Reply(503, {"error": "could not confirm the status with SRP; retry"})
            if confirmed == _UNKNOWN_TO_SRP:
                logger.warning(
                    "callback for a task SRP does not know; ignored",
                    extra=log_fields(task_id=callback.task_id),
                )
                return Reply(422, {"error": f"SRP has no task {callback.task_id!r}"})
            if confirmed is not None and confirmed != status:
                logger.warning(
                    "callback said %s but SRP says %s; recording SRP's status",
                    status,
                    confirmed,
                    extra=log_fields(task_id=callback.task_id),
                )
                status, reason = confirmed, None
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
        received = {"kind": "callback", "payload": json.loads(body)}
        try:
            transition = self.store.apply(request_id, change, received=received)
        except RecordNotFoundError:
            logger.error(
                "callback for an unknown request", extra=log_fields(task_id=change.task_id)
            )
            return Reply(404, {"error": f"no render request {request_id!r}"})
        publish_transition(self.store, self.publisher, request_id, transition.events)
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
        check_output_files(callback.output_files, callback.task_id)
        if callback.status.strip().lower() == "done" and not callback.output_files:
            raise InvalidMessageError("a done callback must list output_files")
        return callback

    def _confirm(self, request_id: str, callback: SrpCallback) -> str | None:
        """SRP's own status for the task, unless the record makes asking pointless (None)."""
        record = self.store.get(request_id)
        if record is None or record.is_terminal:
            return None  # unknown request (404 follows) or a duplicate: nothing can change
        if record.task_id is not None and record.task_id != callback.task_id:
            return None  # another task than ours: recorded as a duplicate, never applied
        try:
            return self.srp().get_task(callback.task_id).status
        except SrpNotFoundError:
            return _UNKNOWN_TO_SRP


def _reason(callback: SrpCallback) -> str | None:
    for key in ("reason", "error", "message"):
        value = callback.extra.get(key)
        if isinstance(value, str) and value:
            return value[:500]
    return None
