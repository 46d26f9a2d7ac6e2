"""Secrets out of SRP's text: our callback token and producers' header values never get further.

SRP's error bodies may echo the request we sent (`render_options.callback_urls`, headers
included): the errors `SrpClient` raises, and so everything downstream (`record.error`,
logs, `task.failed`), carry `[redacted]` instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from srp_bundle.callback_auth import TOKEN_HEADER, CallbackSigner, deployment_scope
from srp_bundle.errors import SrpError, SrpServerError, SrpValidationError
from srp_bundle.redaction import REDACTED, header_values, redact, redact_json
from srp_bundle.srp_client import CallbackTarget, RetryPolicy, SrpClient

API_KEY = "sk-test-7f3a9c1e5b2d4f60a8e1"
COLLECTION_ID = "3f0e5b5c-8d44-4a6a-9a53-0c1f8f2f4b11"
SECRET = "webhook-secret-0123456789"
PRODUCER_CREDENTIAL = "Bearer studio-credential-4711"
OURS = CallbackSigner(deployment_scope("p", "srp_tasks"), (SECRET,)).callback(
    "https://hooks.example.com/ingest", "req-1", "0" * 32
)
TOKEN = (OURS.headers or {})[TOKEN_HEADER]
PRODUCERS = CallbackTarget(
    url="https://hooks.studio.io/cb", method="post", headers={"Authorization": PRODUCER_CREDENTIAL}
)


def client_answering(answer: Callable[[httpx.Request], httpx.Response]) -> SrpClient:
    return SrpClient(
        API_KEY,
        base_url="https://srp.test",
        transport=httpx.MockTransport(answer),
        retry=RetryPolicy(max_attempts=1),
        sleep=lambda seconds: None,
    )


def echoing(status: int, *, as_text: bool = False) -> Callable[[httpx.Request], httpx.Response]:
    """An SRP that explains its refusal by quoting the request back."""

    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        detail = f"invalid render_options: {json.dumps(sent['render_options'])}"
        if as_text:
            return httpx.Response(status, text=f"<html><pre>{detail}</pre></html>")
        return httpx.Response(status, json={"detail": detail, "request": sent})

    return answer


def assert_clean(error: SrpError) -> None:
    shown = f"{error} {json.dumps(error.body)}"
    assert TOKEN not in shown
    assert PRODUCER_CREDENTIAL not in shown and "studio-credential-4711" not in shown
    assert API_KEY not in shown
    assert REDACTED in shown


@pytest.mark.parametrize(
    ("status", "as_text", "error_type"),
    [
        (400, False, SrpValidationError),
        (422, True, SrpValidationError),
        (502, True, SrpServerError),
        (500, False, SrpServerError),
    ],
)
def test_an_srp_error_quoting_our_callbacks_never_carries_a_token_or_header_value(
    status: int, as_text: bool, error_type: type[SrpError]
) -> None:
    client = client_answering(echoing(status, as_text=as_text))
    with client, pytest.raises(error_type) as raised:
        client.submit_task(COLLECTION_ID, {"bg": "x"}, callback_urls=[OURS, PRODUCERS])
    assert_clean(raised.value)
    assert "hooks.studio.io" in str(raised.value)  # the rest of SRP's words are kept


def test_an_unexpected_2xx_body_quoting_our_callbacks_is_redacted_too() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"echo": json.loads(request.content)})

    with client_answering(answer) as client, pytest.raises(SrpError) as raised:
        client.submit_task(COLLECTION_ID, {"bg": "x"}, callback_urls=[OURS, PRODUCERS])
    assert_clean(raised.value)


def test_a_get_error_quoting_a_tasks_callbacks_is_redacted_without_knowing_them() -> None:
    # A GET sends no callbacks: the token's shape and the `headers` objects are what give
    # them away.
    task = {"options": {"callback_urls": [OURS.to_json(), PRODUCERS.to_json()]}}
    text = f"task {json.dumps(task)} is locked"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": text, "task": task})

    with client_answering(answer) as client, pytest.raises(SrpServerError) as raised:
        client.get_task("9b2d7c3e-1a4f-4e8b-b6d5-2f7a1c9e0d44")
    assert TOKEN not in str(raised.value) and TOKEN not in json.dumps(raised.value.body)
    assert raised.value.body["task"]["options"]["callback_urls"][1]["headers"] == {
        "Authorization": REDACTED
    }
    # Values the caller knows are redacted from the free text as well (reconcile passes them).
    with client_answering(answer) as client, pytest.raises(SrpServerError) as raised:
        client.get_task("9b2d7c3e-1a4f-4e8b-b6d5-2f7a1c9e0d44", secrets=(PRODUCER_CREDENTIAL,))
    assert_clean(raised.value)


def test_redact_replaces_known_values_longest_first_and_every_token_shape() -> None:
    text = f"a {PRODUCER_CREDENTIAL} b {TOKEN} c v2.{'ab' * 32} d 1234567 e"
    redacted = redact(text, ["studio-credential-4711", PRODUCER_CREDENTIAL, "1234567", None])
    assert redacted == f"a {REDACTED} b {REDACTED} c {REDACTED} d 1234567 e"


def test_redact_json_blanks_every_headers_object_and_redacts_every_string() -> None:
    body: Any = {"headers": {"X-Key": "short"}, "list": [{"note": TOKEN}], "n": 3}
    assert redact_json(body) == {
        "headers": {"X-Key": REDACTED},
        "list": [{"note": REDACTED}],
        "n": 3,
    }


def test_our_token_has_the_shape_redaction_knows() -> None:
    # If callback_auth changes the token's shape, GET errors would leak it: keep them in step.
    assert redact(f" {TOKEN} ") == f" {REDACTED} "
    assert header_values([OURS, PRODUCERS, "https://plain.studio.io/"]) == (
        TOKEN,
        PRODUCER_CREDENTIAL,
    )
