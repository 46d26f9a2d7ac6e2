"""Callback tokens bound to a request, its record's nonce and the deployment; echoes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from srp_bundle.callback_auth import (
    TOKEN_HEADER,
    CallbackSigner,
    callback_url,
    deployment_scope,
    legacy_callback_token,
    new_callback_nonce,
)
from srp_bundle.settings import Settings
from srp_bundle.srp_models import CallbackTarget

SECRET = "s3cret-s3cret-s3cret"
PREVIOUS = "old-old-old-old-old-old"
PROD = CallbackSigner(deployment_scope("prod-project", "srp_tasks"), (SECRET, None))
NONCE = new_callback_nonce()
WEBHOOK = "https://hooks.example/ingest"


def test_token_is_bound_to_the_request_the_nonce_and_the_secret() -> None:
    token = PROD.token("req-1", NONCE)
    assert PROD.is_valid(token, "req-1", NONCE)
    assert not PROD.is_valid(token, "req-2", NONCE)
    assert not PROD.is_valid(token, "req-1", new_callback_nonce())
    other_secret = CallbackSigner(PROD.scope, ("another-secret-value", None))
    assert not other_secret.is_valid(token, "req-1", NONCE)
    assert not PROD.is_valid(None, "req-1", NONCE)
    assert not PROD.is_valid("", "req-1", NONCE)


def test_the_same_secret_in_another_deployment_makes_tokens_that_do_not_pass_here() -> None:
    # Fails without the deployment scope in the HMAC input (dev tokens valid in prod).
    dev = CallbackSigner(deployment_scope("dev-project", "srp_tasks"), (SECRET, None))
    other_collection = CallbackSigner(deployment_scope("prod-project", "tasks_b"), (SECRET, None))
    assert not PROD.is_valid(dev.token("req-1", NONCE), "req-1", NONCE)
    assert not PROD.is_valid(other_collection.token("req-1", NONCE), "req-1", NONCE)


def test_the_signer_takes_its_scope_and_secrets_from_the_settings() -> None:
    settings = Settings(
        project_id="prod-project", webhook_secret=SECRET, webhook_secret_previous=PREVIOUS
    )
    signer = CallbackSigner.from_settings(settings)
    assert signer.scope == PROD.scope
    assert signer.is_valid(PROD.token("r", NONCE), "r", NONCE)


def test_a_new_nonce_revokes_every_token_of_the_request() -> None:
    token = PROD.token("req-1", NONCE)
    replaced = new_callback_nonce()
    assert replaced != NONCE
    assert not PROD.is_valid(token, "req-1", replaced)
    assert PROD.is_valid(PROD.token("req-1", replaced), "req-1", replaced)


def test_previous_secret_is_accepted_during_rotation() -> None:
    old = CallbackSigner(PROD.scope, (PREVIOUS, None)).token("req-1", NONCE)
    assert CallbackSigner(PROD.scope, (SECRET, PREVIOUS)).is_valid(old, "req-1", NONCE)
    assert not PROD.is_valid(old, "req-1", NONCE)


def test_v1_tokens_pass_only_for_records_without_a_nonce() -> None:
    legacy = legacy_callback_token(SECRET, "req-1")
    assert PROD.is_valid(legacy, "req-1", None)
    assert not PROD.is_valid(legacy, "req-1", NONCE)
    assert not PROD.is_valid(PROD.token("req-1", NONCE), "req-1", None)
    assert not PROD.is_valid(PROD.token("req-1", NONCE), "req-1", "not-a-nonce")


def test_callback_url_names_the_request_and_keeps_existing_query() -> None:
    url = callback_url("https://hooks.example/ingest?env=dev", "req 1/x")
    assert parse_qs(urlsplit(url).query) == {"env": ["dev"], "request_id": ["req 1/x"]}


def test_our_callback_uses_the_seed_dict_form() -> None:
    assert PROD.callback("https://h.example/i", "r", NONCE).to_json() == {
        "url": "https://h.example/i?request_id=r",
        "method": "post",
        "headers": {TOKEN_HEADER: PROD.token("r", NONCE)},
    }


def test_only_our_url_with_our_token_counts_as_an_echo_of_our_callback() -> None:
    ours = PROD.callback(WEBHOOK, "req-1", NONCE)
    assert PROD.is_our_echo(ours, WEBHOOK, "req-1", NONCE)
    shouting = CallbackTarget(ours.url.upper().replace("REQUEST_ID=REQ-1", "request_id=req-1"))
    headers = {TOKEN_HEADER.upper(): PROD.token("req-1", NONCE)}
    assert PROD.is_our_echo(
        CallbackTarget(shouting.url, headers=headers), WEBHOOK.upper(), "req-1", NONCE
    )
    token = {TOKEN_HEADER: PROD.token("req-1", NONCE)}
    not_ours = [
        # Fails without the fix: a producer's URL naming the request passed before.
        "https://producer.example/hook?request_id=req-1",
        CallbackTarget("https://producer.example/hook?request_id=req-1"),
        CallbackTarget("https://producer.example/ingest?request_id=req-1", headers=token),
        CallbackTarget("http://hooks.example/ingest?request_id=req-1", headers=token),
        CallbackTarget("https://hooks.example/other?request_id=req-1", headers=token),
        CallbackTarget("https://hooks.example/ingest?request_id=req-2", headers=token),
        CallbackTarget(ours.url),  # our URL, no token
        CallbackTarget(ours.url, headers={TOKEN_HEADER: "v2." + "0" * 64}),
        CallbackTarget(ours.url, headers={TOKEN_HEADER: legacy_callback_token(SECRET, "req-1")}),
    ]
    for entry in not_ours:
        assert not PROD.is_our_echo(entry, WEBHOOK, "req-1", NONCE), entry
    # A record older than nonces: its echo carries the v1 token.
    legacy = CallbackTarget(
        ours.url, headers={TOKEN_HEADER: legacy_callback_token(SECRET, "req-1")}
    )
    assert PROD.is_our_echo(legacy, WEBHOOK, "req-1", None)
