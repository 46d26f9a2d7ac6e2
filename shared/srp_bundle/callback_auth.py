"""Our signature on SRP callbacks: a request-bound URL plus an HMAC token header.

SRP does not sign callbacks, so `submit_task` gives SRP a callback in the seed's dict
form whose URL names the request and whose custom header carries
HMAC-SHA256(WEBHOOK_SECRET, request_id). Only someone who saw that callback config
(SRP) can call back for that request; terminal statuses are additionally confirmed
with SRP before they are accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlencode, urlsplit, urlunsplit

from srp_bundle.srp_models import CallbackTarget

TOKEN_HEADER = "X-Srp-Callback-Token"
REQUEST_ID_PARAM = "request_id"
CALLBACK_METHOD = "post"
_TOKEN_VERSION = "v1"
# The only shape `callback_token` makes; anything else (non-ASCII included) is refused
# before any comparison, so a malformed header is a plain 401, never an exception.
_TOKEN_SHAPE = re.compile(r"v1\.[0-9a-f]{64}")


def callback_token(secret: str, request_id: str) -> str:
    """The token that authenticates callbacks for one request."""
    # surrogatepass: a request id decoded from a hostile query string still encodes.
    message = f"{_TOKEN_VERSION}:{request_id}".encode("utf-8", "surrogatepass")
    digest = hmac.new(secret.encode("utf-8", "surrogatepass"), message, hashlib.sha256).hexdigest()
    return f"{_TOKEN_VERSION}.{digest}"


def token_is_valid(token: str | None, request_id: str, secrets: tuple[str | None, ...]) -> bool:
    """Whether `token` was made for `request_id` with any of `secrets` (current, previous)."""
    if not token or not request_id or not _TOKEN_SHAPE.fullmatch(token):
        return False
    valid = False
    for secret in secrets:
        if secret:
            # Compare against every secret, without short-circuit, in constant time each.
            expected = callback_token(secret, request_id).encode("ascii")
            valid |= hmac.compare_digest(token.encode("ascii"), expected)
    return valid


def callback_url(webhook_url: str, request_id: str) -> str:
    """The webhook URL that names this request."""
    parts = urlsplit(webhook_url)
    query = "&".join(q for q in (parts.query, urlencode({REQUEST_ID_PARAM: request_id})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def our_callback(webhook_url: str, secret: str, request_id: str) -> CallbackTarget:
    """Our callback for SRP, in the seed's dict form."""
    return CallbackTarget(
        url=callback_url(webhook_url, request_id),
        method=CALLBACK_METHOD,
        headers={TOKEN_HEADER: callback_token(secret, request_id)},
    )
