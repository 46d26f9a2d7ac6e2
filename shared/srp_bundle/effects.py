"""Everything the bundle takes from outside its own code, in one object.

Time, randomness and the ids drawn from it, sleeping, the HTTP transport to SRP, and the
Google clients. Production uses `Effects()` (the system clock, the OS's randomness, the
real clients made on first use); the simulator and the tests build their own, and
`wiring.Services` hands them to every use case. No other module reads a clock of its own,
draws a random number, makes an id or builds a client.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx
    from google.cloud import firestore
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.storage import Client as StorageClient

    from srp_bundle.srp_client import HttpSession


def system_clock() -> datetime:
    """Timezone-aware now, from the system clock (every timestamp here is UTC)."""
    return datetime.now(UTC)


def _firestore_client(project_id: str) -> firestore.Client:
    from google.cloud import firestore

    return firestore.Client(project=project_id)


def _storage_client(project_id: str) -> StorageClient:
    from google.cloud.storage import Client as StorageClient

    return StorageClient(project=project_id)


def _publisher_client(project_id: str) -> PublisherClient:
    from google.cloud.pubsub_v1 import PublisherClient
    from google.cloud.pubsub_v1.types import BatchSettings

    # Every invocation waits for its publishes, so the default 10 ms batching window
    # would only add latency; 1 ms still batches the events of one transition.
    return PublisherClient(batch_settings=BatchSettings(max_latency=0.001))


@dataclass(frozen=True)
class Effects:
    """The world as the bundle sees it; each Google client is made by its factory on first use.

    Each import happens inside its factory, so a function only pays at cold start for the
    Google libraries it really uses.
    """

    clock: Callable[[], datetime] = system_clock
    rng: random.Random = field(default_factory=random.SystemRandom)
    sleep: Callable[[float], None] = time.sleep
    # None: httpx's own transport (real connections to SRP_API_URL).
    srp_transport: httpx.BaseTransport | None = None
    # Makes what the SRP client sends its calls through instead of an httpx.Client.
    srp_http: Callable[[], HttpSession] | None = None
    firestore_client: Callable[[str], Any] = _firestore_client
    storage_client: Callable[[str], Any] = _storage_client
    publisher_client: Callable[[str], Any] = _publisher_client

    def new_id(self) -> str:
        """A fresh 32-hex-digit id (lease owners, attempts, nonces), drawn from `rng`."""
        return f"{self.rng.getrandbits(128):032x}"
