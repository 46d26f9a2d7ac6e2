"""Baseline for postprocess_render: Firestore, Pub/Sub and Storage clients, no work."""

import functools

import functions_framework
from cloudevents.http.event import CloudEvent
from google.cloud import firestore, pubsub_v1, storage


@functools.cache
def clients() -> tuple[firestore.Client, storage.Client, pubsub_v1.PublisherClient]:
    """Built once, in the serving process (a gRPC channel made before gunicorn forks can hang)."""
    return firestore.Client(), storage.Client(), pubsub_v1.PublisherClient()


@functions_framework.cloud_event
def postprocess_render(cloud_event: CloudEvent) -> None:
    """Build the clients and acknowledge (our cold request is an object it ignores)."""
    clients()
