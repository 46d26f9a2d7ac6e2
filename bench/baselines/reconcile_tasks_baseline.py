"""Baseline for reconcile_tasks: Firestore + Pub/Sub clients; one query per run."""

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
def reconcile_tasks(cloud_event: CloudEvent) -> None:
    """Look for active records (there are none on a fresh collection)."""
    records = clients()[0].collection(os.environ["TASKS_COLLECTION"])
    list(records.where("state", "in", ["submitted", "rendering"]).limit(100).stream())
