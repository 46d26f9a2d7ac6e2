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

Over 300 lines: the lease, the POST and every permanent failure of one request are one
protocol (decision 0001).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from srp_bundle.batches import BatchDeclaration, BatchStore
from srp_bundle.callback_auth import CallbackSigner, new_callback_nonce
from srp_bundle.callback_policy import CallbackPolicy, check_producer_callbacks
from srp_bundle.errors import BundleError, CallbackRefusedError, InvalidMessageError, SrpError
from srp_bundle.events import EventPublisher
from srp_bundle.log import bind, get_logger, log_fields
from srp_bundle.outbox import apply_and_publish, publish_transition
from srp_bundle.redaction import header_values, without_header_values
from srp_bundle.render_requests import (
    RenderRequest,
    batch_id_hint,
    message_digest,
    parse_message,
    request_id_hint,
)
from srp_bundle.settings import Settings
from srp_bundle.srp_client import SrpClient
from srp_bundle.srp_models import RawJson, callback_url_to_json, parse_callback_urls
from srp_bundle.task_state import (
    Clock,
    LeaseReleased,
    LeaseRequested,
    LeaseVerdict,
    State,
    SubmitOutcomeUnknown,
    TaskFailed,
    TaskRecord,
    TaskSubmitted,
    Transition,
    advance,
    utc_now,
)
from srp_bundle.task_store import TaskStore
from srp_bundle.trigger_events import PubsubMessage

logger = get_logger(__name__)
# Why a delivery that may not POST now is retried later (raise: Pub/Sub redelivers).
_DEFERRED = {
    LeaseVerdict.HELD: "another delivery of this request is submitting it now",
    LeaseVerdict.AWAITING_SRP: (
        "an earlier POST may have created the task; waiting for SRP's callback"
    ),
}


class SubmissionOutcome(StrEnum):
    """What one delivery of a render request achieved."""

    SUBMITTED = "submitted"
    ALREADY_SUBMITTED = "already_submitted"
    ALREADY_FINAL = "already_final"
    FAILED = "failed"
    # A batch declaration (batches), not a render request.
    BATCH_DECLARED = "batch_declared"
    BATCH_REFUSED = "batch_refused"


class SubmissionDeferredError(BundleError):
    """Another delivery holds the lease, or an earlier POST awaits confirmation: retry later."""

    code = "submission_deferred"
    transient = True


