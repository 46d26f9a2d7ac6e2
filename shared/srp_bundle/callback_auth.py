"""Our signature on SRP callbacks: a request-bound URL plus an HMAC token header.

SRP does not sign callbacks, so `submit_task` gives SRP a callback in the seed's dict
form whose URL names the request and whose custom header carries a token:

    v2.HMAC-SHA256(WEBHOOK_SECRET, ["srp-callback-v2", project, TASKS_COLLECTION,
                                    request_id, nonce])

The project and tasks collection bind a token to one deployment (the same secret in
dev and prod does not make dev tokens valid in prod); `nonce` is drawn at random when
the record is created, before any POST, and stored on it: replacing it revokes every
token of that request. Checking a token therefore needs the record. Records created
before nonces existed carry none and accept only the old `v1` token,
HMAC(WEBHOOK_SECRET, "v1:" + request_id); a record with a nonce never accepts `v1`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from srp_bundle.srp_models import CallbackTarget, CallbackUrl

if TYPE_CHECKING:
    from srp_bundle.settings import Settings

TOKEN_HEADER = "X-Srp-Callback-Token"
REQUEST_ID_PARAM = "request_id"
CALLBACK_METHOD = "post"
_LEGACY_VERSION = "v1"
_VERSION = "v2"
_DOMAIN = "srp-callback-v2"
# The only shapes tokens have; anything else (non-ASCII included) is refused before any
# comparison, so a malformed header is a plain 401, never an exception.
_TOKEN_SHAPE = re.compile(r"v[12]\.[0-9a-f]{64}")
_NONCE_SHAPE = re.compile(r"[0-9a-f]{32}")


def new_callback_nonce() -> str:
    """A fresh per-record nonce (128 random bits, hex); a new one revokes the old tokens."""
    return secrets.token_hex(16)


def has_token_shape(token: str | None) -> bool:
    """Whether `token` looks like a token at all (checked before anything is read)."""
    return bool(token) and _TOKEN_SHAPE.fullmatch(token or "") is not None


def legacy_callback_token(secret: str, request_id: str) -> str:
    """The `v1` token of records created before nonces: HMAC of the request id alone."""
    # surrogatepass: a request id decoded from a hostile query string still encodes.
    message = f"{_LEGACY_VERSION}:{request_id}".encode("utf-8", "surrogatepass")
    return f"{_LEGACY_VERSION}.{_hmac(secret, message)}"


def callback_token(secret: str, request_id: str, nonce: str, scope: str) -> str:
    """The `v2` token for one request, bound to its record's nonce and the deployment."""
    # A JSON list is an unambiguous encoding of the parts, whatever characters they hold.
    message = json.dumps([_DOMAIN, scope, request_id, nonce]).encode("ascii")
    return f"{_VERSION}.{_hmac(secret, message)}"


def _hmac(secret: str, message: bytes) -> str:
    key = secret.encode("utf-8", "surrogatepass")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def deployment_scope(project_id: str, tasks_collection: str) -> str:
    """What binds tokens to one deployment: its project and tasks collection."""
    return json.dumps([project_id, tasks_collection])


@dataclass(frozen=True)
class CallbackSigner:
    """Makes and checks the callback tokens of one deployment (current secret first)."""

    scope: str
    secrets: tuple[str | None, ...] = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackSigner:
        """The signer for these settings: WEBHOOK_SECRET, then WEBHOOK_SECRET_PREVIOUS."""
        return cls(
            deployment_scope(settings.project_id, settings.tasks_collection),
            (settings.webhook_secret, settings.webhook_secret_previous),
        )

    def token(self, request_id: str, nonce: str) -> str:
        """The token the current secret makes for a request with this nonce."""
        secret = self.secrets[0]
        if not secret:
            raise ValueError("WEBHOOK_SECRET is not set")
        return callback_token(secret, request_id, nonce, self.scope)

    def is_valid(self, token: str | None, request_id: str, nonce: str | None) -> bool:
        """Whether `token` was made for this request and nonce by any of our secrets.

        Without a nonce (a record older than nonces) only a `v1` token is accepted; with
        one, only `v2`.
        """
        if not token or not request_id or not has_token_shape(token):
            return False
        if nonce is not None and not _NONCE_SHAPE.fullmatch(nonce):
            return False  # a damaged nonce accepts nothing
        valid = False
        for secret in self.secrets:
            if secret:
                if nonce is None:
                    expected = legacy_callback_token(secret, request_id)
                else:
                    expected = callback_token(secret, request_id, nonce, self.scope)
                # Compare against every secret, without short-circuit, in constant time each.
                valid |= hmac.compare_digest(token.encode("ascii"), expected.encode("ascii"))
        return valid

    def callback(self, webhook_url: str, request_id: str, nonce: str) -> CallbackTarget:
        """Our callback for SRP, in the seed's dict form."""
        return CallbackTarget(
            url=callback_url(webhook_url, request_id),
            method=CALLBACK_METHOD,
            headers={TOKEN_HEADER: self.token(request_id, nonce)},
        )

    def is_our_echo(
        self, entry: CallbackUrl, webhook_url: str, request_id: str, nonce: str | None
    ) -> bool:
        """Whether an entry SRP echoes is our callback for this request, token included.

        Scheme, host and path must be WEBHOOK_URL's, the query must name the request, and
        the token header must be valid for it: a producer's URL can name any request, but
        only we can make the token.
        """
        if not isinstance(entry, CallbackTarget):
            return False
        ours, echoed = urlsplit(webhook_url), urlsplit(entry.url)
        if (echoed.scheme.lower(), echoed.netloc.lower(), echoed.path or "/") != (
            ours.scheme.lower(),
            ours.netloc.lower(),
            ours.path or "/",
        ):
            return False
        if parse_qs(echoed.query).get(REQUEST_ID_PARAM) != [request_id]:
            return False
        headers = {name.lower(): value for name, value in (entry.headers or {}).items()}
        token = headers.get(TOKEN_HEADER.lower())
        return isinstance(token, str) and self.is_valid(token, request_id, nonce)


def callback_url(webhook_url: str, request_id: str) -> str:
    """The webhook URL that names this request."""
    parts = urlsplit(webhook_url)
    query = "&".join(q for q in (parts.query, urlencode({REQUEST_ID_PARAM: request_id})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
