"""Shared fixtures: the real local emulators, started once per session, with isolated names."""

from __future__ import annotations

import http.server
import logging
import os

# Before anything imports grpc: see local_stack/__init__.py.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Every test starts from, and leaves, the same os.environ and bundle logging.

    A handler module executed in process (`create_app`) calls `log.configure()`, which
    would otherwise keep writing to that test's captured stdout and hide later records
    from `caplog`.
    """
    saved = dict(os.environ)
    bundle_logger = logging.getLogger("srp_bundle")
    handlers, level, propagate = (
        list(bundle_logger.handlers),
        bundle_logger.level,
        bundle_logger.propagate,
    )
    yield
    os.environ.clear()
    os.environ.update(saved)
    bundle_logger.handlers[:] = handlers
    bundle_logger.setLevel(level)
    bundle_logger.propagate = propagate


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Names no other test uses: collections, buckets, topics."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture(scope="session")
def project_id() -> str:
    """A project id of this test session alone."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    """Firestore with our transaction semantics (local_stack/firestore)."""
    with FirestoreEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubsubEmulator]:
    """Google's pstest fake (or the official emulator named by PUBSUB_EMULATOR_HOST)."""
    with PubsubEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """fake-gcs-server in memory, without notifications."""
    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator_env(
    project_id: str,
    firestore_emulator: FirestoreEmulator,
    pubsub_emulator: PubsubEmulator,
    gcs_emulator: GcsEmulator,
) -> dict[str, str]:
    """os.environ pointed at all three emulators (restored after the test)."""
    env = {
        "GOOGLE_CLOUD_PROJECT": project_id,
        **firestore_emulator.env,
        **pubsub_emulator.env,
        **gcs_emulator.env,
    }
    os.environ.update(env)
    return env


class RequestListener:
    """A local HTTP server that records every request a crafted file might make it receive."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def request_listener() -> Iterator[RequestListener]:
    """A server that counts requests, for tests that show nothing calls out."""
    listener = RequestListener()
    yield listener
    listener.close()
