"""Decision 0002 relies on this: a Pub/Sub push delivery reaches a CloudEvent handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from functions_framework import create_app

# A stand-in for functions/submit_task/main.py: a CloudEvent handler that records what it got.
HANDLER_SOURCE = """
import json
import os

import functions_framework


@functions_framework.cloud_event
def submit_task(cloud_event):
    with open(os.environ["RECEIVED_EVENTS_FILE"], "a") as received:
        received.write(json.dumps({"type": cloud_event["type"], "data": cloud_event.data}) + "\\n")
"""


def test_push_envelope_becomes_the_pubsub_cloud_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "main.py"
    source.write_text(HANDLER_SOURCE)
    received_file = tmp_path / "received.jsonl"
    monkeypatch.setenv("RECEIVED_EVENTS_FILE", str(received_file))
    client = create_app("submit_task", str(source), "cloudevent").test_client()
    request = {"collection_id": "7f1d6a52-9a6e-4a8e-9d1e-1c2b3a4d5e6f", "input_data": {"seed": 1}}

    # What our push subscription POSTs (the OIDC token is checked by Cloud Run, not the app).
    response = client.post(
        "/",
        json={
            "message": {
                "data": base64.b64encode(json.dumps(request).encode()).decode(),
                "attributes": {"origin": "test"},
                "messageId": "1234567890",
                "message_id": "1234567890",
                "publishTime": "2024-05-01T12:00:00.000Z",
                "publish_time": "2024-05-01T12:00:00.000Z",
            },
            "subscription": "projects/p/subscriptions/srp-dev-submit-task",
        },
    )

    assert response.status_code == 200
    (line,) = received_file.read_text().splitlines()
    event = json.loads(line)
    assert event["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    message = event["data"]["message"]
    assert json.loads(base64.b64decode(message["data"])) == request
    assert message["messageId"] == "1234567890"
    assert message["attributes"] == {"origin": "test"}


def test_a_failing_handler_answers_500_so_pubsub_redelivers(tmp_path: Path) -> None:
    source = tmp_path / "main.py"
    source.write_text(
        "import functions_framework\n\n\n"
        "@functions_framework.cloud_event\n"
        "def submit_task(cloud_event):\n"
        "    raise RuntimeError('SRP is down')\n"
    )
    client = create_app("submit_task", str(source), "cloudevent").test_client()

    response = client.post(
        "/",
        json={
            "message": {"data": base64.b64encode(b"{}").decode(), "messageId": "1"},
            "subscription": "projects/p/subscriptions/srp-dev-submit-task",
        },
    )

    # Any non-2xx is a nack: Pub/Sub retries with backoff, then dead-letters.
    assert response.status_code == 500
