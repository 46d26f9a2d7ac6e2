"""Outgoing events on `EVENTS_TOPIC`: JSON data, the fixed `type` attribute, an `event_id`.

The state machine (`task_state`) decides which events a change causes; `outbox` writes
them in the record's transaction and has them published here after the commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from google.api_core.exceptions import InvalidArgument

from srp_bundle.log import get_logger, log_fields

if TYPE_CHECKING:
    from google.cloud.pubsub_v1 import PublisherClient

logger = get_logger(__name__)
PUBLISH_TIMEOUT_SECONDS = 30.0


class EventType(StrEnum):
    """The fixed `type` attribute values of outgoing events."""

    TASK_SUBMITTED = "task.submitted"
    TASK_STATUS_CHANGED = "task.status_changed"
    TASK_FAILED = "task.failed"
    RENDER_COMPLETED = "render.completed"
    BATCH_COMPLETED = "batch.completed"


@dataclass
class PublishOutcome:
    """Which events Pub/Sub has, which it can never take (and why), and a transient failure."""

    published: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    transient: Exception | None = None


class EventPublisher:
    """Publishes outgoing events to one topic."""

    def __init__(self, publisher: PublisherClient, project_id: str, topic_id: str) -> None:
        self.publisher = publisher
        self.topic_path = publisher.topic_path(project_id, topic_id)

    def publish(self, events: Iterable[dict[str, Any]]) -> PublishOutcome:
        """Publish events and wait for each; one that fails never stops the others."""
        outcome = PublishOutcome()
        pending = []
        for event in events:
            try:
                data = json.dumps(event["data"], default=str, sort_keys=True).encode()
                future = self.publisher.publish(
                    self.topic_path,
                    data,
                    type=event["type"],
                    event_id=event["event_id"],
                    request_id=str(event["data"].get("request_id") or ""),
                )
            except _REFUSED as error:
                outcome.refused[event["event_id"]] = f"{type(error).__name__}: {error}"
                continue
            pending.append((event, future))
        for event, future in pending:
            try:
                future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
            except _REFUSED as error:
                outcome.refused[event["event_id"]] = f"{type(error).__name__}: {error}"
                continue
            except Exception as error:  # retried later: by the caller's retry or reconcile
                outcome.transient = outcome.transient or error
                continue
            outcome.published.append(event["event_id"])
            logger.info(
                "published %s",
                event["type"],
                extra=log_fields(event_type=event["type"], event_id=event["event_id"]),
            )
        return outcome


# What Pub/Sub (or its client) refuses for the message itself: publishing it again cannot help.
_REFUSED = (InvalidArgument, ValueError, TypeError)
