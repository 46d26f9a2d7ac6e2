"""One script of API calls against the three fakes of SRP; their answers must agree.

The SRP emulator is the reference (test_conformance.py holds it to the seed, field by field);
the simulator's SRP (sim/srp.py) and the integration tests' scripted SRP
(tests/integration/scripted_srp.py) must answer the same script with the same statuses, the
same body shapes, the values that must agree, and the same callbacks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from local_stack.srp_emulator import SAMPLE_COLLECTION_UID, SEED_EXAMPLE_INPUT, SrpEmulatorProcess
from local_stack.srp_emulator.callbacks import CallbackRequest
from sim.srp import Request, Srp
from sim.storage import Storage
from sim.world import Faults, World
from tests.integration.scripted_srp import API_KEY as SCRIPTED_KEY
from tests.integration.scripted_srp import ScriptedSrp

from srp_emulator_helpers import (
    API_KEY,
    CALLBACK_TIMESTAMP,
    COLLECTION_KEYS,
    CREATION_DATE,
    TASK_KEYS,
    CallbackReceiver,
)

TOKEN_HEADER = "X-Callback-Token"

# A fake as the script sees it: call(method, params, raw body, api key) -> (status, JSON),
# and render(task id) -> the callbacks SRP sent for the task until it was done.
Call = Callable[[str, dict[str, str], bytes, str | None], tuple[int, Any]]
Render = Callable[[str], list[CallbackRequest]]


def callback_urls(base: str) -> list[Any]:
    """Our request-bound callback in the dict form, then a producer's in the string form."""
    return [
        {
            "url": f"{base}/hook?request_id=r-1",
            "method": "put",
            "headers": {TOKEN_HEADER: "token-1"},
            "data": {"extra": "data", "status": "forged"},
        },
        f"{base}/producer/",
    ]


def run_script(call: Call, render: Render, key: str, base: str, name: str) -> list[Any]:
    """The script; every answer reduced to what all fakes must agree on."""
    urls = callback_urls(base)
    body = {
        "collection_id": SAMPLE_COLLECTION_UID,
        "input_data": SEED_EXAMPLE_INPUT,
        "render_options": {"callback_urls": urls},
    }
    transcript: list[Any] = []
    status, created = call("POST", {}, json.dumps(body).encode(), key)
    task_id = created["id"]
    transcript.append(("POST", status, task_view(created, urls)))
    status, task = call("GET", {"id": task_id}, b"", key)
    transcript.append(("GET", status, task_view(task, urls), task["id"] == task_id))
    status, missing = call("GET", {"id": str(uuid.uuid4())}, b"", key)
    transcript.append(("GET unknown", status, error_view(missing)))
    for method, params, raw in (
        ("POST", {}, json.dumps(body).encode()),
        ("GET", {"id": task_id}, b""),
    ):
        status, refused = call(method, params, raw, "wrong-key")
        transcript.append((f"{method} bad key", status, error_view(refused)))
    for raw in (b"not json", json.dumps({"input_data": {}}).encode(), b"[]"):
        status, refused = call("POST", {}, raw, key)
        transcript.append(("POST invalid", status, error_view(refused)))
    sent = [c for c in render(task_id) if c.body.get("status") in ("in_progress", "done")]
    transcript.append(("callbacks", sorted(callback_view(c, base, task_id, name) for c in sent)))
    status, done = call("GET", {"id": task_id}, b"", key)
    transcript.append(("GET done", status, task_view(done, urls)))
    return transcript


def task_view(task: dict[str, Any], urls: list[Any]) -> dict[str, Any]:
    """The task's shape and the values every fake must give alike."""
    return {
        "keys": sorted(task),
        "collection_keys": sorted(task["collection"]),
        "uid": task["collection"]["uid"],
        "creation_date": bool(CREATION_DATE.match(task["creation_date"])),
        "status": task["status"],
        "input_data": task["input_data"],
        "option_keys": sorted(task["options"]),
        "priority": task["options"]["priority"],
        "callback_urls_echoed": task["options"]["callback_urls"] == urls,
        "types": [type(task[key]).__name__ for key in sorted(TASK_KEYS & set(task))],
    }


def error_view(body: Any) -> bool:
    """An error body carries a readable `detail`."""
    return isinstance(body, dict) and isinstance(body.get("detail"), str) and bool(body["detail"])


def callback_view(sent: CallbackRequest, base: str, task_id: str, name: str) -> Any:
    """One callback: where, how, with which headers and body (the fake's URL base left out)."""
    body = sent.body
    parts = urlsplit(sent.url.removeprefix(base))
    return (
        sent.method,
        parts.path + (f"?{parts.query}" if parts.query else ""),
        sent.headers.get(TOKEN_HEADER),
        sent.headers.get("Content-Type"),
        sorted(body),
        body["status"],
        body["task_id"] == task_id,
        bool(CALLBACK_TIMESTAMP.match(body["timestamp"])),
        body.get("output_files") == [f"render/{name}/{task_id}/render.png"] or None,
        body.get("extra"),
    )


