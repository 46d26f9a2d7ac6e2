"""The render request a producer publishes on the render-requests topic, validated."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from srp_bundle.batches import BatchDeclaration, check_batch_id, parse_declaration
from srp_bundle.callback_policy import (
    DEFAULT_CALLBACK_POLICY,
    CallbackPolicy,
    check_producer_callbacks,
)
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
    "batch_id",
}


@dataclass(frozen=True)
class RenderRequest:
    """One render request: what to render, and how to find it again.

    `input_data_json` is the producer's `input_data` text exactly as published: SRP gets
    those bytes, and the record keeps them as a string (Firestore stores any string, but
    not every JSON object as a map: arrays in arrays, `__x__` keys, deep nesting).
    """

    request_id: str
    collection_id: str
    input_data_json: str = "{}"
    priority: int | None = None
    callback_urls: tuple[CallbackUrl, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    retry_of: str | None = None
    batch_id: str | None = None

    @property
    def input_data(self) -> dict[str, Any]:
        """`input_data` as a Python object."""
        value: dict[str, Any] = json.loads(self.input_data_json)
        return value


def check_request_id(value: object, where: str = "request_id") -> str:
    """A request id that is URL-safe, at most 128 characters, and a valid document id."""
    if not isinstance(value, str) or not _REQUEST_ID.match(value):
        raise InvalidMessageError(
            f"{where} must be 1-128 URL-safe characters (A-Z a-z 0-9 . _ ~ -), got {value!r:.60}"
        )
    if value in (".", "..") or (value.startswith("__") and value.endswith("__")):
        raise InvalidMessageError(f"{where} {value!r} is reserved")
    return value


def requested_id(data: bytes) -> str | None:
    """The valid request id a (possibly invalid) message names, or None."""
    try:
        body = parse_json(
            data, what="message data", max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_MESSAGE_DEPTH
        )
        return check_request_id(body.get("request_id"))
    except (AttributeError, InvalidMessageError):
        return None


def request_id_hint(data: bytes, message_id: str) -> str:
    """The request id a (possibly invalid) message asks for, else the message id."""
    return requested_id(data) or message_id


def message_digest(data: bytes) -> str:
    """What identifies a message's content across Pub/Sub re-sends (sha256 of its data)."""
    return hashlib.sha256(data).hexdigest()


def batch_id_hint(data: bytes) -> str | None:
    """The valid batch id a (possibly invalid) render request names, or None."""
    try:
        body = parse_json(
            data, what="message data", max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_MESSAGE_DEPTH
        )
        return check_batch_id(body.get("batch_id"))
    except (AttributeError, InvalidMessageError):
        return None


def parse_message(
    data: bytes, message_id: str, *, callback_policy: CallbackPolicy = DEFAULT_CALLBACK_POLICY
) -> RenderRequest | BatchDeclaration:
    """A render-requests message: a batch declaration (`{"batch": ...}`) or a render request."""
    body = _message_body(data)
    if "batch" in body:
        declaration = parse_declaration(body)
        check_storable(declaration.metadata, "batch.metadata")
        return declaration
    return _render_request(body, data, message_id, callback_policy)


def parse_render_request(
    data: bytes, message_id: str, *, callback_policy: CallbackPolicy = DEFAULT_CALLBACK_POLICY
) -> RenderRequest:
    """Validate a Pub/Sub message body; raise `InvalidMessageError` saying what is wrong.

    Producer callbacks must pass `check_producer_callbacks` under `callback_policy` (the
    deployment's ALLOW_LOCAL_HTTP_CALLBACKS and FORWARD_PRODUCER_CALLBACKS).
    """
    return _render_request(_message_body(data), data, message_id, callback_policy)


def _message_body(data: bytes) -> dict[str, Any]:
    body = parse_json(
        data, what="message data", max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_MESSAGE_DEPTH
    )
    _refuse_non_finite_numbers(body)
    if not isinstance(body, dict):
        raise InvalidMessageError(f"message data must be a JSON object, got {type(body).__name__}")
    return body


def _render_request(
    body: dict[str, Any], data: bytes, message_id: str, callback_policy: CallbackPolicy
) -> RenderRequest:
    try:
        # Lone surrogates (a "\ud800" escape) decode, but can never be stored; input_data
        # is kept and sent as text, escapes included.
        json.dumps({**body, "input_data": None}, ensure_ascii=False).encode()
    except UnicodeEncodeError as error:
        raise InvalidMessageError(f"message data has text that is not Unicode: {error}") from None
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
    # Kept on the record as Firestore maps: refused once here rather than on every commit.
    check_storable(metadata, "metadata")
    check_storable(body.get("callback_urls"), "callback_urls")
    callback_urls = parse_callback_urls(body.get("callback_urls"))
    check_producer_callbacks(callback_urls, callback_policy)
    retry_of = body.get("retry_of")
    batch_id = body.get("batch_id")
    return RenderRequest(
        request_id=check_request_id(body["request_id"]) if "request_id" in body else message_id,
        collection_id=collection_id,
        input_data_json=_raw_member(data.decode(json.detect_encoding(data)), "input_data"),
        priority=priority,
        callback_urls=callback_urls,
        metadata=metadata,
        retry_of=None if retry_of is None else check_request_id(retry_of, "retry_of"),
        batch_id=None if batch_id is None else check_batch_id(batch_id),
    )


def _refuse_non_finite_numbers(value: Any) -> None:
    # Python reads NaN and Infinity (and 1e999 as infinity), which JSON and SRP do not have.
    if isinstance(value, float) and not math.isfinite(value):
        name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        raise InvalidMessageError(
            f"message data is not JSON: {name} (or a number too large) is not a JSON number"
        )
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            _refuse_non_finite_numbers(item)


_RESERVED_FIELD = re.compile(r"^__.*__$")
MAX_MAP_DEPTH = 20


def _raw_member(text: str, key: str) -> str:
    """The exact text of `key`'s value in the JSON object `text` (already known valid)."""
    decoder = json.JSONDecoder()
    found = ""
    index = _skip_whitespace(text, text.index("{") + 1)
    while text[index] != "}":
        name, index = decoder.raw_decode(text, index)
        start = _skip_whitespace(text, _skip_whitespace(text, index) + 1)  # past the ":"
        _, index = decoder.raw_decode(text, start)
        if name == key:
            found = text[start:index]  # the last one wins, as in json.loads
        index = _skip_whitespace(text, index)
        if text[index] == ",":
            index = _skip_whitespace(text, index + 1)
    return found


def _skip_whitespace(text: str, index: int) -> int:
    while text[index] in " \t\n\r":
        index += 1
    return index


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what Firestore refuses in a map: arrays in arrays, `__x__` names, deep maps."""
    if isinstance(value, dict):
        if depth >= MAX_MAP_DEPTH:
            raise InvalidMessageError(f"{where} nests maps deeper than {MAX_MAP_DEPTH} levels")
        for name, item in value.items():
            if not name or _RESERVED_FIELD.match(name):
                raise InvalidMessageError(
                    f"{where} has a field name Firestore refuses: {name!r:.60}"
                )
            check_storable(item, f"{where}.{name}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, list):
                raise InvalidMessageError(f"{where}[{index}] is an array inside an array")
            check_storable(item, f"{where}[{index}]", depth)
