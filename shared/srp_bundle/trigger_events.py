"""Decoders for the CloudEvents our functions receive, tolerant of every real payload shape.

Pub/Sub `messagePublished` data may spell `messageId` or `message_id`, may omit
attributes, and may be the bare message; GCS object data may carry `generation` and
`size` as numbers or as strings.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from srp_bundle.errors import InvalidMessageError


@dataclass(frozen=True)
class PubsubMessage:
    """A Pub/Sub message as delivered by Eventarc or a push subscription."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: datetime | None = None
    delivery_attempt: int | None = None
    subscription: str | None = None


@dataclass(frozen=True)
class StorageObject:
    """The object of a GCS `object.v1.finalized` event."""

    bucket: str
    name: str
    generation: int
    size: int | None = None
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def decode_pubsub(data: Any, event_id: str | None = None) -> PubsubMessage:
    """Decode `MessagePublishedData` (or a bare `PubsubMessage`) from a CloudEvent's data."""
    if not isinstance(data, dict):
        raise InvalidMessageError("Pub/Sub event data must be a JSON object")
    message = data.get("message", data)
    if not isinstance(message, dict):
        raise InvalidMessageError("Pub/Sub event data.message must be a JSON object")
    message_id = message.get("messageId") or message.get("message_id") or event_id
    if not message_id:
        raise InvalidMessageError("Pub/Sub message has no messageId")
    raw = message.get("data") or ""
    try:
        payload = base64.b64decode(raw, validate=True) if raw else b""
    except (binascii.Error, ValueError, TypeError):
        raise InvalidMessageError("Pub/Sub message data is not valid base64") from None
    attributes = message.get("attributes") or {}
    attempt = data.get("deliveryAttempt") or message.get("deliveryAttempt")
    return PubsubMessage(
        message_id=str(message_id),
        data=payload,
        attributes={str(k): str(v) for k, v in attributes.items()},
        publish_time=_timestamp(message.get("publishTime") or message.get("publish_time")),
        delivery_attempt=int(attempt) if attempt is not None else None,
        subscription=data.get("subscription"),
    )


def decode_storage_object(data: Any) -> StorageObject:
    """Decode `StorageObjectData` from a GCS CloudEvent's data."""
    if not isinstance(data, dict):
        raise InvalidMessageError("storage event data must be a JSON object")
    try:
        bucket, name = str(data["bucket"]), str(data["name"])
        generation = int(data["generation"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidMessageError(f"storage event data lacks a valid {error}") from None
    size = data.get("size")
    return StorageObject(
        bucket=bucket,
        name=name,
        generation=generation,
        size=int(size) if size not in (None, "") else None,
        content_type=data.get("contentType"),
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
    )


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
