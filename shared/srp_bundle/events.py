"""Outgoing events on `EVENTS_TOPIC`: JSON data, the fixed `type` attribute, an `event_id`.

Events are decided inside the record's transaction and written to the outbox in that same
transaction; they are published after the commit and then deleted from the outbox. If an
invocation dies in between, reconciliation publishes them again with the same `event_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from google.cloud.pubsub_v1 import PublisherClient

from srp_bundle.log import bind, get_logger, log_fields
from srp_bundle.task_store import TaskStore

logger = get_logger(__name__)
PUBLISH_TIMEOUT_SECONDS = 30.0


class EventPublisher:
    """Publishes outgoing events to one topic."""

    def __init__(self, publisher: PublisherClient, project_id: str, topic_id: str) -> None:
        self.publisher = publisher
        self.topic_path = publisher.topic_path(project_id, topic_id)

    def publish(self, events: Iterable[dict[str, Any]]) -> list[str]:
        """Publish events and wait until Pub/Sub has them all; return their event ids."""
        pending = []
        for event in events:
            data = json.dumps(event["data"], default=str, sort_keys=True).encode()
            future = self.publisher.publish(
                self.topic_path,
                data,
                type=event["type"],
                event_id=event["event_id"],
                request_id=str(event["data"].get("request_id") or ""),
            )
            pending.append((event, future))
        published = []
        for event, future in pending:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
            published.append(event["event_id"])
            logger.info(
                "published %s",
                event["type"],
                extra=log_fields(event_type=event["type"], event_id=event["event_id"]),
            )
        return published


def publish_transition(
    store: TaskStore, publisher: EventPublisher, request_id: str, events: list[dict[str, Any]]
) -> None:
    """Publish the events one transition decided, then delete them from the outbox.

    Only this transition's own events: a concurrent invocation never publishes them, so
    normal operation publishes each event once.
    """
    if events:
        with bind(request_id=request_id):
            store.confirm_published(publisher.publish(events))


def republish_pending(store: TaskStore, publisher: EventPublisher, decided_before: datetime) -> int:
    """Publish events whose publisher died after the commit; return how many."""
    events = store.pending_events(decided_before, limit=500)
    if events:
        store.confirm_published(publisher.publish(events))
    return len(events)
