"""Throughput baseline for ingest_webhook: one Firestore set per request, nothing else."""

import functools
import os

import flask
import functions_framework
from google.cloud import firestore


@functools.cache
def clients() -> tuple[firestore.Client]:
    """Built once, in the serving process (a gRPC channel made before gunicorn forks can hang)."""
    return (firestore.Client(),)


@functions_framework.http
def minimal_set(request: flask.Request) -> tuple[str, int]:
    """Store the callback body under the request id."""
    records = clients()[0].collection(os.environ["TASKS_COLLECTION"])
    records.document(request.args["request_id"]).set({"callback": request.get_data(as_text=True)})
    return "ok", 200
