"""Issue 21 item 9: our callback token and producers' header values stay where they belong.

SRP's error bodies (and a failed callback's reason) can quote the request we sent; none of
it may put our token or a producer's header value into `record.error`, the event log,
`task.failed` or a log line. Producer header values are kept apart from the record
(`<TASKS_COLLECTION>_secrets`), and everything that re-sends a request (reconcile's
re-drive, the CLI's `retry`) still sends them. Real Firestore and Pub/Sub emulators;
SRP is the scripted fake of `scripted_srp`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from scripted_srp import ScriptedSrp

from srp_bundle.callbacks import CallbackIngestor
from srp_bundle.cli import main
from srp_bundle.cli._retry import plan_retries
from srp_bundle.errors import SrpRateLimitedError
from srp_bundle.redaction import REDACTED
from srp_bundle.settings import load_settings
from srp_bundle.srp_models import encode_json
from srp_bundle.submission import SubmissionOutcome, Submitter
from srp_bundle.task_state import State, TaskRecord
from srp_bundle.task_store import SECRETS_SUFFIX
from srp_bundle.trigger_events import PubsubMessage

pytestmark = pytest.mark.integration

CREDENTIAL = "Bearer studio-credential-4711"
PRODUCER_CALLBACK = {
    "url": "https://hooks.studio.example.com/render-done",
    "method": "post",
    "headers": {"Authorization": CREDENTIAL, "X-Studio": "studio-tenant-0042"},
}
PRODUCER_VALUES = (CREDENTIAL, "studio-credential-4711", "studio-tenant-0042")


class EchoingSrp(ScriptedSrp):
    """A scripted SRP whose refusals quote the request's render_options back."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse_with: int | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and self.refuse_with is not None:
            options = json.loads(request.content)["render_options"]
            detail = f"callback_urls rejected: {json.dumps(options)}"
            return httpx.Response(self.refuse_with, json={"detail": detail, "echo": options})
        return super().handle(request)


def message(body: dict[str, Any], message_id: str = "m-1") -> PubsubMessage:
    return PubsubMessage(message_id=message_id, data=json.dumps(body).encode())


def submitter_for(pipeline: Any, srp: ScriptedSrp) -> Submitter:
    """submit_task's job, wired as deployed, with the scripted SRP behind its client."""
    return pipeline.services("submit_task", srp.effects(), **srp.settings_overrides()).submitter


def our_token(pipeline: Any, request_id: str) -> str:
    return pipeline.callback_token(request_id)


def exposed(pipeline: Any, request_id: str) -> str:
    """Everything that shows a request: its record, its event log, its events."""
    record = pipeline.record(request_id).to_document()
    log = pipeline.store.event_log(request_id)
    events = pipeline.events.by_request.get(request_id, [])
    return json.dumps([record, log, events], default=str)


def assert_no_secret(pipeline: Any, text: str, request_id: str) -> None:
    assert our_token(pipeline, request_id) not in text
    for value in PRODUCER_VALUES:
        assert value not in text


def test_an_srp_refusal_quoting_the_request_puts_no_secret_in_record_events_or_logs(
    pipeline, render_request, caplog
) -> None:
    srp = EchoingSrp()
    srp.refuse_with = 400
    request = render_request(callback_urls=[PRODUCER_CALLBACK])
    caplog.set_level(logging.INFO, logger="srp_bundle")

    result = submitter_for(pipeline, srp).submit(message(request))

    assert result.outcome == SubmissionOutcome.FAILED
    record = pipeline.record(request["request_id"])
    assert record.error is not None and record.error["code"] == "srp_validation"
    assert "callback_urls rejected" in record.error["message"]  # SRP's words are kept
    assert REDACTED in record.error["message"]
    pipeline.events.wait_for(request["request_id"], "task.failed")
    assert_no_secret(pipeline, exposed(pipeline, request["request_id"]), request["request_id"])
    assert_no_secret(pipeline, caplog.text, request["request_id"])


def test_producer_header_values_are_kept_apart_from_the_record_and_still_sent(
    pipeline, render_request, capsys
) -> None:
    srp = ScriptedSrp()
    request = render_request(callback_urls=[PRODUCER_CALLBACK, "https://plain.studio.io/cb"])

    result = submitter_for(pipeline, srp).submit(message(request))

    assert result.outcome == SubmissionOutcome.SUBMITTED
    (posted,) = [json.loads(raw) for raw in srp.raw_posts]
    assert posted["render_options"]["callback_urls"][1:] == request["callback_urls"]
    record = pipeline.record(request["request_id"])
    assert record.callback_urls == [
        {**PRODUCER_CALLBACK, "headers": {"Authorization": REDACTED, "X-Studio": REDACTED}},
        "https://plain.studio.io/cb",
    ]
    pipeline.events.wait_for(request["request_id"], "task.submitted")
    assert_no_secret(pipeline, exposed(pipeline, request["request_id"]), request["request_id"])
    secrets = pipeline.firestore.collection(pipeline.tasks_collection + SECRETS_SUFFIX)
    kept = secrets.document(request["request_id"]).get().to_dict()
    assert kept["callback_urls"] == request["callback_urls"]

    code = main(
        ["show", request["request_id"], "--json", "--tasks-collection", pipeline.tasks_collection]
    )
    shown = capsys.readouterr().out
    assert code == 0 and request["request_id"] in shown
    assert_no_secret(pipeline, shown, request["request_id"])


