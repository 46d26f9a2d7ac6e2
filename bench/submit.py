"""submit_task: time per delivered message against the raw SRP POST, in the same run.

The SRP emulator's queue is paused, so a POST is answered and nothing renders or calls
back. Raw: one keep-alive `POST /api/v1/tasks` with the body submit_task sends (our
callback in the seed's dict form). Ours: one Pub/Sub CloudEvent delivered to submit_task
(decode, validate, create the record, claim the lease, the same POST, attach the task id,
publish task.submitted). The two alternate, one request at a time.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import httpx

from bench.common import (
    API_KEY,
    PROJECT_ID,
    SAMPLE_COLLECTION_ID,
    SAMPLE_INPUT,
    WEBHOOK_SECRET,
    Emulators,
    Row,
    Section,
    fresh_name,
    function_env,
    function_process,
    median,
)
from local_stack.emulators import GcsEmulator
from local_stack.eventarc_events import pubsub_event
from local_stack.srp_emulator import SrpEmulatorProcess

WARM_UP = 5


def _raw_body(request_id: str) -> bytes:
    from srp_bundle.callback_auth import CallbackSigner, deployment_scope, new_callback_nonce

    signer = CallbackSigner(deployment_scope("bench", "srp_tasks"), (WEBHOOK_SECRET,))
    callback = signer.callback("http://127.0.0.1:9/", request_id, new_callback_nonce())
    return json.dumps(
        {
            "collection_id": SAMPLE_COLLECTION_ID,
            "input_data": SAMPLE_INPUT,
            "render_options": {
                "callback_urls": [
                    {"url": callback.url, "method": callback.method, "headers": callback.headers}
                ]
            },
        }
    ).encode()


def run(emulators: Emulators, *, messages: int, log: Callable[[str], None]) -> Section:
    """Alternate raw POSTs and deliveries; overhead = median delivery - median raw POST."""
    section = Section("submit_task")
    emulators.start()
    topic = fresh_name("bench-events")
    emulators.create_topic(topic)
    renders_bucket = fresh_name("bench-renders")
    with (
        GcsEmulator() as gcs,
        SrpEmulatorProcess(
            renders_bucket=renders_bucket,
            api_keys=[API_KEY],
            env={**gcs.env, "GOOGLE_CLOUD_PROJECT": PROJECT_ID},
            render_size=64,
        ) as srp,
    ):
        srp.control.pause()
        env = function_env(emulators, EVENTS_TOPIC=topic, SRP_API_URL=srp.url, **gcs.env)
        with (
            function_process("submit_task", env) as submit,
            httpx.Client(timeout=60) as function_http,
            httpx.Client(
                base_url=srp.url,
                timeout=60,
                headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            ) as srp_http,
        ):
            raw: list[float] = []
            delivered: list[float] = []
            for attempt in range(messages + WARM_UP):
                request_id = f"bench-{uuid.uuid4().hex[:16]}"
                body = _raw_body(request_id)
                started = time.perf_counter()
                response = srp_http.post("/api/v1/tasks", content=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 201:
                    raise RuntimeError(f"SRP POST: {response.status_code} {response.text[:200]}")
                if attempt >= WARM_UP:
                    raw.append(elapsed)
                request = {
                    "collection_id": SAMPLE_COLLECTION_ID,
                    "input_data": SAMPLE_INPUT,
                    "request_id": f"bench-{uuid.uuid4().hex[:16]}",
                }
                headers, payload = pubsub_event(
                    project_id=PROJECT_ID,
                    topic_id="render-requests",
                    subscription_id="submit-task",
                    message_id=uuid.uuid4().hex,
                    data=json.dumps(request).encode(),
                )
                started = time.perf_counter()
                response = function_http.post(submit.url, headers=headers, content=payload)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"submit_task: {response.status_code} {response.text[:200]}")
                if attempt >= WARM_UP:
                    delivered.append(elapsed)
            posts = len(srp.control.requests(method="POST"))
    if posts != 2 * (messages + WARM_UP):
        raise RuntimeError(f"SRP saw {posts} POSTs, expected {2 * (messages + WARM_UP)}")
    ours, theirs = median(delivered) * 1000, median(raw) * 1000
    log(f"  submit_task: {ours:.1f} ms per message vs raw SRP POST {theirs:.1f} ms")
    section.rows += [
        Row("submit_task", "per message, delivery -> 2xx", ours, theirs, "ms", "raw SRP POST"),
        Row("submit_task", "overhead beyond the SRP round trip", ours - theirs, None, "ms"),
    ]
    section.notes.append(
        f"submit_task: {messages} messages after {WARM_UP} warm-up, one at a time, "
        "SRP emulator queue paused (no renders, no callbacks)"
    )
    return section
