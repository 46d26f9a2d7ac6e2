"""The render request a producer publishes on the render-requests topic, validated."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from srp_bundle.callback_policy import check_producer_callbacks
from srp_bundle.errors import InvalidMessageError
from srp_bundle.json_limits import parse_json
from srp_bundle.srp_models import CallbackUrl, parse_callback_urls

MAX_MESSAGE_BYTES = 64 * 1024
# Far deeper than any render input needs, far below what makes the parser recurse out.
MAX_MESSAGE_DEPTH = 32
# URL-safe and a valid Firestore document id (no "/", not "." or "..", not "__x__").
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_KNOWN_KEYS = {
    "collection_id",
    "input_data",
    "request_id",
    "priority",
    "callback_urls",
    "metadata",
    "retry_of",
}


@dataclass(frozen=True)
class RenderRequest:
    """One render request: what to render, and how to find it again."""

    request_id: str
    collection_id: str
    input_data: dict[str, Any]
    priority: int | None = None
    callback_urls: tuple[CallbackUrl, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None


def check_request_id(value: object, where: str = "request_id") -> str:
    """A request id that is URL-safe, at most 128 characters, and a valid document id."""
    if not isinstance(value, str) or not _REQUEST_ID.match(value):
        raise InvalidMessageError(
            f"{where} must be 1-128 URL-safe characters (A-Z a-z 0-9 . _ ~ -), got {value!r:.60}"
        )
    if value in (".", "..") or (value.startswith("__") and value.endswith("__")):
        raise InvalidMessageError(f"{where} {value!r} is reserved")
    return value


def request_id_hint(data: bytes, message_id: str) -> str:
    """The request id a (possibly invalid) message asks for, else the message id."""
    try:
        body = parse_json(
            data, what="message data", max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_MESSAGE_DEPTH
        )
        return check_request_id(body.get("request_id"))
    except (AttributeError, InvalidMessageError):
        return message_id


def parse_render_request(
    data: bytes, message_id: str, *, allow_local_http_callbacks: bool = False
) -> RenderRequest:
    """Validate a Pub/Sub message body; raise `InvalidMessageError` saying what is wrong.

    Producer callbacks must pass `check_producer_callbacks` (`allow_local_http_callbacks`
    is the local-development setting `ALLOW_LOCAL_HTTP_CALLBACKS`).
    """
    body = parse_json(
        data, what="message data", max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_MESSAGE_DEPTH
    )
    if not isinstance(body, dict):
        raise InvalidMessageError(f"message data must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _KNOWN_KEYS)
    if unknown:
        raise InvalidMessageError(f"unknown field(s): {', '.join(unknown)}")

    collection_id = body.get("collection_id")
    try:
        uuid.UUID(str(collection_id))
    except ValueError:
        raise InvalidMessageError(
            f"collection_id must be a UUID, got {collection_id!r:.60}"
        ) from None
    if not isinstance(collection_id, str):
        raise InvalidMessageError("collection_id must be a UUID string")
    input_data = body.get("input_data")
    if not isinstance(input_data, dict):
        raise InvalidMessageError(
            f"input_data must be a JSON object, got {type(input_data).__name__}"
        )
    priority = body.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InvalidMessageError(f"priority must be an integer, got {priority!r:.30}")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidMessageError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    callback_urls = parse_callback_urls(body.get("callback_urls"))
    check_producer_callbacks(callback_urls, allow_local_http=allow_local_http_callbacks)
    retry_of = body.get("retry_of")
    return RenderRequest(
        request_id=check_request_id(body["request_id"]) if "request_id" in body else message_id,
        collection_id=collection_id,
        input_data=input_data,
        priority=priority,
        callback_urls=callback_urls,
        metadata=metadata,
        retry_of=None if retry_of is None else check_request_id(retry_of, "retry_of"),
    )
