"""SRP, simulated behind the real `SrpClient` (an httpx transport), with every bad day.

POST faults: 5xx or 429 (+Retry-After) before creating anything; a refused connection;
a 5xx after creating the task (`srp_create_then_error`); an answer after the client's timeout,
with or without a task created; a connection reset after creating it (a lost answer).
GET faults: 5xx, 429, timeouts, and answers that lag behind the callbacks already sent.
Tasks: queued -> in_progress -> done (writes render.png, maybe sibling files, maybe a
corrupt file, maybe a later generation) or failed, or never finish. Callbacks: retried by
SRP until answered 2xx/4xx; duplicated, delayed past reconcile, dropped, reordered, or sent
with a status the task does not have.
"""

from __future__ import annotations

import json
import json as _json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from local_stack.srp_emulator.callbacks import (
    CallbackDestination,
    CallbackRequest,
    CallbackSpecError,
    callback_payload,
    callback_request,
    parse_callback_urls,
)
from sim.storage import Storage
from sim.world import EPOCH, World

PNG = b"\x89PNG\r\n\x1a\n"


class Request:
    """One HTTP request as SRP receives it."""

    def __init__(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        content: bytes | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.method = method
        self.params = params or {}
        self.content = content
        self.headers = headers or {}
        self.url = _Url(path)


class _Url:
    def __init__(self, path: str) -> None:
        self.path = path


class Response:
    """The part of `httpx.Response` the SRP client reads."""

    def __init__(
        self,
        status_code: int,
        *,
        json: Any = None,
        text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers or {}
        self._json = json
        self.text = text if text is not None else _json.dumps(json)
        self.request: Request | None = None

    @property
    def is_success(self) -> bool:
        """2xx."""
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body as JSON (a copy, as parsing would give)."""
        if self._json is None:
            return _json.loads(self.text)
        return _json.loads(_json.dumps(self._json))


class Http:
    """Stands in for the SRP client's `httpx.Client`: the same calls, no HTTP machinery.

    The client's own logic (retries, backoff, error classification, redaction) runs as is;
    transport failures are raised as the httpx exceptions it handles.
    """

    def __init__(
        self, handle: Callable[[Request], Response], headers: dict[str, str] | None = None
    ) -> None:
        self.handle = handle
        self.headers = headers or {}  # the replaced httpx.Client's own (the API key)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one call to the simulated SRP."""
        request = Request(method, path, params, content, {**self.headers, **(headers or {})})
        response = self.handle(request)
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Post:
    """One POST SRP received: when, for which request, what the client was told."""

    at: float
    request_id: str
    task_id: str | None
    answer: str  # "created", "refused", "ambiguous"


@dataclass
class Task:
    """A task SRP created."""

    id: str
    request_id: str
    collection_id: str
    collection_name: str
    token: str
    created_at: float
    callback_urls: list[Any] = field(default_factory=list)
    targets: list[CallbackDestination] = field(default_factory=list)
    input_data: dict[str, Any] = field(default_factory=dict)
    status: str = "new"
    history: list[tuple[float, str]] = field(default_factory=list)
    never_finishes: bool = False


class Srp:
    """The SRP service: tasks, their progress, callbacks, renders written to storage."""

    def __init__(
        self,
        world: World,
        storage: Storage,
        renders_bucket: str,
        deliver_callback: Callable[[str, str, bytes, Callable[[int], None]], None],
        timeout: float,
        api_key: str | None = None,
    ) -> None:
        self.world = world
        self.api_key = api_key
        self.storage = storage
        self.renders_bucket = renders_bucket
        self.deliver_callback = deliver_callback
        self.timeout = timeout
        self.tasks: dict[str, Task] = {}
        self.posts: list[Post] = []
        self.on_post: list[Callable[[Post], None]] = []
        self.collection_names: dict[str, str] = {}
        # An outage window (virtual seconds) during which SRP answers every call with 503.
        self.outage: tuple[float, float] | None = None
        # Every callback sent, to every target; only our request-bound one (the first) is
        # delivered: a producer's own URLs are outside the simulated world.
        self.callbacks_sent: list[CallbackRequest] = []

    def http(self) -> Http:
        """What the bundle's SrpClient sends its calls through (in place of its httpx.Client)."""
        return Http(self._handle, {"Authorization": f"Bearer {self.api_key}"})

    # ---- HTTP -----------------------------------------------------------------------------

    def _handle(self, request: Request) -> Response:
        world = self.world
        if self.outage is not None and self.outage[0] <= world.now_s < self.outage[1]:
            world.io(world.rng.uniform(0.01, 0.5))
            world.note(None, f"SRP {request.method}: 503 (outage)")
            return Response(503, json={"detail": "maintenance"})
        if self.api_key is not None and request.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            return Response(401, json={"detail": "Invalid API key."})
        if request.method == "POST":
            return self._post(request)
        if not world.call(self.timeout):
            raise httpx.ReadTimeout("simulated: no answer in time")
        if world.fault("srp_get_error"):
            return Response(world.rng.choice((500, 502, 503)), json={"detail": "oops"})
        if world.fault("srp_get_429"):
            return Response(429, headers={"Retry-After": "30"}, json={"detail": "slow"})
        if world.fault("srp_get_hang"):
            world.io(self.timeout)
            raise httpx.ReadTimeout("simulated")
        task = self.tasks.get(request.params.get("id", ""))
        if task is None:
            return Response(404, json={"detail": "Not found."})
        status = task.status
        if world.fault("srp_get_lags") and task.history:
            # SRP's read side lags: the answer is the status from a little while ago.
            lag = world.rng.uniform(1.0, 120.0)
            older = [s for t, s in task.history if t <= world.now_s - lag]
            status = older[-1] if older else "new"
        world.note(None, f"SRP GET {task.id[:8]} -> {status}")
        answer = self._task_json(task, status)
        if world.fault("srp_get_omits_callbacks"):
            answer["options"].pop("callback_urls")  # an SRP that stops echoing them
        return Response(200, json=answer)

    def _post(self, request: Request) -> Response:
        world = self.world
        if world.fault("srp_connect_refused"):
            world.io(0.01)
            world.note(None, "SRP POST: connection refused (never sent)")
            raise httpx.ConnectError("simulated: refused")
        answered_in_time = world.call(self.timeout)
        body, refusal = _post_body(request.content)
        if refusal is not None:
            return Response(400, json={"detail": refusal})
        callback = body["render_options"]["callback_urls"][0]
        query = parse_qs(urlsplit(callback["url"]).query)
        request_id = query["request_id"][0]
        token = next(iter(callback["headers"].values()))
        collection_id = body["collection_id"]

        def answer(kind: str, task: Task | None) -> None:
            post = Post(world.now_s, request_id, task.id if task else None, kind)
            self.posts.append(post)
            for hook in self.on_post:
                hook(post)

        if not answered_in_time and world.rng.random() < 0.5:
            world.note(None, f"SRP POST {request_id}: stalls past the timeout, nothing created")
            answer("refused", None)
            raise httpx.ReadTimeout("simulated")
        if world.fault("srp_post_error"):
            code = world.rng.choice((500, 502, 503, 504))
            world.note(None, f"SRP POST {request_id}: {code}, nothing created")
            answer("refused", None)
            return Response(code, json={"detail": "unavailable"})
        if world.fault("srp_post_429"):
            world.note(None, f"SRP POST {request_id}: 429, nothing created")
            answer("refused", None)
            return Response(429, headers={"Retry-After": "15"}, json={"detail": "slow"})
        if world.fault("srp_post_hang"):
            world.note(None, f"SRP POST {request_id}: hangs, nothing created")
            answer("refused", None)
            world.io(self.timeout)
            raise httpx.ReadTimeout("simulated")
        if "sim_rejected" in body.get("input_data", {}):
            answer("refused", None)
            return Response(400, json={"detail": "input_data is not valid for this collection"})
        task = self._create(request_id, collection_id, token, body)
        if world.fault("srp_create_then_error"):
            code = world.rng.choice((502, 503, 504))
            world.note(None, f"SRP POST {request_id}: created {task.id[:8]}, answers {code}")
            answer("ambiguous", task)
            return Response(code, text="upstream error")
        if not answered_in_time or world.fault("srp_create_then_hang"):
            world.note(None, f"SRP POST {request_id}: created {task.id[:8]}, answer after timeout")
            answer("ambiguous", task)
            if answered_in_time:
                world.io(self.timeout)
            raise httpx.ReadTimeout("simulated")
        if world.fault("srp_lost_answer"):
            world.note(None, f"SRP POST {request_id}: created {task.id[:8]}, connection reset")
            answer("ambiguous", task)
            raise httpx.RemoteProtocolError("simulated: reset")
        world.note(None, f"SRP POST {request_id}: 201 task {task.id[:8]}")
        answer("created", task)
        return Response(201, json=self._task_json(task, task.status))

    def _task_json(self, task: Task, status: str) -> dict[str, Any]:
        created = EPOCH + timedelta(seconds=task.created_at)
        return {
            "id": task.id,
            "collection": {
                "name": task.collection_name,
                "label": task.collection_name,
                "id": 1,
                "enabled": True,
                "tags": [],
                "plugin": {"id": 1, "label": "Simulated", "name": "sim"},
                "uid": task.collection_id,
                "options": {},
            },
            "creation_date": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "status": status,
            "enabled": True,
            "input_data": task.input_data,
            # SRP echoes the callbacks it was given (the seed's GET example shows them).
            "options": {"priority": 50, "callback_urls": task.callback_urls},
            "created_by": {"id": 1, "name": "sim"},
            "tags": [],
            "jobs": [],
        }

    # ---- task progress ------------------------------------------------------------------

    def _create(
        self, request_id: str, collection_id: str, token: str, body: dict[str, Any]
    ) -> Task:
        world = self.world
        task_id = str(uuid.UUID(int=world.rng.getrandbits(128), version=4))
        if collection_id not in self.collection_names:
            odd = world.fault("srp_odd_collection_name")
            self.collection_names[collection_id] = (
                ".." if odd else f"col{len(self.collection_names)}"
            )
        name = self.collection_names[collection_id]
        task = Task(task_id, request_id, collection_id, name, token, world.now_s)
        task.callback_urls = body["render_options"]["callback_urls"]
        task.targets = parse_callback_urls(task.callback_urls)
        task.input_data = body["input_data"]
        task.history.append((world.now_s, "new"))
        self.tasks[task_id] = task
        self._callback(task, "new")
        world.at(world.rng.uniform(1, 120), lambda: self._progress(task, "in_progress"))
        return task

    def _progress(self, task: Task, status: str) -> None:
        world = self.world
        task.status = status
        task.history.append((world.now_s, status))
        world.note("srp", f"task {task.id[:8]} is {status}")
        if status == "in_progress":
            self._callback(task, status)
            if world.fault("srp_never_finishes"):
                task.never_finishes = True
                world.note("srp", f"task {task.id[:8]} will never finish")
                return
            outcome = "failed" if world.fault("srp_render_fails") else "done"
            world.at(world.rng.uniform(5, 900), lambda: self._progress(task, outcome))
            return
        if status == "done":
            self._write_render(task)
            if world.fault("srp_rewrites_render"):
                world.at(world.rng.uniform(1, 3600), lambda: self._write_render(task))
        self._callback(task, status)

    def render_path(self, task: Task) -> str:
        """Where SRP writes the task's render."""
        return f"render/{task.collection_name}/{task.id}/render.png"

    def _write_render(self, task: Task) -> None:
        world = self.world
        folder = f"render/{task.collection_name}/{task.id}"
        if world.fault("srp_sibling_files"):
            self.storage.write(self.renders_bucket, f"{folder}/turntable.mp4", b"\0" * 2048)
        data = b"CORRUPT" if world.fault("srp_corrupt_render") else PNG + task.id.encode()
        stored = self.storage.write(
            self.renders_bucket, self.render_path(task), data, content_type="image/png"
        )
        world.note("srp", f"wrote {folder}/render.png generation {stored.generation}")

    def _callback(self, task: Task, status: str) -> None:
        world = self.world
        payload = callback_payload(task.id, status, world.now(), [self.render_path(task)])
        if world.fault("srp_cb_wrong_status"):
            payload["status"] = world.rng.choice(("done", "failed", "in_progress", "new"))
            if payload["status"] == "done":
                payload["output_files"] = [self.render_path(task)]
            else:
                payload.pop("output_files", None)
        if world.fault("srp_cb_odd_status"):
            # An unknown status, or a known one padded with whitespace (SRP's verbatim text).
            payload["status"] = world.rng.choice(
                ("weird-" + "x" * world.rng.choice((10, 100, 3000)), status + " " * 3000)
            )
            if not payload["status"].startswith("done"):
                payload.pop("output_files", None)
        if world.fault("srp_cb_crossed") and len(self.tasks) > 1:
            # SRP mixes up its bookkeeping: our URL and token, another request's task.
            other = world.rng.choice([t for t in self.tasks.values() if t is not task])
            payload["task_id"] = other.id
            world.note("srp", f"callback for {task.id[:8]} names task {other.id[:8]} instead")
            if "output_files" in payload:
                payload["output_files"] = [self.render_path(other)]
        if world.fault("srp_cb_drop"):
            world.note("srp", f"callback {payload['status'][:20]} for {task.id[:8]} is lost")
            return
        copies = 2 if world.fault("srp_cb_duplicate") else 1
        for _ in range(copies):
            delay = world.rng.uniform(0.05, 5.0)
            if world.fault("srp_cb_delay"):
                delay = world.rng.uniform(600, 7200)
            sent = [callback_request(target, payload) for target in task.targets]
            self.callbacks_sent.extend(sent)
            self._send(task, json.dumps(sent[0].body).encode(), delay, attempt=1)

    def _send(self, task: Task, body: bytes, delay: float, attempt: int) -> None:
        def answered(code: int) -> None:
            if code >= 500 and attempt < 8:
                backoff = min(3600.0, 30.0 * 2 ** (attempt - 1)) * self.world.rng.uniform(0.5, 1.0)
                self._send(task, body, backoff, attempt + 1)

        self.world.at(
            delay, lambda: self.deliver_callback(task.request_id, task.token, body, answered)
        )


def _post_body(content: bytes | None) -> tuple[dict[str, Any], str | None]:
    """The POST body, or the reason SRP answers 400 (the SRP emulator's checks, in short)."""
    try:
        body = json.loads(content or b"null")
    except ValueError as error:
        return {}, f"JSON parse error - {error}"
    if not isinstance(body, dict):
        return {}, "the request body must be a JSON object"
    if not isinstance(body.get("collection_id"), str) or not isinstance(
        body.get("input_data"), dict
    ):
        return {}, "collection_id and input_data are required"
    try:
        parse_callback_urls((body.get("render_options") or {}).get("callback_urls"))
    except CallbackSpecError as error:
        return {}, str(error)
    return body, None
