"""A scripted HTTP fake of SRP for use-case tests: it can fail after doing the work."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from srp_bundle.srp_client import RetryPolicy, SrpClient

# What the next POST does: "ok" (201), a 4xx status (refused, nothing created), a 5xx
# status (the task IS created, then the answer is that error, as a proxy would give it),
# an httpx.TransportError class (created, answer lost), or a callable run before answering.
PostAction = str | int | type[httpx.TransportError] | Callable[[], None]


class ScriptedSrp:
    """SRP's Task API in memory: every task it created, every request it saw."""

    def __init__(self, collection_name: str = "sample") -> None:
        self.collection_name = collection_name
        self.tasks: dict[str, dict[str, Any]] = {}
        self.raw_posts: list[bytes] = []
        self.post_script: list[PostAction] = []
        self.before_post: Callable[[], None] | None = None
        self.get_status: dict[str, str] = {}
        # What a GET answers as the task's `output_files` (the seed's GET lists none).
        self.get_output_files: dict[str, list[str]] = {}
        # Every task id a GET asked about, in order.
        self.gets: list[str] = []

    def task_json(self, task_id: str) -> dict[str, Any]:
        body = self.tasks[task_id]
        options = body.get("render_options") or {}
        answer = {
            "id": task_id,
            "status": self.get_status.get(task_id, "created"),
            "collection": {"name": self.collection_name, "uid": body["collection_id"], "id": 1},
            "options": {"callback_urls": options.get("callback_urls", [])},
            "jobs": None,
        }
        if task_id in self.get_output_files:
            answer["output_files"] = self.get_output_files[task_id]
        return answer

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            task_id = request.url.params.get("id", "")
            self.gets.append(task_id)
            if task_id not in self.tasks:
                return httpx.Response(404, json={"detail": "Not found."})
            return httpx.Response(200, json=self.task_json(task_id))
        assert request.method == "POST", request
        if self.before_post is not None:
            self.before_post()
        action = self.post_script.pop(0) if self.post_script else "ok"
        if isinstance(action, int) and action < 500:
            return httpx.Response(action, json={"detail": f"refused with {action}"})
        self.raw_posts.append(request.content)
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = json.loads(request.content)
        if action == "ok":
            return httpx.Response(201, json=self.task_json(task_id))
        if isinstance(action, int):
            return httpx.Response(action, text="Bad Gateway")
        if isinstance(action, type):
            raise action("simulated: the task was created, the answer lost", request=request)
        raise AssertionError(f"unknown action {action!r}")

    def client(self) -> SrpClient:
        """A client of this fake that never sleeps."""
        return SrpClient(
            "sk-scripted-key",
            base_url="https://srp.test",
            transport=httpx.MockTransport(self.handle),
            retry=RetryPolicy(max_attempts=1),
            sleep=lambda seconds: None,
        )
