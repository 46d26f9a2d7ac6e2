"""Shared fixtures: the real local emulators, started once per session, with isolated names."""

from __future__ import annotations

import os

# Before anything imports grpc: see local_stack/__init__.py.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
import uuid
from collections.abc import Callable, Iterator

import pytest

from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Every test starts from, and leaves, the same os.environ."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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
