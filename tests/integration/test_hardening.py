"""Hostile input under functions-framework: webhook tokens, bodies and paths; producer callbacks.

Every case ends as the design says: the webhook answers 401/400 and writes nothing; a
render request with a refused callback is recorded as failed with the reason,
acknowledged (no retry loop) and never reaches SRP.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest

from srp_bundle.callback_auth import TOKEN_HEADER
from srp_bundle.task_state import State, TaskRecord, utc_now

from concurrency_scenarios import callback_body, srp_posts_for, submitted_record

pytestmark = pytest.mark.integration


def _snapshot(pipeline, request_id: str) -> tuple[dict, list]:
    record = pipeline.record(request_id).to_document()
    record.pop("updated_at")
    return record, pipeline.store.event_log(request_id)


def _post_raw(pipeline, request_id: str, body: bytes, token: bytes) -> Any:
    webhook = pipeline.function("ingest_webhook")
    return pipeline.http.post(
        f"{webhook.url}/?request_id={request_id}",
        headers={"Content-Type": "application/json", TOKEN_HEADER: token},
        content=body,
    )


@pytest.mark.parametrize(
    "token",
    [
        b"v1." + "é".encode() * 32,  # non-ASCII: compare_digest used to raise (500)
        "v1.é".encode("latin-1"),
        b"v1." + b"\xff" * 64,
        b"v1." + b"0" * 63,
        b"Bearer abc",
        b"v1." + b"0" * 64 + b", v1." + b"0" * 64,
    ],
    ids=["utf-8 non-ascii", "latin-1 non-ascii", "high bytes", "short", "scheme", "two tokens"],
)
def test_every_malformed_token_is_a_401_and_writes_nothing(pipeline, token: bytes) -> None:
    request_id, task_id = submitted_record(pipeline)
    before = _snapshot(pipeline, request_id)
    body = json.dumps(callback_body("in_progress", task_id)).encode()

    response = _post_raw(pipeline, request_id, body, token)

    assert response.status_code == 401, response.text
    assert _snapshot(pipeline, request_id) == before


def test_a_body_nested_deep_enough_for_a_recursion_error_is_a_400(pipeline) -> None:
    request_id, task_id = submitted_record(pipeline)
    before = _snapshot(pipeline, request_id)
    depth = 30_000  # 60 KB, under the size cap; json.loads raises RecursionError on it
    body = json.dumps(callback_body("in_progress", task_id))[:-1].encode()
    body += b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    token = pipeline.callback_token(request_id).encode()

    response = _post_raw(pipeline, request_id, body, token)

    assert response.status_code == 400, response.text
    assert "deeper than 16 levels" in response.json()["error"]
    assert _snapshot(pipeline, request_id) == before


# 60 KB of `"\` pairs: an unterminated string, under every size limit. The old depth check
# rescanned it from every quote (tens of seconds, past submit_task's 60 s timeout).
ESCAPED_QUOTES = b'"\\' * 30_000


@pytest.mark.timeout(120)
def test_a_body_of_escaped_quotes_is_a_prompt_400(pipeline) -> None:
    request_id, _ = submitted_record(pipeline)
    before = _snapshot(pipeline, request_id)
    token = pipeline.callback_token(request_id).encode()

    response = _post_raw(pipeline, request_id, ESCAPED_QUOTES, token)

    assert response.status_code == 400, response.text
    assert "not JSON: Unterminated string" in response.json()["error"]
    assert _snapshot(pipeline, request_id) == before


@pytest.mark.timeout(120)
def test_a_message_of_escaped_quotes_is_failed_once_and_so_is_its_dead_letter(pipeline) -> None:
    submit = pipeline.function("submit_task")
    dead_letter = pipeline.function("record_dead_letter")
    message_id = f"quotes-{uuid.uuid4().hex[:8]}"

    assert pipeline.deliver(submit, ESCAPED_QUOTES, message_id=message_id).status_code == 200
    record = pipeline.record(message_id)
    assert record.state == State.FAILED and record.error["code"] == "invalid_message"
    assert "Unterminated string" in record.error["message"]

    # Had every delivery timed out, the dead letter would carry the same bytes.
    response = pipeline.deliver(
        dead_letter,
        ESCAPED_QUOTES,
        message_id=message_id,
        attributes={"CloudPubSubDeadLetterSourceDeliveryCount": "20"},
        topic="render-requests-dead-letter",
    )
    assert response.status_code == 200, response.text
    assert pipeline.record(message_id).error == record.error  # already failed: left as it was


@pytest.mark.parametrize(
    "template",
    [
        "render/demo_collection/{task}/%2e%2e/%2e%2e/secrets.png",
        "render/%2E%2E/{task}/render.png",
        "render/demo_collection/{task}/render.png\u0000.txt",
        "render/demo_collection/{task}/render.png\n",
        "render/demo_collection/{task}\u2215render.png",
        "render/demo_collection/{task}/\uff0e\uff0e\u2215render.png",
        "render\\demo_collection\\{task}\\render.png",
        "render/demo_collection/00000000-0000-4000-8000-000000000000/render.png",
    ],
    ids=[
        "percent-encoded dots",
        "percent-encoded collection",
        "NUL",
        "newline",
        "division slash",
        "fullwidth dots",
        "backslashes",
        "another task's folder",
    ],
)
def test_output_files_outside_the_task_folder_grammar_are_a_400(pipeline, template: str) -> None:
    request_id, task_id = submitted_record(pipeline)
    before = _snapshot(pipeline, request_id)
    body = callback_body("done", task_id, output_files=[template.format(task=task_id)])
    token = pipeline.callback_token(request_id).encode()

    response = _post_raw(pipeline, request_id, json.dumps(body).encode(), token)

    assert response.status_code == 400, response.text
    assert "output_files[0]" in response.json()["error"]
    assert _snapshot(pipeline, request_id) == before


PUBLIC = "https://hooks.studio.example.com/render-done"


@pytest.mark.parametrize(
    ("callbacks", "reason"),
    [
        (["http://hooks.studio.example.com/cb"], "must be an https URL"),
        (["https://169.254.169.254/computeMetadata/v1/"], "IP address literal"),
        (["https://[::1]/cb"], "IP address literal"),
        (["https://localhost/cb"], "loopback name"),
        (["https://metadata.google.internal/computeMetadata/v1/"], "internal name (.internal"),
        (["https://printer.local/cb"], "internal name (.local"),
        (["https://redis.svc/cb"], "internal name (.svc"),
        (["https://169.254.169.254.nip.io/computeMetadata/v1/"], "address its name spells"),
        ([{"url": PUBLIC, "headers": {"Metadata-Flavor": "Google"}}], "metadata"),
        (["https://intranet/cb"], "single-label"),
        ([{"url": PUBLIC, "method": "GET"}], "POST or PUT"),
        ([{"url": PUBLIC, "headers": {"Bad Name": "v"}}], "header name"),
        ([{"url": PUBLIC, "headers": {"X-A": "v\r\nHost: 10.0.0.1"}}], "no CR, LF"),
        ([{"url": PUBLIC, "headers": {"X-A": "v" * 2000}}], "at most 1024"),
        ([{"url": PUBLIC, "headers": {"Host": "internal"}}], "may not be set"),
        ([PUBLIC] * 6, "at most 5 callback_urls"),
    ],
    ids=[
        "http",
        "metadata IP",
        "IPv6 loopback",
        "localhost",
        "metadata name",
        "mDNS name",
        "cluster name",
        "address-spelling name",
        "metadata header",
        "single label",
        "GET",
        "header name",
        "header injection",
        "header size",
        "Host header",
        "too many",
    ],
)
def test_a_refused_producer_callback_fails_the_request_with_the_reason(
    pipeline, render_request, callbacks: list[Any], reason: str
) -> None:
    submit = pipeline.function("submit_task")
    request = render_request(callback_urls=callbacks)

    response = pipeline.deliver(submit, request)

    assert response.status_code == 200  # recorded and acknowledged: no retry loop
    record = pipeline.record(request["request_id"])
    assert record.state == State.FAILED and record.task_id is None
    assert record.error is not None and record.error["code"] == "callback_refused"
    assert reason in record.error["message"]
    assert pipeline.events.wait_for(request["request_id"], "task.failed") == ["task.failed"]
    assert srp_posts_for(pipeline, request["request_id"]) == 0


def test_the_local_development_setting_allows_loopback_http_and_nothing_else(
    pipeline, render_request
) -> None:
    submit = pipeline.function("submit_task", ALLOW_LOCAL_HTTP_CALLBACKS="true")
    loopback = render_request(callback_urls=["http://127.0.0.1:9/producer"])
    metadata = render_request(callback_urls=["http://169.254.169.254/computeMetadata/v1/"])

    assert pipeline.deliver(submit, loopback).status_code == 200
    assert pipeline.deliver(submit, metadata).status_code == 200

    assert pipeline.record(loopback["request_id"]).task_id is not None
    refused = pipeline.record(metadata["request_id"])
    assert refused.state == State.FAILED and "IP address literal" in refused.error["message"]


def test_with_forwarding_off_a_request_with_producer_callbacks_is_refused_and_never_posted(
    pipeline, render_request
) -> None:
    submit = pipeline.function("submit_task", FORWARD_PRODUCER_CALLBACKS="false")
    with_callbacks = render_request(callback_urls=[PUBLIC])
    without = render_request()

    assert pipeline.deliver(submit, with_callbacks).status_code == 200  # acknowledged
    assert pipeline.deliver(submit, without).status_code == 200

    refused = pipeline.record(with_callbacks["request_id"])
    assert refused.state == State.FAILED and refused.error["code"] == "callback_refused"
    assert "FORWARD_PRODUCER_CALLBACKS=false" in refused.error["message"]
    assert "render-events topic" in refused.error["message"]
    assert pipeline.events.wait_for(with_callbacks["request_id"], "task.failed") == ["task.failed"]
    assert srp_posts_for(pipeline, with_callbacks["request_id"]) == 0
    assert pipeline.record(without["request_id"]).task_id is not None  # others go on


def test_a_render_request_nested_too_deeply_is_failed_not_crashed(pipeline, render_request) -> None:
    submit = pipeline.function("submit_task")
    request = render_request()
    depth = 20_000
    data = json.dumps(request)[:-1].encode()
    data += b', "metadata": {"x": ' + b"[" * depth + b"]" * depth + b"}}"

    message_id = f"deep-{request['request_id']}"

    response = pipeline.deliver(submit, data, message_id=message_id)

    assert response.status_code == 200, response.text
    # Nothing in a message refused unparsed is trusted, its request id neither.
    record = pipeline.record(message_id)
    assert record.state == State.FAILED
    assert "deeper than 32 levels" in record.error["message"]


def test_reconcile_never_redrives_a_stored_callback_the_policy_refuses(
    pipeline, render_request
) -> None:
    # A record written before the policy existed, stuck before submission.
    reconcile = pipeline.function("reconcile_tasks", STALE_AFTER_SECONDS="1")
    request = render_request()
    an_hour_ago = utc_now() - timedelta(hours=1)
    pipeline.store.create(
        TaskRecord(
            request_id=request["request_id"],
            collection_id=request["collection_id"],
            input_data_json=json.dumps(request["input_data"]),
            callback_urls=["http://169.254.169.254/computeMetadata/v1/"],
            created_at=an_hour_ago,
            updated_at=an_hour_ago,
        )
    )

    assert pipeline.deliver(reconcile, {}, topic="reconcile").status_code == 200

    record = pipeline.record(request["request_id"])
    assert record.state == State.FAILED and record.error["code"] == "callback_refused"
    assert srp_posts_for(pipeline, request["request_id"]) == 0
