"""Baseline for submit_task: Firestore + Pub/Sub clients; one set and one publish per message."""

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
def submit_task(cloud_event: CloudEvent) -> None:
    """Record the message and publish one event."""
    client, publisher = clients()
    client.collection(os.environ["TASKS_COLLECTION"]).document(cloud_event["id"]).set({"x": 1})
    topic = publisher.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["EVENTS_TOPIC"])
    publisher.publish(topic, b"{}", type="task.failed").result()
