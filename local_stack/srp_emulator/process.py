"""Start the emulator as a child process (tests, local stack) and drive its control API."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from local_stack.processes import ManagedProcess
from local_stack.srp_emulator.server import CONTROL_TOKEN_HEADER

READY_PATTERN = r"srp emulator listening on (http://\S+)"


class EmulatorControl:
    """A small client for the emulator's /_emulator/ routes."""

    def __init__(self, base_url: str, *, token: str | None = None) -> None:
        headers = {CONTROL_TOKEN_HEADER: token} if token else {}
        self._client = httpx.Client(base_url=f"{base_url}/_emulator", headers=headers, timeout=150)

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _get(self, route: str, params: Mapping[str, Any]) -> Any:
        query = {name: str(value) for name, value in params.items() if value is not None}
        response = self._client.get(route, params=query)
        response.raise_for_status()
        return response.json()

    def _post(self, route: str, body: Any = None) -> Any:
        response = self._client.post(route, json=body if body is not None else {})
        response.raise_for_status()
        return response.json()

    def tasks(self, *, count: int = 0, wait: float = 0, **filters: Any) -> list[dict[str, Any]]:
        """Control views of the tasks matching `status=`/`id=`, waiting up to `wait` for `count`."""
        tasks: list[dict[str, Any]] = self._get("tasks", {"count": count, "wait": wait, **filters})[
            "tasks"
        ]
        return tasks

    def requests(self, *, count: int = 0, wait: float = 0, **filters: Any) -> list[dict[str, Any]]:
        """API requests received (filters on any logged field, e.g. method=POST, fault=hang)."""
        entries: list[dict[str, Any]] = self._get(
            "requests", {"count": count, "wait": wait, **filters}
        )["requests"]
        return entries

    def callbacks(self, *, count: int = 0, wait: float = 0, **filters: Any) -> list[dict[str, Any]]:
        """Callbacks sent, one entry per delivery with its attempts and the answers they got."""
        entries: list[dict[str, Any]] = self._get(
            "callbacks", {"count": count, "wait": wait, **filters}
        )["callbacks"]
        return entries

    def wait_for_tasks(
        self, *, count: int = 1, timeout: float = 30, **filters: Any
    ) -> list[dict[str, Any]]:
        """Like tasks(), but raise TimeoutError unless `count` tasks match in time."""
        tasks = self.tasks(count=count, wait=timeout, **filters)
        if len(tasks) < count:
            raise TimeoutError(f"{len(tasks)} of {count} tasks matching {filters} after {timeout}s")
        return tasks

    def wait_for_callbacks(
        self, *, count: int = 1, timeout: float = 30, **filters: Any
    ) -> list[dict[str, Any]]:
        """Like callbacks(), but raise TimeoutError unless `count` entries match in time."""
        entries = self.callbacks(count=count, wait=timeout, **filters)
        if len(entries) < count:
            raise TimeoutError(
                f"{len(entries)} of {count} callbacks matching {filters} after {timeout}s"
            )
        return entries

    def wait_for_requests(
        self, *, count: int = 1, timeout: float = 30, **filters: Any
    ) -> list[dict[str, Any]]:
        """Like requests(), but raise TimeoutError unless `count` entries match in time."""
        entries = self.requests(count=count, wait=timeout, **filters)
        if len(entries) < count:
            raise TimeoutError(
                f"{len(entries)} of {count} requests matching {filters} after {timeout}s"
            )
        return entries

    def faults(self) -> dict[str, Any]:
        """The fault settings in force."""
        config: dict[str, Any] = self._get("faults", {})
        return config

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault settings (unnamed knobs go back to their defaults; RNG reseeded)."""
        config: dict[str, Any] = self._post("faults", settings)
        return config

    def reset(self) -> None:
        """Forget tasks and logs, restore the start-up faults, resume the queue."""
        self._post("reset")

    def pause(self) -> None:
        """Hold the queue: new tasks stay `new`."""
        self._post("pause")

    def resume(self) -> None:
        """Release the queue."""
        self._post("resume")

    def release(self) -> None:
        """End every held delay (srp_late_done callbacks, srp_create_then_hang answers) now."""
        self._post("release")

    def assets(self, **filters: Any) -> list[dict[str, Any]]:
        """Assets issued, uploaded and created (filters on any field, e.g. `id=`)."""
        assets: list[dict[str, Any]] = self._get("assets", filters)["assets"]
        return assets

    def set_asset_faults(self, **settings: Any) -> dict[str, Any]:
        """Script upload failures: `fail_next_puts=[503, "drop"]`, `expired_urls_to_issue=1`,
        `url_ttl_seconds=...`, `upload_url_origin="http://elsewhere.test"` (unnamed settings
        return to their defaults)."""
        config: dict[str, Any] = self._post("assets/faults", settings)
        return config

    def stats(self) -> dict[str, Any]:
        """Render counters: active, most at once, tasks by status."""
        stats: dict[str, Any] = self._get("stats", {})
        return stats


class SrpEmulatorProcess:
    """The emulator as a child process on a free port; stops (or is killed) on exit."""

    def __init__(
        self,
        *,
        renders_bucket: str,
        api_keys: Sequence[str] = ("test-api-key",),
        env: Mapping[str, str] | None = None,
        collections: Path | None = None,
        render_size: int = 2048,
        parallel: int = 2,
        queue_seconds: float = 0.0,
        render_seconds: float = 0.0,
        callback_attempts: int = 4,
        callback_backoff: float = 0.5,
        callback_timeout: float = 5.0,
        faults: Mapping[str, Any] | None = None,
        seed: int | None = None,
        control_token: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        argv = [
            sys.executable, "-m", "local_stack.srp_emulator",
            "--port", "0",
            "--renders-bucket", renders_bucket,
            "--render-size", str(render_size),
            "--parallel", str(parallel),
            "--queue-seconds", str(queue_seconds),
            "--render-seconds", str(render_seconds),
            "--callback-attempts", str(callback_attempts),
            "--callback-backoff", str(callback_backoff),
            "--callback-timeout", str(callback_timeout),
        ]  # fmt: skip
        for key in api_keys:
            argv += ["--api-key", key]
        if collections is not None:
            argv += ["--collections", str(collections)]
        if faults:
            argv += ["--faults", json.dumps(dict(faults))]
        if seed is not None:
            argv += ["--seed", str(seed)]
        if control_token:
            argv += ["--control-token", control_token]
        argv += list(extra_args)
        self.api_keys = list(api_keys)
        self.renders_bucket = renders_bucket
        self.control_token = control_token
        self._process = ManagedProcess(
            "srp-emulator", argv, ready_pattern=READY_PATTERN, env=dict(env or {})
        )
        self.url = ""
        self._control: EmulatorControl | None = None

    @property
    def control(self) -> EmulatorControl:
        """Client of the control API (tasks, logs, faults, reset)."""
        if self._control is None:
            raise RuntimeError("the SRP emulator is not running")
        return self._control

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid

    @property
    def output(self) -> list[str]:
        """The child's recent stdout and stderr lines."""
        return list(self._process.output)

    def is_running(self) -> bool:
        """Whether the child process is alive."""
        return self._process.is_running()

    def start(self) -> SrpEmulatorProcess:
        """Start the process and wait until it listens."""
        self._process.start()
        assert self._process.ready_match is not None
        self.url = self._process.ready_match.group(1)
        self._control = EmulatorControl(self.url, token=self.control_token)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self._control is not None:
            self._control.close()
            self._control = None
        self._process.stop(timeout)

    def __enter__(self) -> SrpEmulatorProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
