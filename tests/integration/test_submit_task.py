"""submit_task under functions-framework, against the emulators and the SRP emulator."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from srp_bundle.task_state import State

from concurrency_scenarios import deliver_concurrently, srp_posts_for

pytestmark = pytest.mark.integration


def test_a_valid_request_gives_one_task_a_record_and_one_submitted_event(
    pipeline, render_request
) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    request = render_request(priority=70, metadata={"token_id": 42})

    response = pipeline.deliver(submit, request)

    assert response.status_code == 200, response.text
    record = pipeline.record(request["request_id"])
    assert record.task_id is not None
    assert record.state in (State.SUBMITTED, State.RENDERING, State.RENDERED, State.COMPLETED)
    assert record.metadata == {"token_id": 42}
    task = pipeline.srp_task(record.task_id)
    assert task["options"]["priority"] == 70
    ours = task["options"]["callback_urls"][0]
    assert ours["url"] == f"{pipeline.webhook_url}?request_id={request['request_id']}"
    assert set(ours["headers"]) == {"X-Srp-Callback-Token"}
    pipeline.events.wait_for(request["request_id"], "task.submitted")
    pipeline.events.settle(0.5)
    assert pipeline.events.types(request["request_id"]).count("task.submitted") == 1


def test_producer_callbacks_are_passed_on_beside_ours(pipeline, render_request) -> None:
    # Loopback http endpoints: accepted only under the local-development setting.
    submit = pipeline.function("submit_task", ALLOW_LOCAL_HTTP_CALLBACKS="true")
    producer = [
        "http://127.0.0.1:9/producer-a",
        {"url": "http://127.0.0.1:9/producer-b", "method": "post", "data": {"k": "v"}},
    ]
    request = render_request(callback_urls=producer)

    assert pipeline.deliver(submit, request).status_code == 200

    task = pipeline.srp_task(pipeline.record(request["request_id"]).task_id)
    assert task["options"]["callback_urls"][1:] == producer


def test_the_same_message_delivered_20_times_concurrently_posts_once(
    pipeline, render_request
) -> None:
    request = render_request()

    assert deliver_concurrently(pipeline, request, copies=20) == 1

    record = pipeline.record(request["request_id"])
    assert record.task_id is not None and record.duplicate_task_ids == []


def test_republished_with_the_same_request_id_submits_nothing_new(pipeline, render_request) -> None:
    submit = pipeline.function("submit_task")
    request = render_request()
    assert pipeline.deliver(submit, request).status_code == 200
    task_id = pipeline.record(request["request_id"]).task_id

    assert pipeline.deliver(submit, request).status_code == 200  # a new message id

    assert srp_posts_for(pipeline, request["request_id"]) == 1
    assert pipeline.record(request["request_id"]).task_id == task_id


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"{not json", "invalid_message", "not JSON"),
        ({"input_data": {}}, "invalid_message", "collection_id"),
        ({"collection_id": "not-a-uuid", "input_data": {}}, "invalid_message", "UUID"),
        (
            {"collection_id": "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01", "input_data": "x"},
            "invalid_message",
            "input_data",
        ),
        (
            {"collection_id": "00000000-0000-4000-8000-000000000000", "input_data": {}},
            "srp_validation",
            "collection",
        ),
        (
            {"collection_id": "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01", "input_data": {"x": 1}},
            "srp_validation",
            "no trait or colour named 'x'",
        ),
    ],
)
def test_each_class_of_invalid_message_is_failed_and_acknowledged(
    pipeline, body, code: str, reason: str
) -> None:
    submit = pipeline.function("submit_task")
    message_id = f"bad-{abs(hash((str(body), code)))}-{threading.get_ident()}"
    message_id += pipeline.tasks_collection

    response = pipeline.deliver(submit, body, message_id=message_id)

    assert response.status_code == 200  # acknowledged: no retry loop
    record = pipeline.record(message_id)
    assert record.state == State.FAILED
    assert record.error is not None and record.error["code"] == code
    assert reason, "an empty reason would match any message"
    assert reason.lower() in record.error["message"].lower()
    assert pipeline.events.wait_for(message_id, "task.failed") == ["task.failed"]
    submit_log = "\n".join(submit.output)
    assert message_id in submit_log and '"severity":"WARNING"' in submit_log


def test_an_invalid_message_never_touches_an_existing_record(pipeline, render_request) -> None:
    submit = pipeline.function("submit_task")
    request = render_request()
    assert pipeline.deliver(submit, request).status_code == 200
    broken = {**request, "priority": "urgent"}

    assert pipeline.deliver(submit, broken).status_code == 200

    assert pipeline.record(request["request_id"]).state != State.FAILED


def test_srp_429_is_retried_and_the_redelivery_makes_one_task(pipeline, render_request) -> None:
    submit = pipeline.function("submit_task")
    request = render_request()
    pipeline.srp.control.set_faults(srp_post_429_rate=1.0)

    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    assert pipeline.record(request["request_id"]).state == State.RECEIVED

    pipeline.srp.control.set_faults()
    response = pipeline.deliver(submit, request, message_id=request["request_id"])

    assert response.status_code == 200
    record = pipeline.record(request["request_id"])
    assert record.task_id is not None and record.unconfirmed_submissions == 0
    assert len(pipeline.srp_tasks()) == 1


def test_srp_5xx_is_retried_only_after_the_wait_for_a_task_it_may_have_created(
    pipeline, render_request
) -> None:
    submit = pipeline.function("submit_task", AMBIGUOUS_SUBMIT_WAIT_SECONDS="1")
    request = render_request()
    pipeline.srp.control.set_faults(srp_post_error_rate=1.0)
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    pipeline.srp.control.set_faults()

    # A 5xx may come after SRP created the task: within the wait nothing is posted again.
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    assert pipeline.srp_tasks() == []
    assert pipeline.record(request["request_id"]).unconfirmed_submissions == 1
    time.sleep(1.2)  # past AMBIGUOUS_SUBMIT_WAIT_SECONDS; no callback named a task
    response = pipeline.deliver(submit, request, message_id=request["request_id"])

    assert response.status_code == 200
    assert pipeline.record(request["request_id"]).task_id is not None
    assert len(pipeline.srp_tasks()) == 1


def test_a_lost_post_answer_never_becomes_an_unnoticed_duplicate(pipeline, render_request) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task", AMBIGUOUS_SUBMIT_WAIT_SECONDS="1")
    request = render_request()
    pipeline.srp.control.set_faults(srp_lost_answer_rate=1.0)

    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    pipeline.srp.control.set_faults()

    # SRP's callbacks name the request: the task created by the lost POST gets attached.
    record = pipeline.wait_for_state(request["request_id"], "completed", "rendered", "rendering")
    created = pipeline.srp_tasks()
    assert len(created) == 1 and record.task_id == created[0]["id"]
    assert record.unconfirmed_submissions == 0  # SRP named the lost POST's task
    # A redelivery finds the attached task and posts nothing.
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 200
    assert len(pipeline.srp_tasks()) == 1


def test_a_lost_post_answer_without_callbacks_reposts_and_records_any_duplicate(
    pipeline, render_request
) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task", AMBIGUOUS_SUBMIT_WAIT_SECONDS="1")
    request = render_request()
    pipeline.srp.control.pause()  # the first task stays silent: no callback names it yet
    pipeline.srp.control.set_faults(srp_lost_answer_rate=1.0)
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    pipeline.srp.control.set_faults()

    # Within the wait, a redelivery does not post again.
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    assert len(pipeline.srp_tasks()) == 1
    import time

    time.sleep(1.2)
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 200
    pipeline.srp.control.resume()

    tasks = {task["id"] for task in pipeline.srp_tasks()}
    assert len(tasks) == 2  # the price of a lost answer: SRP rendered twice...
    record = pipeline.wait_for_state(request["request_id"], "completed", "rendered")
    # ...but exactly one is the request's task, and the other is on record as a duplicate.
    for _ in range(100):
        record = pipeline.record(request["request_id"])
        if record.duplicate_task_ids:
            break
        time.sleep(0.1)
    assert {record.task_id, *record.duplicate_task_ids} == tasks
    assert record.task_id not in record.duplicate_task_ids
    assert record.unconfirmed_submissions == 0


def test_a_request_older_than_the_maximum_age_is_failed(pipeline, render_request) -> None:
    submit = pipeline.function("submit_task", MAX_REQUEST_AGE_SECONDS="1")
    request = render_request()
    from local_stack.eventarc_events import pubsub_event

    headers, body = pubsub_event(
        project_id=pipeline.project_id,
        topic_id="render-requests",
        subscription_id="s",
        message_id=request["request_id"],
        data=json.dumps(request).encode(),
        publish_time=datetime.now(UTC) - timedelta(minutes=5),
    )
    response = pipeline.http.post(submit.url, headers=headers, content=body)

    assert response.status_code == 200
    record = pipeline.record(request["request_id"])
    assert record.state == State.FAILED and record.error["code"] == "request_expired"
    assert pipeline.srp_tasks() == []


def test_the_dead_letter_path_marks_the_request_failed_with_the_reason(
    pipeline, render_request
) -> None:
    submit = pipeline.function("submit_task")
    dead_letter = pipeline.function("record_dead_letter")
    request = render_request()
    pipeline.srp.control.set_faults(srp_post_error_rate=1.0)
    assert pipeline.deliver(submit, request).status_code == 500

    response = pipeline.deliver(
        dead_letter,
        request,
        attributes={"CloudPubSubDeadLetterSourceDeliveryCount": "5"},
        topic="render-requests-dead-letter",
    )

    assert response.status_code == 200
    record = pipeline.record(request["request_id"])
    assert record.state == State.FAILED
    assert record.error["code"] == "dead_lettered"
    assert "5 delivery attempts" in record.error["message"]
    assert "500" in record.error["message"] or "SRP" in record.error["message"]
    assert "task.failed" in pipeline.events.wait_for(request["request_id"], "task.failed")


def test_missing_configuration_stops_start_up_naming_the_variable(pipeline) -> None:
    from local_stack.functions import FunctionProcess
    from local_stack.processes import ProcessStartError

    env = pipeline.env()
    env.pop("WEBHOOK_SECRET")
    env["WEBHOOK_SECRET"] = ""
    with pytest.raises(ProcessStartError, match="WEBHOOK_SECRET"):
        FunctionProcess("submit_task", env).start()


def test_a_plain_pubsub_push_body_is_converted_and_submitted(pipeline, render_request) -> None:
    """Our own push subscription (Terraform) posts the raw push envelope, not a CloudEvent."""
    submit = pipeline.function("submit_task")
    request = render_request()
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(request).encode()).decode(),
            "messageId": "push-" + request["request_id"],
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "attributes": {"origin": "push"},
        },
        "subscription": f"projects/{pipeline.project_id}/subscriptions/render-requests-push",
        "deliveryAttempt": 2,
    }

    response = pipeline.http.post(submit.url, json=envelope)

    assert response.status_code == 200, response.text
    record = pipeline.record(request["request_id"])
    assert record.task_id is not None
    assert srp_posts_for(pipeline, request["request_id"]) == 1


@pytest.fixture
def firestore_faults(firestore_emulator):
    """The local Firestore's commit faults, cleared after the test."""
    control = firestore_emulator.control
    yield control
    control.reset()


