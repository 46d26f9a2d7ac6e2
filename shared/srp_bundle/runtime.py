"""Clients built once per function instance, on first use, and reused by every invocation.

Each import happens inside its constructor, so a function only pays at cold start for
the Google libraries it really uses.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from srp_bundle.settings import Settings

if TYPE_CHECKING:
    from google.cloud import firestore
    from google.cloud.storage import Client as StorageClient

    from srp_bundle.events import EventPublisher
    from srp_bundle.render_listing import RenderFolder
    from srp_bundle.srp_client import SrpClient
    from srp_bundle.task_store import TaskStore


@functools.cache
def firestore_client(project_id: str) -> firestore.Client:
    """The Firestore client of this instance."""
    from google.cloud import firestore

    return firestore.Client(project=project_id)


@functools.cache
def storage_client(project_id: str) -> StorageClient:
    """The Cloud Storage client of this instance."""
    from google.cloud.storage import Client as StorageClient

    return StorageClient(project=project_id)


@functools.cache
def task_store(settings: Settings) -> TaskStore:
    """Task records in `TASKS_COLLECTION`."""
    from srp_bundle.task_store import TaskStore

    return TaskStore(firestore_client(settings.project_id), settings.tasks_collection)


@functools.cache
def event_publisher(settings: Settings) -> EventPublisher:
    """Publisher of outgoing events on `EVENTS_TOPIC`."""
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.pubsub_v1.types import BatchSettings

    from srp_bundle.events import EventPublisher

    topic = settings.require(settings.events_topic, "EVENTS_TOPIC")
    # Every invocation waits for its publishes, so the default 10 ms batching window
    # would only add latency; 1 ms still batches the events of one transition.
    publisher = PublisherClient(batch_settings=BatchSettings(max_latency=0.001))
    return EventPublisher(publisher, settings.project_id, topic)


@functools.cache
def srp_client(settings: Settings) -> SrpClient:
    """The SRP client (one keep-alive connection pool per instance)."""
    from srp_bundle.srp_client import SrpClient

    return SrpClient.from_settings(settings)


@functools.cache
def render_folder(settings: Settings) -> RenderFolder | None:
    """Lists tasks' render folders in RENDERS_BUCKET (the client made on first listing)."""
    from srp_bundle.render_listing import RenderFolder

    if not settings.renders_bucket_name:
        return None
    return RenderFolder(
        functools.partial(storage_client, settings.project_id),
        settings.renders_bucket_name,
        settings.render_path_pattern,
    )
