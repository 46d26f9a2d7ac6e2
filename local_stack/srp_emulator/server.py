"""HTTP front of the emulator: the seed's API (/api/v1/tasks) and the control API (/_emulator/)."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local_stack.srp_emulator.assets import (
    ASSET_API_PATHS,
    ASSET_UPLOAD_URL_PATH,
    UPLOADS_PREFIX,
    AssetStore,
)
from local_stack.srp_emulator.engine import Engine, RequestError
from local_stack.srp_emulator.faults import FaultConfig, FaultConfigError

logger = logging.getLogger(__name__)

TASKS_PATH = "/api/v1/tasks"
CONTROL_PREFIX = "/_emulator/"
CONTROL_TOKEN_HEADER = "X-Emulator-Token"
_MAX_WAIT_SECONDS = 120.0


class EmulatorServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one Engine."""

    daemon_threads = True  # a hanging (fault-injected) request must not delay shutdown
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        engine: Engine,
        *,
        api_keys: list[str],
        initial_faults: FaultConfig,
        control_token: str | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        # Each key is one SRP user; the task's `created_by` names it.
        self.users_by_key = {
            key: {"id": number, "name": f"api-user-{number}"}
            for number, key in enumerate(api_keys, start=1)
        }
        self.initial_faults = initial_faults
        self.control_token = control_token

    @property
    def url(self) -> str:
        """Base URL clients use."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    server_version = "srp-emulator/1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # Plumbing ------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        try:
            if method == "PUT" and parts.path.startswith(UPLOADS_PREFIX):
                # Before reading the body: an archive is streamed to disk, never held here.
                self._upload(parts.path, query)
                return
            raw_body = self._read_body()
            if parts.path.startswith(CONTROL_PREFIX):
                self._control(method, parts.path[len(CONTROL_PREFIX) :].strip("/"), query, raw_body)
            elif parts.path.rstrip("/") == TASKS_PATH:
                self._api(method, parts.path, query, raw_body)
            elif parts.path.rstrip("/") in ASSET_API_PATHS:
                self._api(method, parts.path, query, raw_body, self._handle_asset_api)
            else:
                self._send(404, {"detail": "Not found."})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (often on purpose, in fault tests)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        content = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def _drop_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # Public API ----------------------------------------------------------------------------

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        raw_body: bytes,
        handle: Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, Any]]]
        | None = None,
    ) -> None:
        handle = handle or self._handle_api
        engine = self.server.engine
        entry: dict[str, Any] = {
            "received_at": datetime.now(UTC).isoformat(),
            "method": method,
            "path": path,
            "query": query,
            "headers": dict(self.headers.items()),
            "body": _decode_for_log(raw_body),
            "response_status": None,
            "task_id": None,
            "fault": None,
        }
        faults = engine.faults
        config = faults.config
        # The API faults of local_stack/srp_faults.py: srp_get_* hit a GET, srp_post_* a POST.
        prefix = {"GET": "srp_get_", "POST": "srp_post_"}.get(method)
        if prefix is not None:
            if faults.hits(prefix + "hang"):
                entry["fault"] = prefix + "hang"
                engine.log_request(entry)
                engine.stopping.wait(config.hang_seconds)
                self._drop_connection()
                return
            if faults.hits(prefix + "error"):
                status = faults.choose(config.error_5xx_statuses)
                entry.update(fault=prefix + "error", response_status=status)
                engine.log_request(entry)
                self._send(status, {"detail": "Internal server error (injected)."})
                return
            if faults.hits(prefix + "429"):
                seconds = config.retry_after_seconds
                entry.update(fault=prefix + "429", response_status=429)
                engine.log_request(entry)
                self._send(
                    429,
                    {"detail": f"Request was throttled. Expected available in {seconds} seconds."},
                    {"Retry-After": str(seconds)},
                )
                return
        try:
            status, body = handle(method, path, query, raw_body)
        except RequestError as error:
            status, body = error.status, error.body()
        headers = {"WWW-Authenticate": 'Bearer realm="api"'} if status == 401 else None
        if status < 300 and isinstance(body, dict):
            entry["task_id"] = body.get("id")
        if prefix is not None:
            if method == "POST" and status == 201 and faults.hits("srp_lost_answer"):
                entry["fault"] = "srp_lost_answer"
                engine.log_request(entry)
                self._drop_connection()
                return
            if method == "POST" and status == 201 and faults.hits("srp_create_then_error"):
                error_status = faults.choose(config.srp_create_then_error_statuses)
                entry.update(fault="srp_create_then_error", response_status=error_status)
                engine.log_request(entry)
                self._send(error_status, {"detail": "Bad gateway (injected, task created)."})
                return
            if method == "POST" and status == 201 and faults.hits("srp_create_then_hang"):
                entry.update(fault="srp_create_then_hang", response_status=status)
                engine.log_request(entry)
                engine.hold(config.srp_create_then_hang_seconds)
                self._send(status, body, headers)
                return
            if faults.hits(prefix + "slow"):
                entry["fault"] = prefix + "slow"
                engine.stopping.wait(config.slow_seconds)
        entry["response_status"] = status
        engine.log_request(entry)
        self._send(status, body, headers)

    def _handle_api(
        self, method: str, path: str, query: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if method not in ("GET", "POST"):
            raise RequestError(405, f'Method "{method}" not allowed.')
        created_by = self._authenticate()
        engine = self.server.engine
        if method == "POST":
            try:
                body = json.loads(raw_body or b"null")
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise RequestError(400, f"JSON parse error - {error}") from error
            return 201, engine.create_task(body, created_by).public_view()
        task_id = query.get("id", "").strip()
        if not task_id:
            raise RequestError(400, "query parameter 'id' is required", "id")
        task = engine.get_task(task_id)
        if task is None:
            raise RequestError(404, f"task '{task_id}' not found")
        return 200, task.public_view()

    def _handle_asset_api(
        self, method: str, path: str, query: dict[str, str], raw_body: bytes
    ) -> tuple[int, dict[str, Any]]:
        expected = "GET" if path.rstrip("/") == ASSET_UPLOAD_URL_PATH else "POST"
        if method != expected:
            raise RequestError(405, f'Method "{method}" not allowed.')
        owner = self._authenticate()
        assets = self._assets()
        if method == "GET":
            uid = query.get("collection_uid", "").strip().lower()
            host = self.headers.get("Host") or self.server.url.removeprefix("http://")
            collection = self.server.engine.collections.get(uid)
            return 200, assets.issue(collection, query, owner["id"], host).public_view()
        try:
            body = json.loads(raw_body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"JSON parse error - {error}") from error
        return 201, assets.create(body, owner["id"]).public_view()

    def _upload(self, path: str, query: dict[str, str]) -> None:
        """A PUT to a signed upload URL (the storage service's side, not SRP's API)."""
        entry: dict[str, Any] = {
            "received_at": datetime.now(UTC).isoformat(),
            "method": "PUT",
            "path": path,
            "query": {k: v for k, v in query.items() if k != "X-Goog-Signature"},
            "headers": dict(self.headers.items()),
            "body": None,
            "response_status": None,
            "task_id": None,
            "asset_id": None,
            "fault": None,
        }
        outcome = self._assets().receive(
            path, query, self.headers, self.rfile.read, self.rfile.readline
        )
        entry.update(
            response_status=outcome.status or None, fault=outcome.fault, asset_id=outcome.asset_id
        )
        self.server.engine.log_request(entry)
        if outcome.drop:
            self._drop_connection()
            return
        self.send_response(outcome.status)
        for name, value in outcome.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(outcome.body)))
        self.end_headers()
        self.wfile.write(outcome.body)

    def _assets(self) -> AssetStore:
        assets = self.server.engine.assets
        if assets is None:
            raise RequestError(404, "this emulator keeps no assets")
        return assets

    def _authenticate(self) -> dict[str, Any]:
        header = self.headers.get("Authorization", "")
        scheme, _, key = header.strip().partition(" ")
        if not header or scheme.lower() != "bearer" or not key.strip():
            raise RequestError(401, "Authentication credentials were not provided.")
        user = self.server.users_by_key.get(key.strip())
        if user is None:
            raise RequestError(401, "Invalid API key.")
        return dict(user)

    # Control API ---------------------------------------------------------------------------

    def _control(self, method: str, route: str, query: dict[str, str], raw_body: bytes) -> None:
        token = self.server.control_token
        if token and self.headers.get(CONTROL_TOKEN_HEADER) != token:
            self._send(401, {"detail": f"missing or wrong {CONTROL_TOKEN_HEADER}"})
            return
        engine = self.server.engine
        handlers: dict[tuple[str, str], Callable[[], tuple[int, Any]]] = {
            ("GET", "health"): lambda: (200, {"status": "ok"}),
            ("GET", "tasks"): lambda: self._list_tasks(query),
            ("GET", "requests"): lambda: self._list_log(engine.requests_log, query, "requests"),
            ("GET", "callbacks"): lambda: self._list_log(engine.callbacks_log, query, "callbacks"),
            ("GET", "faults"): lambda: (200, engine.faults.config.to_dict()),
            ("POST", "faults"): lambda: self._set_faults(raw_body),
            ("POST", "reset"): self._reset,
            ("POST", "pause"): lambda: self._pause(True),
            ("POST", "resume"): lambda: self._pause(False),
            ("POST", "release"): self._release,
            ("GET", "stats"): self._stats,
            ("GET", "assets"): lambda: (200, {"assets": self._assets().control_views(query)}),
            ("POST", "assets/faults"): lambda: (
                200,
                self._assets().configure(json.loads(raw_body or b"{}")),
            ),
        }
        handler = handlers.get((method, route))
        if handler is None:
            self._send(404, {"detail": f"no control route {method} /_emulator/{route}"})
            return
        try:
            status, body = handler()
        except (ValueError, FaultConfigError) as error:
            status, body = 400, {"detail": str(error)}
        except RequestError as error:
            status, body = error.status, error.body()
        self._send(status, body)

    def _list_tasks(self, query: dict[str, str]) -> tuple[int, Any]:
        engine = self.server.engine

        def matching() -> list[Any]:
            return [
                task
                for task in engine.tasks.values()
                if query.get("status") in (None, task.status) and query.get("id") in (None, task.id)
            ]

        self._wait(lambda: len(matching()) >= int(query.get("count", "1")), query)
        with engine.changed:
            views = [task.control_view() for task in sorted(matching(), key=lambda t: t.sequence)]
        return 200, {"tasks": views}

    def _list_log(self, log: Any, query: dict[str, str], key: str) -> tuple[int, Any]:
        filters = {name: value for name, value in query.items() if name not in ("count", "wait")}

        def matching() -> list[dict[str, Any]]:
            return [
                entry
                for entry in log
                if all(str(entry.get(name)) == value for name, value in filters.items())
            ]

        self._wait(lambda: len(matching()) >= int(query.get("count", "1")), query)
        with self.server.engine.changed:
            return 200, {key: matching()}

    def _wait(self, condition: Callable[[], bool], query: dict[str, str]) -> None:
        seconds = min(float(query.get("wait", "0")), _MAX_WAIT_SECONDS)
        if seconds > 0:
            self.server.engine.wait_until(condition, seconds)

    def _set_faults(self, raw_body: bytes) -> tuple[int, Any]:
        values = json.loads(raw_body or b"{}")
        config = FaultConfig.from_dict(values)
        self.server.engine.faults.configure(config)
        return 200, config.to_dict()

    def _reset(self) -> tuple[int, Any]:
        engine = self.server.engine
        engine.faults.configure(self.server.initial_faults)
        engine.reset()
        return 200, {"status": "reset"}

    def _pause(self, paused: bool) -> tuple[int, Any]:
        self.server.engine.set_paused(paused)
        return 200, {"paused": paused}

    def _release(self) -> tuple[int, Any]:
        self.server.engine.release_held()
        return 200, {"released": True}

    def _stats(self) -> tuple[int, Any]:
        engine = self.server.engine
        with engine.changed:
            by_status: dict[str, int] = {}
            for task in engine.tasks.values():
                by_status[task.status] = by_status.get(task.status, 0) + 1
            return 200, {
                "paused": engine.paused,
                "parallel": engine.settings.parallel,
                "active_renders": engine.active_renders,
                "max_active_renders": engine.max_active_renders,
                "tasks_by_status": by_status,
            }


def _decode_for_log(raw_body: bytes) -> Any:
    if not raw_body:
        return None
    try:
        return json.loads(raw_body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw_body.decode("utf-8", errors="replace")
