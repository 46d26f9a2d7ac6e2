"""CloudEvents exactly as Eventarc delivers them to a function, in binary content mode."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_FINALIZED_EVENT_TYPE = "google.cloud.storage.object.v1.finalized"
# What Eventarc sends as Content-Type (and datacontenttype) for Google event payloads.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
# fake-gcs-server (like a real bucket notification) names the event in this attribute.
FINALIZE_NOTIFICATION = "OBJECT_FINALIZE"


def _rfc3339(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def pubsub_event(
    *,
    project_id: str,
    topic_id: str,
    subscription_id: str,
    message_id: str,
    data: bytes,
    attributes: Mapping[str, str] | None = None,
    publish_time: datetime | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of a `messagePublished` CloudEvent for one Pub/Sub message."""
    published = _rfc3339(publish_time)
    message: dict[str, Any] = {
        "data": base64.b64encode(data).decode(),
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": published,
        "publish_time": published,
    }
    if attributes:
        message["attributes"] = dict(attributes)
    body = {
        "message": message,
        "subscription": f"projects/{project_id}/subscriptions/{subscription_id}",
    }
    headers = {
        "ce-id": message_id,
        "ce-specversion": "1.0",
        "ce-source": f"//pubsub.googleapis.com/projects/{project_id}/topics/{topic_id}",
        "ce-type": PUBSUB_EVENT_TYPE,
        "ce-time": published,
        "Content-Type": JSON_CONTENT_TYPE,
    }
    return headers, json.dumps(body).encode()


def storage_finalized_event(
    object_resource: Mapping[str, Any], *, event_id: str, event_time: datetime | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of an `object.v1.finalized` CloudEvent for one object resource."""
    bucket, name = object_resource["bucket"], object_resource["name"]
    headers = {
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
        "ce-subject": f"objects/{name}",
        "ce-type": STORAGE_FINALIZED_EVENT_TYPE,
        "ce-time": _rfc3339(event_time),
        "Content-Type": JSON_CONTENT_TYPE,
    }
    return headers, json.dumps(dict(object_resource)).encode()


def storage_event_from_notification(
    message_id: str, attributes: Mapping[str, str], data: bytes
) -> tuple[dict[str, str], bytes] | None:
    """The finalized CloudEvent for a bucket notification message, or None for other events.

    A notification carries the object resource as JSON data and the event in attributes
    (`eventType`, `eventTime`); Eventarc names the event after the notification message.
    """
    if attributes.get("eventType") != FINALIZE_NOTIFICATION:
        return None
    object_resource = json.loads(data)
    event_time = attributes.get("eventTime")
    return storage_finalized_event(
        object_resource,
        event_id=message_id,
        event_time=_parse_rfc3339(event_time) if event_time else None,
    )


def _parse_rfc3339(text: str) -> datetime:
    # fromisoformat() accepts at most microseconds; notifications may carry more digits.
    match = re.match(r"^(.*?\.\d{1,6})\d*(Z|[+-]\d\d:\d\d)?$", text)
    if match:
        text = match.group(1) + (match.group(2) or "Z")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
