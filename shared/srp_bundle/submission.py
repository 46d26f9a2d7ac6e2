"""Submission: one render request in, exactly one SRP task attached to it.

1. The record `TASKS_COLLECTION/{request_id}` is created (or found) in a transaction,
   and this delivery takes a short lease on it before anything is sent to SRP.
2. A record that already has a task id, or is final, submits nothing.
3. The POST carries our request-bound callback; its answer attaches the task id.
4. If the POST may have reached SRP but its answer was lost, the record remembers it and
   redeliveries wait `AMBIGUOUS_SUBMIT_WAIT_SECONDS` for SRP's callback to name the task
   before posting again. Any second task SRP reports for the request is recorded in
   `duplicate_task_ids`, never silently attached or lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from srp_bundle.callback_auth import our_callback
from srp_bundle.callback_policy import check_producer_callbacks
from srp_bundle.cloudevents import PubsubMessage
from srp_bundle.errors import (
    BundleError,
    CallbackRefusedError,
    InvalidMessageError,
    SrpConnectionError,
    SrpError,
)
from srp_bundle.events import EventPublisher, publish_transition
from srp_bundle.log import bind, get_logger, log_fields
from srp_bundle.render_requests import RenderRequest, parse_render_request, request_id_hint
from srp_bundle.settings import Settings
from srp_bundle.srp_client import SrpClient
from srp_bundle.srp_models import callback_url_to_json, parse_callback_urls
from srp_bundle.task_state import (
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
    ) -> None:
        self.settings = settings
        self.store = store
        self.srp = srp
        self.publisher = publisher
        self.lease_seconds = int(settings.srp_timeout_seconds * 3) + 30

    def submit(self, message: PubsubMessage, now: datetime | None = None) -> SubmissionResult:
        """Handle one delivery; raise only for transient failures (the message is redelivered)."""
        now = now or utc_now()
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
            claim = self._claim(request, attempt, now, expired=too_old is not None)
            if claim.outcome is not None:
                return SubmissionResult(claim.outcome, claim.record)
            if too_old is not None:
                return self._fail_request(request, "request_expired", too_old)
            return self._post(request, attempt)

    def resubmit(self, record: TaskRecord, now: datetime | None = None) -> SubmissionResult:
        """Re-drive a record stuck before submission, under the same lease rules as `submit`."""
        now = now or utc_now()
        request = RenderRequest(
            request_id=record.request_id,
            collection_id=record.collection_id,
            input_data=record.input_data,
            priority=record.priority,
            callback_urls=parse_callback_urls(record.callback_urls),
            metadata=record.metadata,
            retry_of=record.retry_of,
        )
        age = (now - record.created_at).total_seconds()
        expired = age > self.settings.max_request_age_seconds
        attempt = uuid.uuid4().hex
        claim = self._claim(request, attempt, now, expired=expired)
        if claim.outcome is not None:
            return SubmissionResult(claim.outcome, claim.record)
        if expired:
            reason = f"never submitted within MAX_REQUEST_AGE_SECONDS ({age:.0f}s old)"
            return self._fail_request(request, "request_expired", reason)
        try:
            # A record written before this policy existed is held to it too.
            check_producer_callbacks(
                request.callback_urls, allow_local_http=self.settings.allow_local_http_callbacks
            )
        except CallbackRefusedError as error:
            return self._fail_request(request, error.code, str(error))
        return self._post(request, attempt)

    # ---- steps ------------------------------------------------------------------------

    def _claim(
        self, request: RenderRequest, attempt: str, now: datetime, *, expired: bool
    ) -> _Claim:
        """Create the record or take its lease; say why not when this delivery must not POST."""
        verdict: dict[str, Any] = {}

        def decide(record: TaskRecord | None) -> tuple[TaskRecord | None, list[dict[str, Any]]]:
            verdict.clear()
            if record is not None and record.task_id is None and not record.is_terminal and expired:
                return None, []  # the caller records the expiry
            if record is None:
                record = _new_record(request, now)
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
            record.lease_owner = attempt
            record.lease_expires_at = now + timedelta(seconds=self.lease_seconds)
            record.submit_attempts += 1
            log.append({"kind": "submit_attempt", "attempt": record.submit_attempts})
            return record, log

        record = self.store.update(request.request_id, decide)
        if "defer" in verdict:
            raise SubmissionDeferredError(f"{request.request_id}: {verdict['defer']}")
        return _Claim(verdict.get("outcome"), record)

    def _post(self, request: RenderRequest, attempt: str) -> SubmissionResult:
        webhook_url = self.settings.require(self.settings.webhook_url, "WEBHOOK_URL")
        secret = self.settings.require(self.settings.webhook_secret, "WEBHOOK_SECRET")
        callbacks = (our_callback(webhook_url, secret, request.request_id), *request.callback_urls)
        try:
            task = self.srp.submit_task(
                request.collection_id,
                request.input_data,
                callback_urls=list(callbacks),
                priority=request.priority,
            )
        except SrpConnectionError as error:
            self._release(request.request_id, attempt, error, ambiguous=error.may_have_reached_srp)
            raise
        except SrpError as error:
            if error.transient:
                self._release(request.request_id, attempt, error, ambiguous=False)
                raise
            return self._fail_request(request, error.code, str(error))

        transition = self.store.apply(
            request.request_id,
            TaskSubmitted(task.id, task.status),
            received={"kind": "srp_task_created", "task_id": task.id, "status": task.status},
        )
        publish_transition(self.store, self.publisher, request.request_id, transition.events)
        logger.info("submitted to SRP", extra=log_fields(task_id=task.id, srp_status=task.status))
        return SubmissionResult(Outcome.SUBMITTED, transition.record)

    def _release(self, request_id: str, attempt: str, error: SrpError, *, ambiguous: bool) -> None:
        """Give the lease back after a transient failure; remember a POST that may have landed."""

        def decide(record: TaskRecord | None) -> tuple[TaskRecord | None, list[dict[str, Any]]]:
            if record is None or record.lease_owner != attempt or record.task_id is not None:
                return None, []
            record.lease_owner = None
            record.lease_expires_at = None
            record.last_error = {"code": error.code, "message": str(error)}
            if ambiguous:
                record.ambiguous_submit_at = utc_now()
                record.unconfirmed_submissions += 1
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
        stub = RenderRequest(request_id=request_id, collection_id="", input_data={})
        transition = advance(_new_record(stub, now), TaskFailed(error.code, str(error)), now)
        log = [{"kind": "invalid_message", "message_id": message.message_id}, *transition.log]
        if not self.store.create(transition.record, log, transition.events):
            logger.warning(
                "invalid message names an existing request; the record is left as it is",
                extra=log_fields(request_id=request_id),
            )
            return SubmissionResult(Outcome.ALREADY_FINAL, self.store.get(request_id))
        publish_transition(self.store, self.publisher, request_id, transition.events)
        return SubmissionResult(Outcome.FAILED, transition.record)

    def _fail_request(self, request: RenderRequest, code: str, reason: str) -> SubmissionResult:
        """Mark a claimed request failed and publish task.failed."""
        transition = self.store.apply(request.request_id, TaskFailed(code, reason))
        if not transition.changed:
            return SubmissionResult(Outcome.ALREADY_FINAL, transition.record)
        publish_transition(self.store, self.publisher, request.request_id, transition.events)
        logger.warning(
            "render request failed: %s",
            reason,
            extra=log_fields(request_id=request.request_id, error_code=code),
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


def _new_record(request: RenderRequest, now: datetime) -> TaskRecord:
    return TaskRecord(
        request_id=request.request_id,
        collection_id=request.collection_id,
        state=State.RECEIVED,
        input_data=request.input_data,
        priority=request.priority,
        callback_urls=[callback_url_to_json(c) for c in request.callback_urls],
        metadata=request.metadata,
        retry_of=request.retry_of,
        created_at=now,
        updated_at=now,
    )


def _request_log(request: RenderRequest) -> dict[str, Any]:
    return {"collection_id": request.collection_id, "priority": request.priority}
