"""Second ingest_webhook baseline: the irreducible work, one transaction and one publish.

The transaction reads the record, writes it back and adds one event-log entry; then one
event is published and awaited. What ours spends beyond this is our own code and choices.
"""

import functools
import os

import flask
import functions_framework
from google.cloud import firestore, pubsub_v1

project_id = os.environ["GOOGLE_CLOUD_PROJECT"]


@functools.cache
def clients() -> tuple[firestore.Client, pubsub_v1.PublisherClient]:
    """Built once, in the serving process (a gRPC channel made before gunicorn forks can hang)."""
    return firestore.Client(project=project_id), pubsub_v1.PublisherClient()


@firestore.transactional
def _advance(transaction: firestore.Transaction, reference: firestore.DocumentReference) -> None:
    record = reference.get(transaction=transaction).to_dict() or {}
    record["state"] = "rendering"
    transaction.set(reference, record)
    transaction.set(reference.collection("events").document(), {"kind": "callback"})


@functions_framework.http
def minimal_transaction(request: flask.Request) -> tuple[str, int]:
    """Advance the record in a transaction, then publish one event."""
    client, publisher = clients()
    records = client.collection(os.environ["TASKS_COLLECTION"])
    _advance(client.transaction(), records.document(request.args["request_id"]))
    topic = publisher.topic_path(project_id, os.environ["EVENTS_TOPIC"])
    publisher.publish(topic, request.get_data(), type="task.status_changed").result()
    return "ok", 200