def test_reconciles_redrive_of_a_stuck_request_sends_the_producers_header_values(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    srp.post_script = [429]  # refused before any work: the record waits in `received`
    submitter = submitter_for(pipeline, srp)
    request = render_request(callback_urls=[PRODUCER_CALLBACK])
    with pytest.raises(SrpRateLimitedError):
        submitter.submit(message(request))
    stuck = pipeline.record(request["request_id"])
    assert stuck.state == State.RECEIVED and CREDENTIAL not in json.dumps(
        stuck.to_document(), default=str
    )

    result = submitter.resubmit(stuck)

    assert result.outcome == SubmissionOutcome.SUBMITTED
    (posted,) = [json.loads(raw) for raw in srp.raw_posts]
    assert posted["render_options"]["callback_urls"][1] == PRODUCER_CALLBACK


def test_a_redrive_whose_kept_header_values_are_gone_fails_instead_of_sending_redacted_ones(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    srp.post_script = [429]
    submitter = submitter_for(pipeline, srp)
    request = render_request(callback_urls=[PRODUCER_CALLBACK])
    with pytest.raises(SrpRateLimitedError):
        submitter.submit(message(request))
    pipeline.store.secrets.document(request["request_id"]).delete()

    result = submitter.resubmit(pipeline.record(request["request_id"]))

    assert result.outcome == SubmissionOutcome.FAILED and srp.raw_posts == []
    error = pipeline.record(request["request_id"]).error
    assert error is not None and "header values" in error["message"]


def test_a_retry_after_the_split_still_sends_the_producers_header_values(
    pipeline, render_request
) -> None:
    srp = EchoingSrp()
    srp.refuse_with = 422
    submitter = submitter_for(pipeline, srp)
    request = render_request(callback_urls=[PRODUCER_CALLBACK])
    assert submitter.submit(message(request)).outcome == SubmissionOutcome.FAILED
    failed = pipeline.record(request["request_id"])
    problems: list[str] = []

    (planned,) = plan_retries(pipeline.store, [failed], problems, [])

    assert problems == []
    assert planned.body["callback_urls"] == [PRODUCER_CALLBACK]
    srp.refuse_with = None
    retry_id = planned.request_id
    # What the CLI publishes.
    published = PubsubMessage(message_id="m-retry", data=encode_json(planned.body))
    result = submitter.submit(published)
    assert result.outcome == SubmissionOutcome.SUBMITTED and result.record is not None
    assert result.record.retry_of == request["request_id"]
    (posted,) = [json.loads(raw) for raw in srp.raw_posts]
    assert posted["render_options"]["callback_urls"][1] == PRODUCER_CALLBACK
    assert_no_secret(pipeline, exposed(pipeline, retry_id), retry_id)


def test_a_failed_callbacks_reason_quoting_secrets_is_redacted_everywhere(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request = render_request(callback_urls=[PRODUCER_CALLBACK])
    submitter_for(pipeline, srp).submit(message(request))
    request_id = request["request_id"]
    task_id = pipeline.record(request_id).task_id
    assert task_id is not None
    srp.get_status[task_id] = "failed"  # SRP confirms the failure
    settings = load_settings("ingest_webhook", pipeline.env())
    client = srp.client()
    ingestor = CallbackIngestor(settings, pipeline.store, lambda: client, pipeline.events_publisher)
    token = our_token(pipeline, request_id)
    reason = f"render failed; options were {json.dumps(PRODUCER_CALLBACK)} and {token}"
    body = {"status": "failed", "task_id": task_id, "timestamp": "2026-12-04T00:00:00Z"}

    reply = ingestor.ingest(
        "POST", request_id, token, json.dumps({**body, "reason": reason}).encode()
    )

    assert reply.status_code == 200
    record = pipeline.record(request_id)
    assert record.state == State.FAILED and record.error is not None
    assert record.error["message"].startswith("render failed; options were")
    pipeline.events.wait_for(request_id, "task.failed")
    assert_no_secret(pipeline, exposed(pipeline, request_id), request_id)


def test_the_cli_retry_checks_callbacks_with_the_local_development_setting(
    pipeline, render_request, capsys, monkeypatch
) -> None:
    request = render_request()
    pipeline.store.create(
        TaskRecord(
            request_id=request["request_id"],
            collection_id=request["collection_id"],
            state=State.FAILED,
            input_data_json=json.dumps(request["input_data"]),
            callback_urls=["http://127.0.0.1:9/producer"],
            error={"code": "srp_render_failed", "message": "SRP reported status 'failed'"},
        )
    )
    argv = ["retry", request["request_id"], "--dry-run"]
    argv += ["--tasks-collection", pipeline.tasks_collection]

    assert main(argv) == 1
    assert "must be an https URL" in capsys.readouterr().err
    monkeypatch.setenv("ALLOW_LOCAL_HTTP_CALLBACKS", "true")
    assert main(argv) == 0
    assert f"{request['request_id']} -> {request['request_id']}-retry1" in capsys.readouterr().out
