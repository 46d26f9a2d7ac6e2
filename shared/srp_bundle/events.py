"""Outgoing events on `EVENTS_TOPIC`: JSON data, the fixed `type` attribute, an `event_id`.

Events are decided inside the record's transaction and kept in its outbox; they are
published after the commit and then dropped from the outbox. A crash in between means
the next invocation for that record publishes them again with the same `event_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.cloud.pubsub_v1 import PublisherClient

from srp_bundle.log import get_logger, log_fields
from srp_bundle.task_state import TaskRecord
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
    """Publish the events one transition decided, then drop them from the record's outbox.

    Only this transition's own events: a concurrent invocation that sees them still in
    the outbox leaves them alone, so normal operation publishes each event once.
    """
    if events:
        store.confirm_published(request_id, publisher.publish(events))


def flush_stale_outbox(store: TaskStore, publisher: EventPublisher, record: TaskRecord) -> int:
    """Re-publish events whose publisher crashed after the commit; return the count."""
    if not record.outbox:
        return 0
    published = publisher.publish(record.outbox)
    store.confirm_published(record.request_id, published)
    return len(published)
