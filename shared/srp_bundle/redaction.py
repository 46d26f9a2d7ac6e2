"""Secrets out of SRP's text: what SRP says is redacted before we store, log or publish it.

SRP's error bodies (and a failed callback's reason) may echo the request we sent, and
with it `render_options.callback_urls`: our callback token and the producers' header
values (their credentials). `SrpClient` redacts every error it builds, so `record.error`,
`last_error`, log lines and `task.failed` only ever see redacted text; the webhook
redacts a callback's reason the same way.

Three rules, each for what the others cannot know:
- every known secret value (the API key, the header values of the callbacks sent);
- anything shaped like one of our callback tokens (`v<n>.` and 64 hex digits), for
  answers to calls that sent none (a GET can echo a task's callbacks);
- in a JSON body, every value of a `headers` object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from srp_bundle.srp_models import CallbackUrl

REDACTED = "[redacted]"
# Shorter values (`1`, `true`) cannot be told from ordinary words; redacting them would
# garble the message and hide nothing worth hiding.
MIN_SECRET_CHARS = 8
_TOKEN_LIKE = re.compile(r"\bv[0-9]+\.[0-9a-f]{64}\b")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every secret value and every token-shaped string replaced."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len)[::-1]:
        text = text.replace(secret, REDACTED)
    return _TOKEN_LIKE.sub(REDACTED, text)


def redact_json(value: Any, secrets: Sequence[str | None] = ()) -> Any:
    """A JSON value with `redact` applied to every string and `headers` values blanked."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, list):
        return [redact_json(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            key: (
                {name: REDACTED for name in item}
                if isinstance(item, dict) and str(key).lower() == "headers"
                else redact_json(item, secrets)
            )
            for key, item in value.items()
        }
    return value


def header_values(callbacks: Iterable[CallbackUrl]) -> tuple[str, ...]:
    """The header values of the dict-form callbacks (ours carries the token, producers' theirs)."""
    return tuple(
        value
        for callback in callbacks
        if not isinstance(callback, str)
        for value in (callback.headers or {}).values()
        if isinstance(value, str)
    )


def without_header_values(callback: str | dict[str, Any]) -> str | dict[str, Any]:
    """A stored `callback_urls` entry with its header names kept and values redacted."""
    if isinstance(callback, str) or not isinstance(callback.get("headers"), dict):
        return callback
    return {**callback, "headers": {name: REDACTED for name in callback["headers"]}}
