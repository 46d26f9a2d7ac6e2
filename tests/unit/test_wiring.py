"""One seam for the world outside the code: every job is wired from the same `Effects`."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

from srp_bundle.effects import Effects
from srp_bundle.settings import load_settings
from srp_bundle.wiring import Services

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "GOOGLE_CLOUD_PROJECT": "p",
    "SRP_API_KEY": "k",
    "WEBHOOK_URL": "https://hooks.example.com/ingest",
    "WEBHOOK_SECRET": "s" * 32,
    "EVENTS_TOPIC": "events",
    "RENDERS_BUCKET": "renders",
    "DERIVATIVES_BUCKET": "derivatives",
}
MOMENT = datetime(2026, 12, 5, tzinfo=UTC)


class _Client:
    """Enough of a Google client to be wired (nothing is called)."""

    def collection(self, name: str) -> _Client:
        return self

    def document(self, name: str) -> _Client:
        return self

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def bucket(self, name: str) -> _Client:
        return self


def services(seed: int) -> Services:
    effects = Effects(
        clock=lambda: MOMENT,
        rng=random.Random(seed),
        sleep=lambda seconds: None,
        firestore_client=lambda project: _Client(),
        storage_client=lambda project: _Client(),
        publisher_client=lambda project: _Client(),
    )
    return Services(load_settings(None, ENV), effects)


def test_every_job_shares_one_store_client_publisher_and_clock() -> None:
    wired = services(1)

    reconciler, submitter = wired.reconciler, wired.submitter
    assert reconciler.submitter is submitter
    assert reconciler.store is submitter.store is wired.store is wired.ingestor.store
    assert reconciler.srp is submitter.srp is wired.srp
    assert reconciler.publisher is submitter.publisher is wired.publisher
    assert wired.store.clock() == submitter.clock() == reconciler.clock() == MOMENT


def test_ids_come_from_the_seeded_randomness() -> None:
    first, again, other = services(7), services(7), services(8)

    ids = [first.submitter.new_id() for _ in range(3)]

    assert ids == [again.submitter.new_id() for _ in range(3)]
    assert ids != [other.submitter.new_id() for _ in range(3)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)


def test_nothing_patches_a_global_clock_reseeds_random_or_pokes_a_private_client() -> None:
    sources = [*REPO.glob("shared/srp_bundle/**/*.py"), *REPO.glob("sim/*.py")]
    # Another object's `_http` assigned: the simulator once swapped the SRP client's this way.
    forbidden = re.compile(r"use_clock|random\.seed\(|random\.setstate\(|(?<!self)\._http\s*=")
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if forbidden.search(line)
    ]
    assert found == []