@dataclass(frozen=True)
class SubmissionResult:
    """The outcome and the record as it stands afterwards."""

    outcome: SubmissionOutcome
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
        new_id: Callable[[], str] = new_callback_nonce,
    ) -> None:
        """`clock` is read whenever a time is needed; `new_id` draws attempt ids and nonces.

        The store takes each lease at its own clock's time: give both the same one.
        """
        self.settings = settings
        self.store = store
        self.srp = srp
        self.publisher = publisher
        self.clock = clock
        self.new_id = new_id
        self.lease_seconds = int(settings.srp_timeout_seconds * 3) + 30
        self.callback_policy = CallbackPolicy.from_settings(settings)

    def submit(self, message: PubsubMessage) -> SubmissionResult:
        """Handle one delivery; raise only for transient failures (the message is redelivered)."""
        now = self.clock()
        try:
            request = parse_message(
                message.data, message.message_id, callback_policy=self.callback_policy
            )
        except InvalidMessageError as error:
            return self._reject(message, error, now)
        if isinstance(request, BatchDeclaration):
            return self._declare(request, message)
        with bind(request_id=request.request_id):
            attempt = self.new_id()
            claim = self._claim(
                request,
                attempt,
                expired=self._too_old(message, now),
                digest=message_digest(message.data),
            )
            if claim.lease != LeaseVerdict.TAKEN:
                return self._declined(claim)
            return self._post(request, attempt, claim.record)

    def _declare(self, declaration: BatchDeclaration, message: PubsubMessage) -> SubmissionResult:
        """Record a batch's total (a conflicting one is refused with the reason), and publish
        `batch.completed` if its members are all final already."""
        with bind(batch_id=declaration.batch_id):
            outcome = BatchStore(self.store).declare(declaration, message_digest(message.data))
            publish_transition(self.store, self.publisher, "", outcome.events)
        if not outcome.accepted:
            return SubmissionResult(SubmissionOutcome.BATCH_REFUSED, None)
        return SubmissionResult(SubmissionOutcome.BATCH_DECLARED, None)

    def resubmit(self, record: TaskRecord) -> SubmissionResult:
        """Re-drive a record stuck before submission, under the same lease rules as `submit`."""
        now = self.clock()
        try:
            request = self._stored_request(record)
        except InvalidMessageError as error:
            reason = f"the stored request can never be sent: {error}"
            return self._fail_request(record.request_id, error.code, reason)
        age = (now - record.created_at).total_seconds()
        expired = None
        if age > self.settings.max_request_age_seconds:
            expired = f"never submitted within MAX_REQUEST_AGE_SECONDS ({age:.0f}s old)"
        attempt = self.new_id()
        claim = self._claim(request, attempt, expired=expired)
        if claim.lease != LeaseVerdict.TAKEN:
            return self._declined(claim)
        try:
            # A record written before this policy existed is held to it too.
            check_producer_callbacks(request.callback_urls, self.callback_policy)
        except CallbackRefusedError as error:
            self._release(request.request_id, attempt, error, ambiguous=False)  # nothing sent
            return self._fail_request(request.request_id, error.code, str(error))
        return self._post(request, attempt, claim.record)

    # ---- steps ------------------------------------------------------------------------

    def _claim(
        self,
        request: RenderRequest,
        attempt: str,
        *,
        expired: str | None,
        digest: str | None = None,
    ) -> Transition:
        """Create the record or take its lease (the state machine decides which); defer if held."""
        now = self.clock()
        transition = self.store.apply(
            request.request_id,
            LeaseRequested(
                attempt,
                lease_seconds=self.lease_seconds,
                ambiguous_wait_seconds=self.settings.ambiguous_submit_wait_seconds,
                expired_reason=expired,
                # A record without a nonce (a new one, or one older than nonces) gets it with
                # its first lease: drawn once, before any POST can carry a token.
                fresh_nonce=self.new_id(),
            ),
            create=_new_record(request, now, digest),
            log_if_created=[{"kind": "received", "request": _request_log(request)}],
            secrets_if_created=_callback_secrets(request),
        )
        if transition.lease in _DEFERRED:
            raise SubmissionDeferredError(f"{request.request_id}: {_DEFERRED[transition.lease]}")
        publish_transition(self.store, self.publisher, request.request_id, transition.events)
        return transition

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

        transition = apply_and_publish(
            self.store,
            self.publisher,
            request.request_id,
            TaskSubmitted(task.id, task.status),
            received={"kind": "srp_task_created", "task_id": task.id, "status": task.status},
        )
        logger.info("submitted to SRP", extra=log_fields(task_id=task.id, srp_status=task.status))
        return SubmissionResult(SubmissionOutcome.SUBMITTED, transition.record)

    def _release(
        self, request_id: str, attempt: str, error: BundleError, *, ambiguous: bool
    ) -> None:
        """Give the lease back after a failed POST; settle its intent if it created nothing."""
        kind = SubmitOutcomeUnknown if ambiguous else LeaseReleased
        self.store.apply(request_id, kind(attempt, error.code, str(error)))

    def _declined(self, claim: Transition) -> SubmissionResult:
        """What a delivery that may not POST achieved."""
        if claim.lease == LeaseVerdict.EXPIRED:
            if claim.changed:
                logger.warning(
                    "render request failed: %s",
                    (claim.record.error or {}).get("message"),
                    extra=log_fields(error_code="request_expired"),
                )
                return SubmissionResult(SubmissionOutcome.FAILED, claim.record)
            return SubmissionResult(SubmissionOutcome.ALREADY_FINAL, claim.record)
        if claim.lease == LeaseVerdict.ALREADY_SUBMITTED:
            return SubmissionResult(SubmissionOutcome.ALREADY_SUBMITTED, claim.record)
        return SubmissionResult(SubmissionOutcome.ALREADY_FINAL, claim.record)

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
        stub = RenderRequest(
            request_id=request_id, collection_id="", batch_id=batch_id_hint(message.data)
        )
        record = _new_record(stub, now, message_digest(message.data))
        transition = advance(record, TaskFailed(error.code, str(error)), now)
        log = [{"kind": "invalid_message", "message_id": message.message_id}, *transition.log]
        if not self.store.create(transition.record, log, transition.events):
            logger.warning(
                "invalid message names an existing request; the record is left as it is",
                extra=log_fields(request_id=request_id),
            )
            return SubmissionResult(SubmissionOutcome.ALREADY_FINAL, self.store.get(request_id))
        publish_transition(self.store, self.publisher, request_id, transition.events)
        return SubmissionResult(SubmissionOutcome.FAILED, transition.record)

    def _fail_request(self, request_id: str, code: str, reason: str) -> SubmissionResult:
        """Mark a claimed request failed and publish task.failed."""
        transition = apply_and_publish(
            self.store, self.publisher, request_id, TaskFailed(code, reason)
        )
        if not transition.changed:
            return SubmissionResult(SubmissionOutcome.ALREADY_FINAL, transition.record)
        logger.warning(
            "render request failed: %s",
            reason,
            extra=log_fields(request_id=request_id, error_code=code),
        )
        return SubmissionResult(SubmissionOutcome.FAILED, transition.record)

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

    def _stored_request(self, record: TaskRecord) -> RenderRequest:
        """The render request a record was created from, producer header values included."""
        return RenderRequest(
            request_id=record.request_id,
            collection_id=record.collection_id,
            input_data_json=record.input_data_json,
            priority=record.priority,
            callback_urls=parse_callback_urls(self.store.producer_callbacks(record)),
            metadata=record.metadata,
            retry_of=record.retry_of,
            batch_id=record.batch_id,
        )


def _callback_secrets(request: RenderRequest) -> dict[str, Any] | None:
    """What `<TASKS_COLLECTION>_secrets/{request_id}` keeps: callbacks with header values."""
    if not header_values(request.callback_urls):
        return None
    return {
        "request_id": request.request_id,
        "callback_urls": [callback_url_to_json(c) for c in request.callback_urls],
    }


def _new_record(request: RenderRequest, now: datetime, digest: str | None) -> TaskRecord:
    callbacks = request.callback_urls
    return TaskRecord(
        message_digest=digest,
        request_id=request.request_id,
        collection_id=request.collection_id,
        state=State.RECEIVED,
        input_data_json=request.input_data_json,
        priority=request.priority,
        # Header values are the producer's credentials: kept apart (see _callback_secrets).
        callback_urls=[without_header_values(callback_url_to_json(c)) for c in callbacks],
        callback_headers_kept_apart=bool(header_values(callbacks)),
        metadata=request.metadata,
        retry_of=request.retry_of,
        batch_id=request.batch_id,
        created_at=now,
        updated_at=now,
    )


def _request_log(request: RenderRequest) -> dict[str, Any]:
    return {"collection_id": request.collection_id, "priority": request.priority}
