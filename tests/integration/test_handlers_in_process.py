"""Each handler in process, as functions-framework's own tests drive functions.

`create_app(target, source, signature)` executes `functions/<name>/main.py` afresh, so the
settings it reads at import are the environment at that moment: an app is built under its
own environment (`scoped_environment`), a missing variable still stops it at creation, and
two apps with different settings live side by side in one process. Events are real
`CloudEvent` objects sent in binary mode through Flask's test client; the Google clients
and SRP are the local emulators. The process-level tests beside this one cover the same
handlers behind a real `functions-framework` server.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from flask.testing import FlaskClient
from functions_framework import create_app
from PIL import Image

from local_stack.emulators import scoped_environment
from srp_bundle.callback_auth import TOKEN_HEADER
from srp_bundle.errors import ConfigurationError
from srp_bundle.task_state import State

from concurrency_scenarios import callback_body, srp_posts_for, submitted_record
from conftest import Pipeline

pytestmark = pytest.mark.integration

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
SIGNATURES = {
    "submit_task": "cloudevent",
    "reconcile_tasks": "cloudevent",
    "record_dead_letter": "cloudevent",
    "postprocess_render": "cloudevent",
    "ingest_webhook": "http",
}

App = Callable[..., FlaskClient]


@pytest.fixture
def app(pipeline: Pipeline) -> App:
    """`app(name, **overrides)`: the function's Flask test client, built under its own env."""

    def build(name: str, **overrides: str) -> FlaskClient:
        with scoped_environment(pipeline.env(**overrides)):
            flask_app = create_app(name, str(FUNCTIONS_DIR / name / "main.py"), SIGNATURES[name])
        return flask_app.test_client()

    return build


def pubsub_cloud_event(
    pipeline: Pipeline,
    data: dict[str, Any] | bytes,
    *,
    topic: str = "render-requests",
    message_id: str | None = None,
    attributes: dict[str, str] | None = None,
) -> CloudEvent:
    """A `messagePublished` CloudEvent carrying one Pub/Sub message."""
    message_id = message_id or uuid.uuid4().hex
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    message: dict[str, Any] = {"data": base64.b64encode(raw).decode(), "messageId": message_id}
    if attributes:
        message["attributes"] = attributes
    return CloudEvent(
        {
            "id": message_id,
            "type": "google.cloud.pubsub.topic.v1.messagePublished",
            "source": f"//pubsub.googleapis.com/projects/{pipeline.project_id}/topics/{topic}",
        },
        {
            "message": message,
            "subscription": f"projects/{pipeline.project_id}/subscriptions/{topic}-sub",
        },
    )


def send(client: FlaskClient, event: CloudEvent) -> Any:
    """POST a CloudEvent in binary content mode, as Eventarc does."""
    headers, body = to_binary(event)
    return client.post("/", headers=headers, data=body)


def test_submit_task_posts_once_and_a_redelivery_posts_nothing(
    app: App, pipeline: Pipeline, render_request
) -> None:
    submit = app("submit_task")
    request = render_request()
    event = pubsub_cloud_event(pipeline, request)

    assert send(submit, event).status_code == 200
    assert send(submit, event).status_code == 200

    record = pipeline.record(request["request_id"])
    assert record.state == State.SUBMITTED and record.task_id
    assert srp_posts_for(pipeline, request["request_id"]) == 1


def test_submit_task_records_an_invalid_message_and_acknowledges_it(
    app: App, pipeline: Pipeline
) -> None:
    submit = app("submit_task")
    message_id = f"bad-{uuid.uuid4().hex[:8]}"

    response = send(submit, pubsub_cloud_event(pipeline, b"{not json", message_id=message_id))

    assert response.status_code == 200
    record = pipeline.record(message_id)
    assert record.state == State.FAILED and record.error["code"] == "invalid_message"


def test_submit_task_raises_for_an_srp_outage_so_pubsub_retries(
    app: App, pipeline: Pipeline, render_request
) -> None:
    submit = app("submit_task")
    request = render_request()
    pipeline.srp.control.set_faults(srp_post_error_rate=1.0)

    response = send(submit, pubsub_cloud_event(pipeline, request))

    assert response.status_code == 500
    record = pipeline.record(request["request_id"])
    assert record.state == State.RECEIVED and record.task_id is None


