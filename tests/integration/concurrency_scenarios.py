"""The bundle's concurrency scenarios, run on Firestore with and without our semantics layer."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from srp_bundle.callback_auth import TOKEN_HEADER, new_callback_nonce
from srp_bundle.task_state import TaskRecord, TaskSubmitted

from conftest import SAMPLE_COLLECTION_ID, Pipeline


def srp_posts_for(pipeline: Pipeline, request_id: str) -> int:
    """How many POSTs SRP received that carried this request's callback."""
    return sum(
        f"request_id={request_id}" in json.dumps(entry)
        for entry in pipeline.srp.control.requests(method="POST")
    )


def deliver_concurrently(pipeline: Pipeline, request: dict[str, Any], copies: int = 20) -> int:
    """Deliver one message `copies` times at once, then redeliver what asked for a retry.

    Returns the number of SRP POSTs made for the request (1 is right).
    """
    submit = pipeline.function("submit_task")
    message_id = f"msg-{request['request_id']}"
    start = threading.Barrier(copies)

    def deliver() -> int:
        start.wait()
        return pipeline.deliver(submit, request, message_id=message_id).status_code

    with ThreadPoolExecutor(copies) as pool:
        codes = list(pool.map(lambda _: deliver(), range(copies)))
    assert set(codes) <= {200, 500}, codes
    for _ in range(3):  # what Pub/Sub would redeliver
        assert pipeline.deliver(submit, request, message_id=message_id).status_code == 200
    return srp_posts_for(pipeline, request["request_id"])


def utc_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def submitted_record(pipeline: Pipeline, task_id: str | None = None) -> tuple[str, str]:
    """A record as submit_task leaves it: submitted, with SRP's task id."""
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    task_id = task_id or str(uuid.uuid4())
    pipeline.store.create(
        TaskRecord(
            request_id=request_id,
            collection_id=SAMPLE_COLLECTION_ID,
            callback_nonce=new_callback_nonce(),  # drawn before the POST, as submit_task does
        )
    )
    pipeline.apply(request_id, TaskSubmitted(task_id, "new"))
    return request_id, task_id


def srp_wrote_render(pipeline: Pipeline, task_id: str) -> str:
    """Write the task's render where SRP does before saying done; returns its path."""
    path = f"render/demo_collection/{task_id}/render.png"
    blob = pipeline.storage.bucket(pipeline.renders_bucket).blob(path)
    blob.upload_from_string(b"\x89PNG\r\n\x1a\n", content_type="image/png")
    return path


def callback_body(status: str, task_id: str, **extra: Any) -> dict[str, Any]:
    """A callback payload exactly as SRP sends it."""
    body = {"status": status, "task_id": task_id, "timestamp": utc_timestamp(), **extra}
    if status == "done" and "output_files" not in extra:
        body["output_files"] = [f"render/demo_collection/{task_id}/render.png"]
    return body


def post_callback(pipeline: Pipeline, url: str, request_id: str, body: Any, **kwargs: Any) -> Any:
    """POST a callback with our token (or `token=` / `method=` overrides)."""
    headers = {"Content-Type": "application/json"}
    token = kwargs.get("token", "auto")
    if token == "auto":
        token = pipeline.callback_token(request_id)
    if token is not None:
        headers[TOKEN_HEADER] = token
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return pipeline.http.request(
        kwargs.get("method", "POST"),
        f"{url}/?request_id={request_id}",
        headers=headers,
        content=content,
    )


def callback_burst(pipeline: Pipeline, tasks: int = 50, per_task: int = 4) -> dict[str, int]:
    """`tasks * per_task` concurrent callbacks (in_progress/done, each twice) for fresh tasks.

    Returns, per request, how many transitions into `rendered` were published (1 is right).
    """
    webhook = pipeline.function("ingest_webhook", CONFIRM_TERMINAL_STATUS="false")
    records = [submitted_record(pipeline) for _ in range(tasks)]
    for _, task_id in records:
        srp_wrote_render(pipeline, task_id)  # a done request's files come from its folder
    calls = [
        (request_id, callback_body(status, task_id))
        for request_id, task_id in records
        for status in (["in_progress", "done"] * per_task)[:per_task]
    ]
    with ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(lambda call: post_callback(pipeline, webhook.url, *call).status_code, calls)
        )
    assert codes == [200] * len(calls), codes
    for request_id, _ in records:
        pipeline.events.wait_for(request_id, "task.status_changed")
    pipeline.events.settle(1.0)
    return {
        request_id: sum(
            1
            for event in pipeline.events.by_request[request_id]
            if event["data"]["state"] == "rendered"
        )
        for request_id, _ in records
    }
