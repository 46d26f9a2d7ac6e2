"""Baseline for record_dead_letter: Firestore + Pub/Sub; one get, one set, one publish."""

import functools
import os

import functions_framework
from cloudevents.http.event import CloudEvent
from google.cloud import firestore, pubsub_v1


@functools.cache
def clients() -> tuple[firestore.Client, pubsub_v1.PublisherClient]:
    """Built once, in the serving process (a gRPC channel made before gunicorn forks can hang)."""
    return firestore.Client(), pubsub_v1.PublisherClient()


@functions_framework.cloud_event
def record_dead_letter(cloud_event: CloudEvent) -> None:
    """Read the record, mark it failed, publish one event."""
    client, publisher = clients()
    reference = client.collection(os.environ["TASKS_COLLECTION"]).document(cloud_event["id"])
    reference.get()
    reference.set({"state": "failed"})
    topic = publisher.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["EVENTS_TOPIC"])
    publisher.publish(topic, b"{}", type="task.failed").result()
