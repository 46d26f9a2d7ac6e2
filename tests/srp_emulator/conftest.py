"""Fixtures: one SRP emulator process for the session, a loopback callback receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from local_stack.emulators import GcsEmulator
from local_stack.srp_emulator import SrpEmulatorProcess

from srp_emulator_helpers import (
    API_KEY,
    CALLBACK_ATTEMPTS,
    PARALLEL,
    RENDER_SIZE,
    RENDERS_BUCKET,
    SECOND_API_KEY,
    CallbackReceiver,
    receiver_handler,
)


@pytest.fixture
def callback_receiver() -> Iterator[CallbackReceiver]:
    """A fresh receiver on a free loopback port."""
    receiver = CallbackReceiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver_handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def srp_process(gcs_emulator: GcsEmulator) -> Iterator[SrpEmulatorProcess]:
    """One emulator for the whole session: small renders, no artificial delays, fast retries."""
    with SrpEmulatorProcess(
        renders_bucket=RENDERS_BUCKET,
        api_keys=[API_KEY, SECOND_API_KEY],
        env={**gcs_emulator.env, "GOOGLE_CLOUD_PROJECT": "srp-emulator-tests"},
        render_size=RENDER_SIZE,
        parallel=PARALLEL,
        callback_attempts=CALLBACK_ATTEMPTS,
        callback_backoff=0.05,
        callback_timeout=2.0,
    ) as process:
        yield process


@pytest.fixture
def srp(srp_process: SrpEmulatorProcess) -> Iterator[SrpEmulatorProcess]:
    """The session emulator, reset before and after each test (tasks, logs, faults)."""
    srp_process.control.reset()
    yield srp_process
    srp_process.control.reset()


@pytest.fixture(scope="session")
def renders_bucket(gcs_emulator: GcsEmulator) -> storage.Bucket:
    """The renders bucket, read with the real client."""
    client = storage.Client(
        project="srp-emulator-tests",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_emulator.url},
    )
    return client.bucket(RENDERS_BUCKET)
