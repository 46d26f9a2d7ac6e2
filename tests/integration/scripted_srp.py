"""A scripted HTTP fake of SRP for use-case tests: it can fail after doing the work.

Its answers have the seed's shapes (tests/srp_emulator/test_fakes_agree.py compares them
with the SRP emulator's and the simulator's); its faults are named as in
local_stack/srp_faults.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from local_stack.srp_emulator.callbacks import (
    CallbackRequest,
    CallbackSpecError,
    callback_payload,
    callback_request,
    parse_callback_urls,
)
from srp_bundle.effects import Effects
from srp_bundle.srp_client import RetryPolicy, SrpClient

API_KEY = "sk-scripted-key"
# What the next POST does: "ok" (201); a 4xx status (refused, nothing created); a fault of
# POST_FAULTS by name, or as (name, status) for a fault that answers a status; or a callable
# run before answering.
PostAction = str | int | tuple[str, int] | Callable[[], None]


def _post_429(request: httpx.Request, status: int | None) -> httpx.Response:
    return httpx.Response(status or 429, headers={"Retry-After": "1"}, json={"detail": "slow"})


def _create_then_error(request: httpx.Request, status: int | None) -> httpx.Response:
    return httpx.Response(status or 502, text="Bad Gateway")


def _create_then_hang(request: httpx.Request, status: int | None) -> httpx.Response:
    raise httpx.ReadTimeout(
        "simulated: the task was created, the answer came late", request=request
    )


def _lost_answer(request: httpx.Request, status: int | None) -> httpx.Response:
    raise httpx.RemoteProtocolError("simulated: the task was created, the answer lost")


# The faults a POST step can name, and whether SRP creates the task before answering.
POST_FAULTS: dict[str, tuple[bool, Callable[[httpx.Request, int | None], httpx.Response]]] = {
    "srp_post_429": (False, _post_429),
    "srp_create_then_error": (True, _create_then_error),
    "srp_create_then_hang": (True, _create_then_hang),
    "srp_lost_answer": (True, _lost_answer),
}


class ScriptedSrp:
    """SRP's Task API in memory: every task it created, every request it saw."""

    def __init__(self, collection_name: str = "sample") -> None:
        self.collection_name = collection_name
        self.tasks: dict[str, dict[str, Any]] = {}
        self.raw_posts: list[bytes] = []
        self.post_script: list[PostAction] = []
        self.before_post: Callable[[], None] | None = None
        self.get_status: dict[str, str] = {}
        self.created_at: dict[str, datetime] = {}
        # What a GET answers as the task's `output_files` (the seed's GET lists none).
        self.get_output_files: dict[str, list[str]] = {}
        # Every task id a GET asked about, in order.
        self.gets: list[str] = []

    def task_json(self, task_id: str) -> dict[str, Any]:
        """The task in the seed's GET shape."""
        body = self.tasks[task_id]
        options = body.get("render_options") or {}
        callbacks = options.get("callback_urls", [])
        answer = {
            "id": task_id,
            "collection": {
                "name": self.collection_name,
                "label": self.collection_name,
                "id": 1,
                "enabled": True,
                "tags": [],
                "plugin": {"id": 1, "label": "Scripted", "name": "scripted"},
                "uid": body["collection_id"],
                "options": {},
            },
            "creation_date": self.created_at[task_id].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "status": self.get_status.get(task_id, "new"),
            "enabled": True,
            "input_data": body["input_data"],
            "options": {
                "priority": options.get("priority", 50),
                "callback_urls": callbacks if isinstance(callbacks, list) else [callbacks],
            },
            "created_by": {"id": 1, "name": "scripted"},
            "tags": [],
            "jobs": [],
        }
        if task_id in self.get_output_files:
            answer["output_files"] = self.get_output_files[task_id]
        return answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request of the SrpClient."""
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return httpx.Response(401, json={"detail": "Invalid API key."})
        if request.method == "GET":
            task_id = request.url.params.get("id", "")
            self.gets.append(task_id)
            if task_id not in self.tasks:
                return httpx.Response(404, json={"detail": "Not found."})
            return httpx.Response(200, json=self.task_json(task_id))
        assert request.method == "POST", request
        refusal = _refusal(request.content)
        if refusal is not None:
            return httpx.Response(400, json=refusal)
        if self.before_post is not None:
            self.before_post()
        action = self.post_script.pop(0) if self.post_script else "ok"
        if isinstance(action, int):
            assert action < 500, "a 5xx is ('srp_create_then_error', status)"
            return httpx.Response(action, json={"detail": f"refused with {action}"})
        name, status = action if isinstance(action, tuple) else (action, None)
        creates, answer = POST_FAULTS.get(str(name), (True, None))
        if not creates and answer is not None:
            return answer(request, status)
        self.raw_posts.append(request.content)
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = json.loads(request.content)
        self.created_at[task_id] = datetime.now(UTC)
        if action == "ok":
            return httpx.Response(201, json=self.task_json(task_id))
        if answer is None:
            raise AssertionError(f"unknown action {action!r}")
        return answer(request, status)

    def advance(self, task_id: str, status: str) -> list[CallbackRequest]:
        """Move the task to `status`; the callbacks SRP sends for it, one per target."""
        self.get_status[task_id] = status
        output_files = [f"render/{self.collection_name}/{task_id}/render.png"]
        payload = callback_payload(task_id, status, datetime.now(UTC), output_files)
        options = self.tasks[task_id].get("render_options") or {}
        targets = parse_callback_urls(options.get("callback_urls"))
        return [callback_request(target, payload) for target in targets]

    def effects(self, **overrides: Any) -> Effects:
        """The world's effects with this fake as SRP's transport (and no sleeping)."""
        return Effects(
            srp_transport=httpx.MockTransport(self.handle), sleep=lambda seconds: None, **overrides
        )

    def settings_overrides(self) -> dict[str, str]:
        """What a pipeline's environment needs to point the wired SRP client at this fake."""
        return {"SRP_API_URL": "https://srp.test", "SRP_API_KEY": API_KEY}

    def client(self, api_key: str = API_KEY) -> SrpClient:
        """A client of this fake that never sleeps."""
        return SrpClient(
            api_key,
            base_url="https://srp.test",
            transport=httpx.MockTransport(self.handle),
            retry=RetryPolicy(max_attempts=1),
            sleep=lambda seconds: None,
        )


def _refusal(content: bytes) -> dict[str, str] | None:
    """SRP's 400 body for a POST body it cannot take, or None."""
    try:
        body = json.loads(content or b"null")
    except ValueError as error:
        return {"detail": f"JSON parse error - {error}"}
    if not isinstance(body, dict):
        return {"detail": "the request body must be a JSON object"}
    if not isinstance(body.get("collection_id"), str) or not body["collection_id"]:
        return {"detail": "collection_id is required", "field": "collection_id"}
    if not isinstance(body.get("input_data"), dict):
        return {"detail": "input_data is required", "field": "input_data"}
    try:
        parse_callback_urls((body.get("render_options") or {}).get("callback_urls"))
    except CallbackSpecError as error:
        return {"detail": str(error), "field": error.field_path}
    return None