# ---- the three fakes ------------------------------------------------------------------------


def emulator_transcript(srp: SrpEmulatorProcess, receiver: CallbackReceiver) -> list[Any]:
    def call(method: str, params: dict[str, str], raw: bytes, key: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        response = httpx.request(
            method, f"{srp.url}/api/v1/tasks", params=params, content=raw, headers=headers
        )
        return response.status_code, response.json()

    def render(task_id: str) -> list[CallbackRequest]:
        srp.control.resume()
        receiver.wait_for(2, status="done")
        srp.control.wait_for_callbacks(count=2, task_id=task_id, status="done")
        return [
            CallbackRequest(
                entry["method"],
                entry["url"],
                entry["attempts"][0]["headers"],
                entry["attempts"][0]["body"],
            )
            for entry in srp.control.callbacks(task_id=task_id)
        ]

    srp.control.pause()  # the task stays `new` until the script renders it
    return run_script(call, render, API_KEY, receiver.url, "demo_collection")


def simulator_transcript() -> list[Any]:
    world = World(1, Faults({}))
    delivered: list[tuple[str, str, bytes]] = []

    def deliver(request_id: str, token: str, body: bytes, answered: Any) -> None:
        delivered.append((request_id, token, body))
        answered(200)

    srp = Srp(world, Storage(world), "renders", deliver, 10.0, api_key="sim-key")

    def call(method: str, params: dict[str, str], raw: bytes, key: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        response = srp._handle(Request(method, "/api/v1/tasks", params, raw, headers))
        return response.status_code, response.json()

    def render(task_id: str) -> list[CallbackRequest]:
        world.run_until(world.now_s + 7200)
        assert srp.tasks[task_id].status == "done"
        # What reached our webhook is the first target's callbacks, as sent.
        ours = [c for c in srp.callbacks_sent if "/hook?" in c.url]
        assert [json.loads(body) for _, _, body in delivered] == [c.body for c in ours]
        assert {(r, t) for r, t, _ in delivered} == {("r-1", "token-1")}
        return srp.callbacks_sent

    name = "col0"  # the simulator names collections in the order it meets them
    return run_script(call, render, "sim-key", "https://hooks.sim.invalid", name)


def scripted_transcript() -> list[Any]:
    srp = ScriptedSrp("demo_collection")
    callbacks: list[CallbackRequest] = []

    def call(method: str, params: dict[str, str], raw: bytes, key: str | None) -> tuple[int, Any]:
        request = httpx.Request(
            method,
            "https://srp.test/api/v1/tasks",
            params=params,
            content=raw,
            headers={"Authorization": f"Bearer {key}"},
        )
        response = srp.handle(request)
        return response.status_code, response.json()

    def render(task_id: str) -> list[CallbackRequest]:
        for status in ("in_progress", "done"):
            callbacks.extend(srp.advance(task_id, status))
        return callbacks

    return run_script(call, render, SCRIPTED_KEY, "https://hooks.test", "demo_collection")


@pytest.fixture
def reference(srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver) -> list[Any]:
    """The SRP emulator's answers to the script."""
    return emulator_transcript(srp, callback_receiver)


def test_the_emulator_answers_the_script_as_the_seed_says(reference: list[Any]) -> None:
    post, get, unknown, post_key, get_key, *invalid, callbacks, done = reference
    assert post[:2] == ("POST", 201) and get[:2] == ("GET", 200) and get[3] is True
    assert post[2]["keys"] == sorted(TASK_KEYS) and post[2]["collection_keys"] == sorted(
        COLLECTION_KEYS
    )
    assert post[2]["status"] == "new" and post[2]["callback_urls_echoed"] is True
    assert unknown[1:] == (404, True)
    assert post_key[1:] == get_key[1:] == (401, True)
    assert [answer[1:] for answer in invalid] == [(400, True)] * 3
    # in_progress and done, each to both targets: the dict form with its method, header and
    # data (which cannot override the status), the string form as a POST.
    assert [(c[0], c[1], c[5]) for c in callbacks[1]] == [
        ("POST", "/producer/", "done"),
        ("POST", "/producer/", "in_progress"),
        ("PUT", "/hook?request_id=r-1", "done"),
        ("PUT", "/hook?request_id=r-1", "in_progress"),
    ]
    assert done[1] == 200 and done[2]["status"] == "done"


@pytest.mark.parametrize(
    "fake", [simulator_transcript, scripted_transcript], ids=["sim", "scripted"]
)
def test_every_fake_answers_the_script_as_the_emulator_does(
    reference: list[Any], fake: Callable[[], list[Any]]
) -> None:
    answers = fake()

    for expected, actual in zip(reference, answers, strict=True):
        assert actual == expected