@pytest.mark.parametrize(
    "fault",
    [{"srp_create_then_error_rate": 1.0}, {"srp_create_then_hang_rate": 1.0}],
    ids=["srp_create_then_error", "srp_create_then_hang"],
)
def test_a_post_that_created_the_task_then_failed_is_never_posted_again(
    pipeline, render_request, fault
) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    request = render_request()
    pipeline.srp.control.pause()  # SRP stays silent until resumed: no callback names the task
    pipeline.srp.control.set_faults(**fault)

    # A 502/503/504 after SRP created the task, or the answer after the client's timeout.
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    pipeline.srp.control.set_faults()
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    assert len(pipeline.srp_tasks()) == 1  # the redelivery waited instead of posting
    assert pipeline.record(request["request_id"]).unconfirmed_submissions == 1

    pipeline.srp.control.release()
    pipeline.srp.control.resume()
    record = pipeline.wait_for_state(request["request_id"], "completed", "rendered")
    (task,) = pipeline.srp_tasks()
    assert record.task_id == task["id"] and record.duplicate_task_ids == []
    assert record.unconfirmed_submissions == 0


def test_a_lost_answer_to_the_write_after_the_post_never_posts_again(
    pipeline, render_request, firestore_faults
) -> None:
    submit = pipeline.function("submit_task")
    request = render_request()
    # Commit 1 takes the lease; commit 2 records SRP's answer: applied, its answer lost.
    firestore_faults.set_faults(
        path_pattern=f"^{pipeline.tasks_collection}/{request['request_id']}$",
        drop_answer_commits=[2],
        drop_answer_code="UNAVAILABLE",
    )

    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 500
    firestore_faults.reset()
    assert pipeline.deliver(submit, request, message_id=request["request_id"]).status_code == 200

    (task,) = pipeline.srp_tasks()
    record = pipeline.record(request["request_id"])
    assert record.task_id == task["id"] and record.unconfirmed_submissions == 0
