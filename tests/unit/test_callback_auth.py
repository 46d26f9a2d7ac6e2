"""Request-bound callback tokens and URLs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from srp_bundle.callback_auth import (
    TOKEN_HEADER,
    callback_token,
    callback_url,
    our_callback,
    token_is_valid,
)

SECRET = "s3cret-s3cret-s3cret"
PREVIOUS = "old-old-old-old-old-old"


def test_token_is_bound_to_the_request_and_the_secret() -> None:
    token = callback_token(SECRET, "req-1")
    assert token_is_valid(token, "req-1", (SECRET, None))
    assert not token_is_valid(token, "req-2", (SECRET, None))
    assert not token_is_valid(token, "req-1", ("another-secret-value", None))
    assert not token_is_valid(None, "req-1", (SECRET, None))
    assert not token_is_valid("", "req-1", (SECRET, None))


def test_previous_secret_is_accepted_during_rotation() -> None:
    old_token = callback_token(PREVIOUS, "req-1")
    assert token_is_valid(old_token, "req-1", (SECRET, PREVIOUS))
    assert not token_is_valid(old_token, "req-1", (SECRET, None))


def test_callback_url_names_the_request_and_keeps_existing_query() -> None:
    url = callback_url("https://hooks.example/ingest?env=dev", "req 1/x")
    assert parse_qs(urlsplit(url).query) == {"env": ["dev"], "request_id": ["req 1/x"]}


def test_our_callback_uses_the_seed_dict_form() -> None:
    assert our_callback("https://h.example/i", SECRET, "r").to_json() == {
        "url": "https://h.example/i?request_id=r",
        "method": "post",
        "headers": {TOKEN_HEADER: callback_token(SECRET, "r")},
    }
