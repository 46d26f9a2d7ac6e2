"""Submission: one render request in, exactly one SRP task attached to it.

1. The record `TASKS_COLLECTION/{request_id}` is created (or found) in a transaction,
   and this delivery takes a short lease on it before anything is sent to SRP.
2. A record that already has a task id, or is final, submits nothing.
3. The POST carries our request-bound callback; its answer attaches the task id.
4. The lease transaction also records the POST's intent (`ambiguous_submit_at`, one more
   `unconfirmed_submissions`); only a recorded outcome settles it (the task attached, or a
   4xx / a request never sent, which created nothing). While an outcome is unknown (answer
   lost, a 5xx, or the write after a 201 failed), redeliveries wait
   `AMBIGUOUS_SUBMIT_WAIT_SECONDS` for SRP's callback to name the task before posting
   again. Any second task SRP reports for the request is recorded in `duplicate_task_ids`,
   never silently attached or lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from srp_bundle.callback_auth import CallbackSigner, new_callback_nonce
from srp_bundle.callback_policy import check_producer_callbacks
from srp_bundle.cloudevents import PubsubMessage
from srp_bundle.errors import BundleError, CallbackRefusedError, InvalidMessageError, SrpError
from srp_bundle.events import EventPublisher, publish_transition
from srp_bundle.log import bind, get_logger, log_fields
from srp_bundle.render_requests import (
    RenderRequest,
    message_digest,
    parse_render_request,
    request_id_hint,
)
from srp_bundle.settings import Settings
from srp_bundle.srp_client import SrpClient
from srp_bundle.srp_models import RawJson, callback_url_to_json, parse_callback_urls
from srp_bundle.task_state import (
    Clock,
    State,
    TaskFailed,
    TaskRecord,
    TaskSubmitted,
    advance,
    utc_now,
)
from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)


class Outcome(StrEnum):
    """What one delivery of a render request achieved."""

    SUBMITTED = "submitted"
    ALREADY_SUBMITTED = "already_submitted"
    ALREADY_FINAL = "already_final"
    FAILED = "failed"


@dataclass(frozen=True)
class _Claim:
    outcome: Outcome | None
    record: TaskRecord | None


class SubmissionDeferredError(BundleError):
    """Another delivery holds the lease, or an earlier POST awaits confirmation: retry later."""

    code = "submission_deferred"
    transient = True


@dataclass(frozen=True)
class SubmissionResult:
    """The outcome and the record as it stands afterwards."""

    outcome: Outcome
    record: TaskRecord | None


class Submitter:
    """Turns render requests into SRP tasks, once each."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        srp: SrpClient,
        publisher: EventPublisher,
        *,
        clock: Clock = utc_now,
    ) -> None:
        """`clock` is read whenever a time is needed: each lease from the time it is taken."""
        self.settings = settings
        self.store = store
        self.srp = srp
        self.publisher = publisher
        self.clock = clock
        self.lease_seconds = int(settings.srp_timeout_seconds * 3) + 30

    def submit(self, message: PubsubMessage) -> SubmissionResult:
        """Handle one delivery; raise only for transient failures (the message is redelivered)."""
        now = self.clock()
        try:
            request = parse_render_request(
                message.data,
                message.message_id,
                allow_local_http_callbacks=self.settings.allow_local_http_callbacks,
            )
        except InvalidMessageError as error:
            return self._reject(message, error, now)
        with bind(request_id=request.request_id):
            attempt = uuid.uuid4().hex
            too_old = self._too_old(message, now)
            claim = self._claim(
                request, attempt, expired=too_old is not None, digest=message_digest(message.data)
            )
            if claim.outcome is not None:
                return SubmissionResult(claim.outcome, claim.record)
            if too_old is not None:
                return self._fail_request(request.request_id, "request_expired", too_old)
            return self._post(request, attempt, claim.record)

    def resubmit(self, record: TaskRecord) -> SubmissionResult:
        """Re-drive a record stuck before submission, under the same lease rules as `submit`."""
        now = self.clock()
        try:
            request = _stored_request(record)
        except InvalidMessageError as error:
            reason = f"the stored request can never be sent: {error}"
            return self._fail_request(record.request_id, error.code, reason)
        age = (now - record.created_at).total_seconds()
        expired = age > self.settings.max_request_age_seconds
        attempt = uuid.uuid4().hex
        claim = self._claim(request, attempt, expired=expired)
        if claim.outcome is not None:
            return SubmissionResult(claim.outcome, claim.record)
        if expired:
            reason = f"never submitted within MAX_REQUEST_AGE_SECONDS ({age:.0f}s old)"
            return self._fail_request(request.request_id, "request_expired", reason)
        try:
            # A record written before this policy existed is held to it too.
            check_producer_callbacks(
                request.callback_urls, allow_local_http=self.settings.allow_local_http_callbacks
            )
        except CallbackRefusedError as error:
            self._release(request.request_id, attempt, error, ambiguous=False)  # nothing sent
            return self._fail_request(request.request_id, error.code, str(error))
        return self._post(request, attempt, claim.record)

    # ---- steps ------------------------------------------------------------------------

    def _claim(
        self, request: RenderRequest, attempt: str, *, expired: bool, digest: str | None = None
    ) -> _Claim:
        """Create the record or take its lease; say why not when this delivery must not POST."""
        verdict: dict[str, Any] = {}

        def decide(record: TaskRecord | None) -> tuple[TaskRecord | None, list[dict[str, Any]]]:
            verdict.clear()
            now = self.clock()  # the lease runs from when it is taken (retries included)
            if record is not None and record.task_id is None and not record.is_terminal and expired:
                return None, []  # the caller records the expiry
            if record is None:
                record = _new_record(request, now, digest)
                log: list[dict[str, Any]] = [{"kind": "received", "request": _request_log(request)}]
            elif record.task_id is not None:
                verdict["outcome"] = Outcome.ALREADY_SUBMITTED
                return None, []
            elif record.is_terminal:
                verdict["outcome"] = Outcome.ALREADY_FINAL
                return None, []
            elif record.lease_expires_at is not None and record.lease_expires_at > now:
                verdict["defer"] = "another delivery of this request is submitting it now"
                return None, []
            elif record.ambiguous_submit_at is not None and now < (
                record.ambiguous_submit_at
                + timedelta(seconds=self.settings.ambiguous_submit_wait_seconds)
            ):
                verdict["defer"] = (
                    "an earlier POST may have created the task; waiting for SRP's callback"
                )
                return None, []
            else:
                log = []
            if record.callback_nonce is None:
                # A record older than nonces: from its next POST on, its tokens are v2.
                record.callback_nonce = new_callback_nonce()
            record.lease_owner = attempt
            record.lease_expires_at = now + timedelta(seconds=self.lease_seconds)
            record.submit_attempts += 1
            # Intent, recorded before the POST: if its outcome is never recorded (the answer
            # lost, or the write after it failed), the POST already counts as ambiguous.
            record.ambiguous_submit_at = now
            record.unconfirmed_submissions += 1
            log.append({"kind": "submit_attempt", "attempt": record.submit_attempts})
            return record, log

        record = self.store.update(request.request_id, decide)
        if "defer" in verdict:
            raise SubmissionDeferredError(f"{request.request_id}: {verdict['defer']}")
        return _Claim(verdict.get("outcome"), record)

    def _post(
        self, request: RenderRequest, attempt: str, record: TaskRecord | None
    ) -> SubmissionResult:
        webhook_url = self.settings.require(self.settings.webhook_url, "WEBHOOK_URL")
        self.settings.require(self.settings.webhook_secret, "WEBHOOK_SECRET")
        # The claim drew the record's nonce before this POST (so a callback can be checked).
        nonce = record.callback_nonce if record is not None else None
        if nonce is None:
            raise SubmissionDeferredError(f"{request.request_id}: the record has no callback nonce")
        ours = CallbackSigner.from_settings(self.settings).callback(
            webhook_url, request.request_id, nonce
        )
        callbacks = (ours, *request.callback_urls)
        try:
            task = self.srp.submit_task(
                request.collection_id,
                RawJson(request.input_data_json),  # byte for byte what the producer sent
                callback_urls=list(callbacks),
                priority=request.priority,
            )
        except SrpError as error:
            # Only a 4xx (429 included) or a request never sent created nothing; a 5xx may
            # come from a proxy after SRP created the task.
            self._release(request.request_id, attempt, error, ambiguous=error.may_have_reached_srp)
            if error.transient:
                raise
            return self._fail_request(request.request_id, error.code, str(error))
        except InvalidMessageError as error:
            # Refused before sending (the body cannot be encoded): it never will be.
            self._release(request.request_id, attempt, error, ambiguous=False)
            return self._fail_request(
                request.request_id, error.code, f"the request cannot be sent: {error}"
            )

        transition = self.store.apply(
            request.request_id,
            TaskSubmitted(task.id, task.status),
            received={"kind": "srp_task_created", "task_id": task.id, "status": task.status},
        )
        publish_transition(self.store, self.publisher, request.request_id, transition.events)
        logger.info("submitted to SRP", extra=log_fields(task_id=task.id, srp_status=task.status))
        return SubmissionResult(Outcome.SUBMITTED, transition.record)

    def _release(
        self, request_id: str, attempt: str, error: BundleError, *, ambiguous: bool
    ) -> None:
        """Give the lease back after a failed POST; settle its intent if it created nothing."""

        def decide(record: TaskRecord | None) -> tuple[TaskRecord | None, list[dict[str, Any]]]:
            if record is None or record.lease_owner != attempt or record.task_id is not None:
                return None, []
            record.lease_owner = None
            record.lease_expires_at = None
            record.last_error = {"code": error.code, "message": str(error)}
            if ambiguous:
                record.ambiguous_submit_at = self.clock()  # the wait starts now
            else:
                record.ambiguous_submit_at = None
                record.unconfirmed_submissions = max(0, record.unconfirmed_submissions - 1)
            return record, [
                {"kind": "submit_interrupted", "ambiguous": ambiguous, **record.last_error}
            ]

        self.store.update(request_id, decide)

    # ---- permanent failures -------------------------------------------------------------

    def _reject(
        self, message: PubsubMessage, error: InvalidMessageError, now: datetime
    ) -> SubmissionResult:
        """A message that can never succeed: record why, publish task.failed, acknowledge.

        An invalid message never touches an existing record, even one with its request id.
        """
        request_id = request_id_hint(message.data, message.message_id)
        logger.warning(
            "invalid render request: %s",
            error,
            extra=log_fields(request_id=request_id, message_id=message.message_id),
        )
        stub = RenderRequest(request_id=request_id, collection_id="")
        record = _new_record(stub, now, message_digest(message.data))
        transition = advance(record, TaskFailed(error.code, str(error)), now)
        log = [{"kind": "invalid_message", "message_id": message.message_id}, *transition.log]
        if not self.store.create(transition.record, log, transition.events):
            logger.warning(
                "invalid message names an existing request; the record is left as it is",
                extra=log_fields(request_id=request_id),
            )
            return SubmissionResult(Outcome.ALREADY_FINAL, self.store.get(request_id))
        publish_transition(self.store, self.publisher, request_id, transition.events)
        return SubmissionResult(Outcome.FAILED, transition.record)

    def _fail_request(self, request_id: str, code: str, reason: str) -> SubmissionResult:
        """Mark a claimed request failed and publish task.failed."""
        transition = self.store.apply(request_id, TaskFailed(code, reason))
        if not transition.changed:
            return SubmissionResult(Outcome.ALREADY_FINAL, transition.record)
        publish_transition(self.store, self.publisher, request_id, transition.events)
        logger.warning(
            "render request failed: %s",
            reason,
            extra=log_fields(request_id=request_id, error_code=code),
        )
        return SubmissionResult(Outcome.FAILED, transition.record)

    def _too_old(self, message: PubsubMessage, now: datetime) -> str | None:
        if message.publish_time is None:
            return None
        age = (now - message.publish_time).total_seconds()
        if age <= self.settings.max_request_age_seconds:
            return None
        return (
            f"request was published {age:.0f}s ago, more than MAX_REQUEST_AGE_SECONDS="
            f"{self.settings.max_request_age_seconds}; it stopped retrying"
        )


def _stored_request(record: TaskRecord) -> RenderRequest:
    """The render request a record was created from."""
    return RenderRequest(
        request_id=record.request_id,
        collection_id=record.collection_id,
        input_data_json=record.input_data_json,
        priority=record.priority,
        callback_urls=parse_callback_urls(record.callback_urls),
        metadata=record.metadata,
        retry_of=record.retry_of,
    )


def _new_record(request: RenderRequest, now: datetime, digest: str | None) -> TaskRecord:
    return TaskRecord(
        message_digest=digest,
        request_id=request.request_id,
        collection_id=request.collection_id,
        state=State.RECEIVED,
        input_data_json=request.input_data_json,
        priority=request.priority,
        callback_urls=[callback_url_to_json(c) for c in request.callback_urls],
        metadata=request.metadata,
        retry_of=request.retry_of,
        created_at=now,
        updated_at=now,
        callback_nonce=new_callback_nonce(),
    )


def _request_log(request: RenderRequest) -> dict[str, Any]:
    return {"collection_id": request.collection_id, "priority": request.priority}
