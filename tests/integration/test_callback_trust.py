"""Issue 21, items 2-4: a callback cannot choose a task's files, drive SRP look-ups, or
borrow a producer's URL as proof; tokens are bound to the deployment and revocable.

The webhook's use case runs against the real Firestore and Cloud Storage emulators; SRP
is the scripted HTTP fake of `scripted_srp` (it counts GETs and can list files).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from scripted_srp import ScriptedSrp

from srp_bundle.callback_auth import (
    CallbackSigner,
    deployment_scope,
    legacy_callback_token,
)
from srp_bundle.callbacks import CallbackIngestor, Reply, revoke_callback_tokens
from srp_bundle.errors import SrpConnectionError
from srp_bundle.reconciliation import Reconciler
from srp_bundle.render_listing import RenderFolder
from srp_bundle.settings import load_settings
from srp_bundle.submission import Submitter
from srp_bundle.task_state import DerivativesReady, State, TaskRecord, TaskSubmitted
from srp_bundle.trigger_events import PubsubMessage

from conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.integration
TIMESTAMP = "2026-11-30T12:00:00.000Z"


def _message(body: dict[str, Any]) -> PubsubMessage:
    return PubsubMessage(message_id=f"m-{uuid.uuid4().hex[:8]}", data=json.dumps(body).encode())


def _folder(pipeline: Any, settings: Any) -> RenderFolder:
    return RenderFolder(
        lambda: pipeline.storage, pipeline.renders_bucket, settings.render_path_pattern
    )


def _ingestor(pipeline: Any, srp: ScriptedSrp, **env: str) -> CallbackIngestor:
    settings = load_settings("ingest_webhook", pipeline.env(**env))
    client = srp.client()
    return CallbackIngestor(
        settings,
        pipeline.store,
        lambda: client,
        pipeline.events_publisher,
        render_folder=_folder(pipeline, settings),
    )


def _submitted(pipeline: Any, render_request: Any, srp: ScriptedSrp) -> tuple[str, str]:
    settings = load_settings("submit_task", pipeline.env())
    submitter = Submitter(settings, pipeline.store, srp.client(), pipeline.events_publisher)
    request = render_request()
    result = submitter.submit(_message(request))
    assert result.record is not None and result.record.task_id is not None
    return request["request_id"], result.record.task_id


def _token(ingestor: CallbackIngestor, request_id: str) -> str:
    record = ingestor.store.get(request_id)
    assert record is not None and record.callback_nonce is not None
    return ingestor.signer.token(request_id, record.callback_nonce)


def _call(
    ingestor: CallbackIngestor,
    request_id: str,
    status: str,
    task_id: str,
    files: list[str] | None = None,
    token: str | None = None,
) -> Reply:
    body: dict[str, Any] = {"status": status, "task_id": task_id, "timestamp": TIMESTAMP}
    if files is not None:
        body["output_files"] = files
    token = token if token is not None else _token(ingestor, request_id)
    return ingestor.ingest("POST", request_id, token, json.dumps(body).encode())


def _write(pipeline: Any, path: str) -> None:
    blob = pipeline.storage.bucket(pipeline.renders_bucket).blob(path)
    blob.upload_from_string(b"\x89PNG\r\n\x1a\n", content_type="image/png")


def _snapshot(pipeline: Any, request_id: str) -> tuple[dict[str, Any], list[Any]]:
    return pipeline.record(request_id).to_document(), pipeline.store.event_log(request_id)


# ---- item 2: the files a request completes on ------------------------------------------


def test_a_done_callback_listing_part_of_the_render_does_not_complete_early(
    pipeline, render_request, caplog
) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)
    folder = f"render/sample/{task_id}/"
    for name in ("render.png", "turntable.mp4"):
        _write(pipeline, folder + name)
    srp.get_status[task_id] = "done"
    ingestor = _ingestor(pipeline, srp)

    with caplog.at_level(logging.WARNING):
        # A token holder lists one file that exists and one that does not.
        reply = _call(
            ingestor, request_id, "done", task_id, [folder + "render.png", folder + "ghost.png"]
        )

    assert reply.status_code == 200, reply.body
    record = pipeline.record(request_id)
    # Fails without the fix: the body's list became the record's.
    assert record.output_files == [folder + "render.png", folder + "turntable.mp4"]
    assert "ghost.png" in caplog.text and "not trusted" in caplog.text
    # The first file post-processed does not complete the request: the video is missing.
    pipeline.apply(request_id, DerivativesReady(folder + "render.png", 1, ()))
    assert pipeline.record(request_id).state == State.RENDERED


def test_srp_listing_output_files_in_its_answer_is_what_counts(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)
    folder = f"render/sample/{task_id}/"
    srp.get_status[task_id] = "done"
    srp.get_output_files[task_id] = [folder + "scene.glb"]
    _write(pipeline, folder + "other.png")  # the answer wins over the folder

    reply = _call(_ingestor(pipeline, srp), request_id, "done", task_id, [folder + "x.png"])

    assert reply.status_code == 200
    assert pipeline.record(request_id).output_files == [folder + "scene.glb"]


def test_reconciles_done_lists_the_folder_so_the_first_file_does_not_complete(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)
    folder = f"render/sample/{task_id}/"
    for name in ("render.png", "render.mp4"):
        _write(pipeline, folder + name)
    srp.get_status[task_id] = "done"  # the done callback was lost
    settings = load_settings("reconcile_tasks", pipeline.env(STALE_AFTER_SECONDS="1"))
    client = srp.client()
    submitter = Submitter(settings, pipeline.store, client, pipeline.events_publisher)
    reconciler = Reconciler(
        settings,
        submitter,
        render_folder=_folder(pipeline, settings),
        clock=lambda: pipeline.record(request_id).updated_at + _seconds(5),
    )

    reconciler.run()

    record = pipeline.record(request_id)
    assert record.state == State.RENDERED
    assert record.output_files == [folder + "render.mp4", folder + "render.png"]
    pipeline.apply(request_id, DerivativesReady(folder + "render.png", 1, ()))
    # Fails without the fix: the poll's done had no list, and the first file completed it.
    assert pipeline.record(request_id).state == State.RENDERED
    pipeline.apply(request_id, DerivativesReady(folder + "render.mp4", 1, ()))
    assert pipeline.record(request_id).state == State.COMPLETED


def _seconds(count: int) -> Any:
    from datetime import timedelta

    return timedelta(seconds=count)


# ---- item 2: tokens bound to the deployment, revocable per request ---------------------


def test_a_token_from_another_deployment_with_the_same_secret_is_a_401(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)
    ingestor = _ingestor(pipeline, srp)
    nonce = pipeline.record(request_id).callback_nonce
    before = _snapshot(pipeline, request_id)
    for scope in (
        deployment_scope("dev-project", pipeline.tasks_collection),
        deployment_scope(pipeline.project_id, "dev_tasks"),
    ):
        dev_token = CallbackSigner(scope, (WEBHOOK_SECRET,)).token(request_id, nonce)
        reply = _call(ingestor, request_id, "in_progress", task_id, token=dev_token)
        assert reply.status_code == 401
    assert _snapshot(pipeline, request_id) == before
    assert _call(ingestor, request_id, "in_progress", task_id).status_code == 200


def test_revoking_a_requests_tokens_refuses_them_and_writes_nothing(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)
    ingestor = _ingestor(pipeline, srp)
    leaked = _token(ingestor, request_id)
    assert _call(ingestor, request_id, "in_progress", task_id, token=leaked).status_code == 200

    assert revoke_callback_tokens(pipeline.store, request_id)
    before = _snapshot(pipeline, request_id)

    reply = _call(ingestor, request_id, "failed", task_id, token=leaked)
    assert reply.status_code == 401
    assert _snapshot(pipeline, request_id) == before
    assert _call(ingestor, request_id, "in_progress", task_id).status_code == 200  # new token
    assert not revoke_callback_tokens(pipeline.store, "no-such-request")


def test_rotation_accepts_the_previous_secret_with_the_records_nonce(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)  # made with WEBHOOK_SECRET
    token = _token(_ingestor(pipeline, srp), request_id)
    rotated = _ingestor(
        pipeline,
        srp,
        WEBHOOK_SECRET="a-brand-new-webhook-secret",
        WEBHOOK_SECRET_PREVIOUS=WEBHOOK_SECRET,
    )

    assert _call(rotated, request_id, "in_progress", task_id, token=token).status_code == 200
    not_rotated = _ingestor(pipeline, srp, WEBHOOK_SECRET="a-brand-new-webhook-secret")
    assert _call(not_rotated, request_id, "in_progress", task_id, token=token).status_code == 401


def test_a_record_older_than_nonces_accepts_its_v1_token_and_gets_a_nonce_at_its_next_post(
    pipeline, render_request
) -> None:
    srp = ScriptedSrp()
    request = render_request()
    request_id = request["request_id"]
    pipeline.store.create(
        TaskRecord(
            request_id=request_id,
            collection_id=request["collection_id"],
            input_data_json=json.dumps(request["input_data"]),
        )
    )
    pipeline.apply(request_id, TaskSubmitted(str(uuid.uuid4()), "new"))
    old = pipeline.record(request_id)
    assert old.callback_nonce is None and old.task_id is not None
    ingestor = _ingestor(pipeline, srp)
    v1 = legacy_callback_token(WEBHOOK_SECRET, request_id)
    assert _call(ingestor, request_id, "in_progress", old.task_id, token=v1).status_code == 200

    # A record that has not been posted yet is given a nonce before its POST.
    fresh = render_request()
    pipeline.store.create(
        TaskRecord(
            request_id=fresh["request_id"],
            collection_id=fresh["collection_id"],
            input_data_json=json.dumps(fresh["input_data"]),
        )
    )
    settings = load_settings("reconcile_tasks", pipeline.env())
    submitter = Submitter(settings, pipeline.store, srp.client(), pipeline.events_publisher)
    submitter.resubmit(pipeline.record(fresh["request_id"]))
    record = pipeline.record(fresh["request_id"])
    assert record.callback_nonce is not None and record.task_id is not None
    (posted,) = [json.loads(raw) for raw in srp.raw_posts[-1:]]
    header = posted["render_options"]["callback_urls"][0]["headers"]
    assert next(iter(header.values())) == ingestor.signer.token(
        fresh["request_id"], record.callback_nonce
    )
    v1_fresh = legacy_callback_token(WEBHOOK_SECRET, fresh["request_id"])
    assert _call(ingestor, fresh["request_id"], "in_progress", record.task_id, token=v1_fresh) == (
        Reply(401, {"error": "missing or invalid callback token"})
    )


# ---- item 3: bounded SRP look-ups ---------------------------------------------------------


def test_a_final_record_costs_no_srp_look_up_and_no_write(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    request_id, task_id = _submitted(pipeline, render_request, srp)
    ingestor = _ingestor(pipeline, srp)
    srp.get_status[task_id] = "failed"
    assert _call(ingestor, request_id, "failed", task_id).status_code == 200
    assert pipeline.record(request_id).state == State.FAILED
    srp.gets.clear()
    before = pipeline.record(request_id).to_document()

    for _ in range(5):
        reply = _call(ingestor, request_id, "in_progress", str(uuid.uuid4()))
        assert reply.status_code == 200 and "request is failed" in reply.body["ignored"]
    reply = _call(ingestor, request_id, "failed", task_id)  # its own task, a terminal status
    assert reply.status_code == 200 and reply.body["changed"] is False

    # Fails without the fix: every callback naming another task cost a GET.
    assert srp.gets == []
    assert pipeline.record(request_id).to_document() == before


def test_look_ups_per_request_per_hour_are_bounded_then_429(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    request_id, _ = _submitted(pipeline, render_request, srp)
    ingestor = _ingestor(pipeline, srp, WEBHOOK_SRP_LOOKUPS_PER_HOUR="3")
    before = _snapshot(pipeline, request_id)

    codes = [
        _call(ingestor, request_id, "in_progress", str(uuid.uuid4())).status_code for _ in range(6)
    ]

    # Fails without the fix: six random task ids cost six GETs with our API key.
    assert codes == [422, 422, 422, 429, 429, 429]
    assert len(srp.gets) == 3
    assert _snapshot(pipeline, request_id) == before  # the record never changes
    # Another request has its own budget.
    other_id, _ = _submitted(pipeline, render_request, srp)
    assert _call(ingestor, other_id, "in_progress", str(uuid.uuid4())).status_code == 422


def test_a_task_srp_refused_is_answered_again_without_asking(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    request_a, task_a = _submitted(pipeline, render_request, srp)
    _, task_b = _submitted(pipeline, render_request, srp)
    ingestor = _ingestor(pipeline, srp)
    unknown = str(uuid.uuid4())

    first = [_call(ingestor, request_a, "in_progress", unknown) for _ in range(3)]
    crossed = [_call(ingestor, request_a, "in_progress", task_b) for _ in range(3)]

    assert [r.status_code for r in first] == [422] * 3
    assert [r.status_code for r in crossed] == [200] * 3
    assert all("not posted for request" in r.body["ignored"] for r in crossed)
    # Fails without the fix: each repeat asked SRP again.
    assert srp.gets == [unknown, task_b]
    assert pipeline.record(request_a).task_id == task_a


# ---- item 4: only our own echoed callback proves a task is the request's ----------------


def test_a_producer_url_naming_the_request_is_no_proof(pipeline, render_request) -> None:
    srp = ScriptedSrp()
    settings = load_settings("submit_task", pipeline.env())
    submitter = Submitter(settings, pipeline.store, srp.client(), pipeline.events_publisher)
    victim = render_request()
    srp.post_script = ["srp_lost_answer"]  # the victim's POST answer is lost: no task yet
    with pytest.raises(SrpConnectionError):
        submitter.submit(_message(victim))
    srp.tasks.clear()  # ... and SRP never created it
    # Another producer's request carries a callback URL naming the victim's request.
    forged_url = f"https://producer.example.com/hook?request_id={victim['request_id']}"
    other = render_request(callback_urls=[forged_url])
    attacker_result = submitter.submit(_message(other))
    assert attacker_result.record is not None
    attackers_task = attacker_result.record.task_id
    assert attackers_task is not None
    # The attacker's request is removed from our records (it need not be ours at all).
    srp.tasks[attackers_task]["render_options"]["callback_urls"] = [forged_url]
    pipeline.store.records.document(other["request_id"]).delete()
    ingestor = _ingestor(pipeline, srp)
    before = _snapshot(pipeline, victim["request_id"])[0]

    reply = _call(ingestor, victim["request_id"], "in_progress", attackers_task)

    # Fails without the fix: the echo named the request, so the task was adopted.
    assert reply.status_code == 200 and "not posted for request" in reply.body["ignored"]
    assert pipeline.record(victim["request_id"]).to_document() == before
