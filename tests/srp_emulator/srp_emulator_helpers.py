"""Helpers shared by the SRP emulator tests: constants, a callback receiver, API calls."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from local_stack.srp_emulator import SAMPLE_COLLECTION_UID, SEED_EXAMPLE_INPUT, SrpEmulatorProcess

API_KEY = "test-key-1"
SECOND_API_KEY = "test-key-2"
RENDER_SIZE = 128
PARALLEL = 2
CALLBACK_ATTEMPTS = 4
RENDERS_BUCKET = "srp-emulator-renders"
# The seed's task shape and timestamps (test_conformance.py, test_fakes_agree.py).
CREATION_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
CALLBACK_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TASK_KEYS = {
    "id",
    "collection",
    "creation_date",
    "status",
    "enabled",
    "input_data",
    "options",
    "created_by",
    "tags",
    "jobs",
}
COLLECTION_KEYS = {"name", "label", "id", "enabled", "tags", "plugin", "uid", "options"}


@dataclass
class ReceivedCallback:
    """One HTTP request the receiver got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    received_at: float
    observed: Any = None  # what the on_receive hook saw at that moment


@dataclass
class CallbackReceiver:
    """A loopback HTTP server that records every callback and answers as told."""

    url: str
    received: list[ReceivedCallback] = field(default_factory=list)
    # Statuses to answer, consumed one per request; 200 once empty.
    planned_statuses: list[int] = field(default_factory=list)
    on_receive: Callable[[ReceivedCallback], Any] | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 20.0, **match: Any) -> list[ReceivedCallback]:
        """Block until `count` callbacks whose JSON body matches `match` arrived."""

        def matching() -> list[ReceivedCallback]:
            return [
                item
                for item in self.received
                if all(
                    isinstance(item.body, dict) and item.body.get(k) == v for k, v in match.items()
                )
            ]

        with self.changed:
            self.changed.wait_for(lambda: len(matching()) >= count, timeout)
            found = matching()
        if len(found) < count:
            raise TimeoutError(f"{len(found)} of {count} callbacks matching {match}: {found}")
        return found


def receiver_handler(receiver: CallbackReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            item = ReceivedCallback(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=json.loads(raw) if raw else None,
                received_at=time.time(),
            )
            if receiver.on_receive is not None:
                item.observed = receiver.on_receive(item)
            with receiver.changed:
                status = receiver.planned_statuses.pop(0) if receiver.planned_statuses else 200
                receiver.received.append(item)
                receiver.changed.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

    return Handler


def submit(
    srp: SrpEmulatorProcess,
    *,
    input_data: dict[str, Any] | None = None,
    render_options: dict[str, Any] | None = None,
    api_key: str | None = API_KEY,
    collection_id: str = SAMPLE_COLLECTION_UID,
    timeout: float = 10.0,
) -> httpx.Response:
    """POST /api/v1/tasks the way the seed documents it."""
    body: dict[str, Any] = {
        "collection_id": collection_id,
        "input_data": dict(SEED_EXAMPLE_INPUT) if input_data is None else input_data,
    }
    if render_options is not None:
        body["render_options"] = render_options
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.post(f"{srp.url}/api/v1/tasks", json=body, headers=headers, timeout=timeout)


def get_task(
    srp: SrpEmulatorProcess, task_id: str, *, api_key: str | None = API_KEY, timeout: float = 10.0
) -> httpx.Response:
    """GET /api/v1/tasks?id=<task id>."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.get(
        f"{srp.url}/api/v1/tasks", params={"id": task_id}, headers=headers, timeout=timeout
    )
