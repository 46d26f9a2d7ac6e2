"""Baseline for ingest_webhook: Firestore + Pub/Sub clients; one set and one publish."""

import functools
import os

import flask
import functions_framework
from google.cloud import firestore, pubsub_v1


@functools.cache
def clients() -> tuple[firestore.Client, pubsub_v1.PublisherClient]:
    """Built once, in the serving process (a gRPC channel made before gunicorn forks can hang)."""
    return firestore.Client(), pubsub_v1.PublisherClient()


@functions_framework.http
def ingest_webhook(request: flask.Request) -> tuple[str, int]:
    """Store the callback and publish one event."""
    client, publisher = clients()
    records = client.collection(os.environ["TASKS_COLLECTION"])
    records.document(request.args["request_id"]).set({"callback": request.get_data(as_text=True)})
    topic = publisher.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], os.environ["EVENTS_TOPIC"])
    publisher.publish(topic, b"{}", type="task.status_changed").result()
    return "ok", 200
