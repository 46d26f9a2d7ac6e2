"""ingest_webhook and reconcile_tasks under functions-framework, with the emulators and SRP."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srp_bundle.task_state import (
    DerivativesReady,
    State,
)

from concurrency_scenarios import (
    callback_body,
    callback_burst,
    post_callback,
    srp_wrote_render,
    submitted_record,
    utc_timestamp,
)

pytestmark = pytest.mark.integration
NO_CONFIRM = {"CONFIRM_TERMINAL_STATUS": "false"}


def _post(pipeline, webhook, request_id: str, body, **kwargs):
    return post_callback(pipeline, webhook.url, request_id, body, **kwargs)


def _snapshot(pipeline, request_id: str) -> tuple[dict, list]:
    record = pipeline.record(request_id).to_document()
    record.pop("updated_at")
    return record, pipeline.store.event_log(request_id)


def test_a_callback_advances_the_record_and_is_logged_once(pipeline) -> None:
    webhook = pipeline.function("ingest_webhook", **NO_CONFIRM)
    request_id, task_id = submitted_record(pipeline)
    body = callback_body("in_progress", task_id)

    first = _post(pipeline, webhook, request_id, body)
    again = _post(pipeline, webhook, request_id, body)

    assert first.status_code == 200 and first.json()["changed"] is True
    assert again.status_code == 200 and again.json()["changed"] is False
    record = pipeline.record(request_id)
    assert (record.state, record.status) == (State.RENDERING, "in_progress")
    callbacks = [e for e in pipeline.store.event_log(request_id) if e["kind"] == "callback"]
    assert len(callbacks) == 1 and callbacks[0]["payload"] == body
    assert pipeline.events.wait_for(request_id, "task.status_changed")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing token", 401),
        ("forged token", 401),
        ("token of another request", 401),
        ("token from an unknown secret", 401),
        ("wrong method", 405),
        ("not json", 400),
        ("wrong types", 400),
        ("missing task_id", 400),
        ("task_id not a uuid", 400),
        ("status longer than 64", 400),
        ("bad timestamp", 400),
        ("oversized", 400),
        ("path traversal", 400),
        ("absolute path", 400),
        ("url path", 400),
        ("outside render/", 400),
        ("done without files", 400),
    ],
)
def test_bad_callbacks_get_the_right_4xx_and_write_nothing(pipeline, case, expected) -> None:
    webhook = pipeline.function("ingest_webhook")
    request_id, task_id = submitted_record(pipeline)
    before = _snapshot(pipeline, request_id)
    body: object = callback_body("in_progress", task_id)
    token: str | None = "auto"
    method = "POST"
    if case == "missing token":
        token = None
    elif case == "forged token":
        token = "v1." + "0" * 64
    elif case == "token of another request":
        token = pipeline.callback_token("someone-else")
    elif case == "token from an unknown secret":
        token = pipeline.callback_token(request_id, secret="not-our-secret-at-all")
    elif case == "wrong method":
        method = "PUT"
    elif case == "not json":
        body = b"{status: done"
    elif case == "wrong types":
        body = {"status": 3, "task_id": task_id, "timestamp": utc_timestamp()}
    elif case == "missing task_id":
        body = {"status": "in_progress", "timestamp": utc_timestamp()}
    elif case == "task_id not a uuid":
        body = callback_body("in_progress", "../" + "x" * 3000)
    elif case == "status longer than 64":
        body = callback_body("in_progress" + "x" * 54, task_id)
    elif case == "bad timestamp":
        body = {**callback_body("in_progress", task_id), "timestamp": "yesterday"}
    elif case == "oversized":
        body = {**callback_body("in_progress", task_id), "padding": "x" * 70_000}
    elif case == "path traversal":
        body = callback_body("done", task_id, output_files=["render/c/../../secrets/key.png"])
    elif case == "absolute path":
        body = callback_body("done", task_id, output_files=["/render/c/t/render.png"])
    elif case == "url path":
        body = callback_body("done", task_id, output_files=["render://evil/x.png"])
    elif case == "outside render/":
        body = callback_body("done", task_id, output_files=["derivatives/c/t/512.webp"])
    elif case == "done without files":
        body = callback_body("done", task_id, output_files=[])

    response = _post(pipeline, webhook, request_id, body, token=token, method=method)

    assert response.status_code == expected, response.text
    if expected == 400:
        assert response.json()["error"]  # the reason
    assert _snapshot(pipeline, request_id) == before


def test_a_forged_done_is_not_accepted_until_srp_confirms_it(pipeline, render_request) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    pipeline.srp.control.pause()  # the real task stays `new` in SRP
    request = render_request()
    assert pipeline.deliver(submit, request).status_code == 200
    record = pipeline.record(request["request_id"])
    webhook = pipeline.function("ingest_webhook")

    response = _post(
        pipeline, webhook, request["request_id"], callback_body("done", record.task_id)
    )

    assert response.status_code == 200
    assert pipeline.record(request["request_id"]).state == State.SUBMITTED  # SRP says `new`
    pipeline.srp.control.resume()
    assert pipeline.wait_for_state(request["request_id"], "rendered", "completed")


def test_a_callback_for_a_task_srp_does_not_know_changes_nothing(pipeline) -> None:
    webhook = pipeline.function("ingest_webhook", **NO_CONFIRM)
    request_id, _ = submitted_record(pipeline)
    before = _snapshot(pipeline, request_id)
    other = str(uuid.uuid4())

    response = _post(pipeline, webhook, request_id, callback_body("done", other))

    # Only a task SRP confirms as this request's can become its task or a duplicate.
    assert response.status_code == 422
    assert _snapshot(pipeline, request_id) == before
    assert pipeline.record(request_id).duplicate_task_ids == []


def test_rotation_accepts_the_previous_secret(pipeline) -> None:
    previous = "the-previous-webhook-secret"
    webhook = pipeline.function("ingest_webhook", WEBHOOK_SECRET_PREVIOUS=previous, **NO_CONFIRM)
    request_id, task_id = submitted_record(pipeline)
    old_token = pipeline.callback_token(request_id, secret=previous)

    response = _post(
        pipeline, webhook, request_id, callback_body("in_progress", task_id), token=old_token
    )

    assert response.status_code == 200
    assert pipeline.record(request_id).state == State.RENDERING


_STEPS = ["new", "in_progress", "done", "derivatives"]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(_STEPS)
    .flatmap(
        lambda order: st.lists(st.sampled_from(order), max_size=3).map(lambda dup: order + dup)
    )
    .flatmap(st.permutations)
)
def test_every_ordering_with_duplicates_ends_in_the_same_record_and_events(pipeline, order) -> None:
    webhook = pipeline.function("ingest_webhook", **NO_CONFIRM)
    request_id, task_id = submitted_record(pipeline)
    srp_wrote_render(pipeline, task_id)  # the done request's files come from its folder
    bodies = {status: callback_body(status, task_id) for status in _STEPS[:3]}
    logged: set[str] = set()  # a callback for a final record is answered, never written
    for step in order:
        if step != "derivatives" and not pipeline.record(request_id).is_terminal:
            logged.add(json.dumps(bodies[step]))
        if step == "derivatives":
            pipeline.apply(
                request_id,
                DerivativesReady(
                    f"render/demo_collection/{task_id}/render.png",
                    1,
                    ({"path": f"derivatives/{task_id}/512.webp", "width": 512},),
                ),
            )
        else:
            assert _post(pipeline, webhook, request_id, bodies[step]).status_code == 200

    record = pipeline.record(request_id)
    assert record.state == State.COMPLETED
    assert record.status == "done"
    assert record.output_files == [f"render/demo_collection/{task_id}/render.png"]
    assert pipeline.unpublished_events(request_id) == []
    pipeline.events.wait_for(request_id, "render.completed")
    pipeline.events.settle(0.3)
    assert pipeline.events.types(request_id).count("render.completed") == 1
    callbacks = [e for e in pipeline.store.event_log(request_id) if e["kind"] == "callback"]
    assert len(callbacks) == len(logged)


def test_a_burst_of_200_concurrent_callbacks_for_50_tasks_leaves_every_record_consistent(
    pipeline,
) -> None:
    rendered_events = callback_burst(pipeline, tasks=50, per_task=4)

    assert set(rendered_events.values()) == {1}
    for request_id in rendered_events:
        record = pipeline.record(request_id)
        assert (record.state, record.status) == (State.RENDERED, "done")
        assert record.output_files == [f"render/demo_collection/{record.task_id}/render.png"]
        assert pipeline.unpublished_events(request_id) == []


def test_reconcile_brings_every_task_to_its_final_state_when_callbacks_are_dropped(
    pipeline, render_request
) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    reconcile = pipeline.function("reconcile_tasks", STALE_AFTER_SECONDS="1")
    pipeline.srp.control.set_faults(srp_cb_drop_rate=1.0, srp_render_fails_rate=0.3, seed=3)
    requests = [render_request() for _ in range(8)]
    for request in requests:
        assert pipeline.deliver(submit, request).status_code == 200
    _wait_until_srp_finished(pipeline, 8)
    for request in requests:
        assert pipeline.record(request["request_id"]).state == State.SUBMITTED

    final = {}
    for _ in range(30):
        time.sleep(1.1)
        assert pipeline.deliver(reconcile, {}, topic="reconcile").status_code == 200
        final = {r["request_id"]: pipeline.record(r["request_id"]) for r in requests}
        if all(rec.state in (State.RENDERED, State.FAILED) for rec in final.values()):
            break

    srp_status = {t["id"]: t["status"] for t in pipeline.srp_tasks()}
    for record in final.values():
        expected = State.RENDERED if srp_status[record.task_id] == "done" else State.FAILED
        assert record.state == expected, record
        if expected == State.RENDERED:
            # SRP's GET does not list the files: the task's render folder does.
            folder = pipeline.storage.bucket(pipeline.renders_bucket).list_blobs(
                prefix=f"render/demo_collection/{record.task_id}/"
            )
            written = sorted(blob.name for blob in folder)
            assert written and record.output_files == written
        else:
            assert record.error["code"] == "srp_render_failed"
    assert {State.RENDERED, State.FAILED} == {r.state for r in final.values()}
    assert "reconcile run" in "\n".join(reconcile.output)


def _wait_until_srp_finished(pipeline, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [t["status"] for t in pipeline.srp_tasks()]
        if len(statuses) >= count and all(s in ("done", "failed") for s in statuses):
            return
        time.sleep(0.2)
    raise TimeoutError("SRP did not finish its tasks")


def test_reconcile_redrives_a_request_stuck_before_submission_and_fails_an_expired_one(
    pipeline, render_request
) -> None:
    from datetime import timedelta

    from srp_bundle.task_state import TaskRecord, utc_now

    pipeline.function("ingest_webhook")
    reconcile = pipeline.function("reconcile_tasks", STALE_AFTER_SECONDS="1")
    long_ago = utc_now() - timedelta(days=3)
    stuck, expired = render_request(), render_request()
    # As a submit_task instance that died after claiming the record would leave them.
    for request, created_at in ((stuck, utc_now()), (expired, long_ago)):
        pipeline.store.create(
            TaskRecord(
                request_id=request["request_id"],
                collection_id=request["collection_id"],
                input_data_json=json.dumps(request["input_data"]),
                lease_owner="a-dead-instance",
                lease_expires_at=utc_now() - timedelta(seconds=1),
                created_at=created_at,
                updated_at=created_at,
            )
        )
    time.sleep(1.1)

    assert pipeline.deliver(reconcile, {}, topic="reconcile").status_code == 200

    redriven = pipeline.record(stuck["request_id"])
    assert redriven.task_id is not None and redriven.state != State.FAILED
    assert pipeline.srp_task(redriven.task_id)["input_data"] == stuck["input_data"]
    failed = pipeline.record(expired["request_id"])
    assert failed.state == State.FAILED and failed.error["code"] == "request_expired"


def test_events_of_an_invocation_that_died_after_its_commit_are_published_by_reconcile(
    pipeline,
) -> None:
    from datetime import timedelta

    from srp_bundle.reconciliation import Reconciler
    from srp_bundle.settings import load_settings
    from srp_bundle.srp_client import SrpClient
    from srp_bundle.submission import Submitter
    from srp_bundle.task_state import SrpStatusReported

    request_id, task_id = submitted_record(pipeline)
    # The change commits (with its events in the outbox), then the "invocation" dies.
    pipeline.store.apply(request_id, SrpStatusReported(task_id, "in_progress"))
    assert [e["type"] for e in pipeline.unpublished_events(request_id)] == ["task.status_changed"]

    settings = load_settings("reconcile_tasks", pipeline.env())
    with SrpClient.from_settings(settings) as srp:
        submitter = Submitter(settings, pipeline.store, srp, pipeline.events_publisher)
        reconciler = Reconciler(
            settings,
            submitter,
            outbox_grace=timedelta(0),
        )
        counts = reconciler.run()

    assert counts["events_republished"] >= 1
    assert pipeline.events.wait_for(request_id, "task.status_changed")
    assert pipeline.unpublished_events(request_id) == []