def test_ingest_webhook_refuses_a_wrong_token_and_takes_a_right_one(
    app: App, pipeline: Pipeline
) -> None:
    webhook = app("ingest_webhook", CONFIRM_TERMINAL_STATUS="false")
    request_id, task_id = submitted_record(pipeline)
    body = json.dumps(callback_body("in_progress", task_id))
    url = f"/?request_id={request_id}"

    wrong = webhook.post(url, data=body, headers={TOKEN_HEADER: "v1." + "0" * 64})
    assert wrong.status_code == 401
    assert pipeline.record(request_id).state == State.SUBMITTED

    token = pipeline.callback_token(request_id)
    right = webhook.post(url, data=body, headers={TOKEN_HEADER: token})
    assert right.status_code == 200, right.get_data(as_text=True)
    assert right.get_json()["state"] == State.RENDERING
    assert pipeline.record(request_id).status == "in_progress"


def test_record_dead_letter_fails_the_request_with_the_reason(
    app: App, pipeline: Pipeline, render_request
) -> None:
    dead_letter = app("record_dead_letter")
    request = render_request()
    event = pubsub_cloud_event(
        pipeline,
        request,
        topic="render-requests-dead-letter",
        attributes={"CloudPubSubDeadLetterSourceDeliveryCount": "5"},
    )

    assert send(dead_letter, event).status_code == 200

    record = pipeline.record(request["request_id"])
    assert record.state == State.FAILED and record.error["code"] == "dead_lettered"
    assert "5 delivery attempts" in record.error["message"]


def test_reconcile_tasks_acknowledges_a_scheduler_tick(app: App, pipeline: Pipeline) -> None:
    reconcile = app("reconcile_tasks")

    assert send(reconcile, pubsub_cloud_event(pipeline, {}, topic="reconcile")).status_code == 200


def test_postprocess_render_makes_the_derivatives_of_a_finalized_render(
    app: App, pipeline: Pipeline
) -> None:
    postprocess = app("postprocess_render")
    request_id, task_id = submitted_record(pipeline)
    name = f"render/demo_collection/{task_id}/render.png"
    image = io.BytesIO()
    Image.new("RGBA", (300, 200), (200, 40, 40, 255)).save(image, "PNG")
    blob = pipeline.storage.bucket(pipeline.renders_bucket).blob(name)
    blob.upload_from_string(image.getvalue(), content_type="image/png")
    event = CloudEvent(
        {
            "id": uuid.uuid4().hex,
            "type": "google.cloud.storage.object.v1.finalized",
            "source": f"//storage.googleapis.com/projects/_/buckets/{pipeline.renders_bucket}",
            "subject": f"objects/{name}",
        },
        {
            "bucket": pipeline.renders_bucket,
            "name": name,
            "generation": str(blob.generation),
            "size": str(blob.size),
            "contentType": "image/png",
        },
    )

    assert send(postprocess, event).status_code == 200

    record = pipeline.record(request_id)
    assert [file["path"] for file in record.files] == [name]
    assert {(d["role"], d["width"]) for d in record.derivatives} >= {("thumbnail", 256)}


def test_a_missing_variable_stops_the_app_at_creation_naming_it(
    app: App, pipeline: Pipeline
) -> None:
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET"):
        app("submit_task", WEBHOOK_SECRET="")


def test_two_apps_in_one_process_keep_their_own_settings(
    app: App, pipeline: Pipeline, render_request
) -> None:
    other_collection = f"other-{uuid.uuid4().hex[:8]}"
    ours, theirs = app("submit_task"), app("submit_task", TASKS_COLLECTION=other_collection)
    first, second = render_request(), render_request()

    assert send(ours, pubsub_cloud_event(pipeline, first)).status_code == 200
    assert send(theirs, pubsub_cloud_event(pipeline, second)).status_code == 200

    assert pipeline.store.get(first["request_id"]) is not None
    assert pipeline.store.get(second["request_id"]) is None
    other = pipeline.firestore.collection(other_collection).document(second["request_id"]).get()
    assert other.exists and other.get("state") == State.SUBMITTED
