"""What every benchmark section shares: result rows, statistics, emulators, function processes."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import pubsub_v1

from local_stack.emulators import FirestoreEmulator, PubsubEmulator, scoped_environment
from local_stack.functions import FunctionProcess

BENCH_DIR = Path(__file__).resolve().parent
BASELINES_DIR = BENCH_DIR / "baselines"
PROJECT_ID = "srp-bench"
SAMPLE_COLLECTION_ID = "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01"
SAMPLE_INPUT = {
    "bg": "RareFlare3.png",
    "pants": "stepper",
    "pants_color": "#ffffff",
    "shoe": "4",
    "shoe_color": "#ff0000",
    "platform": "epic",
}
API_KEY = "bench-" + uuid.uuid4().hex
WEBHOOK_SECRET = uuid.uuid4().hex + uuid.uuid4().hex


@dataclass
class Row:
    """One line of the result table: our figure, the baseline's, and what we aim for.

    `higher_is_better` says which way the ratio ours/baseline should go; `target` is the
    bound on that ratio (None: reported, no target).
    """

    section: str
    measure: str
    ours: float
    baseline: float | None
    unit: str
    baseline_name: str = ""
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    @property
    def verdict(self) -> str:
        """'ok', 'MISS' or '' when there is no target."""
        if self.target is None or self.ratio is None:
            return ""
        met = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target
        return "ok" if met else "MISS"


@dataclass
class Section:
    """The rows and notes one benchmark section produced."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    """The median (0 for no values)."""
    return statistics.median(values) if values else 0.0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile, e.g. fraction=0.99."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def fresh_name(prefix: str) -> str:
    """A unique collection or topic id (the Firestore emulator slows as a collection grows)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Emulators:
    """Firestore and Pub/Sub emulators for the sections that need them, started on demand."""

    def __init__(self) -> None:
        self.firestore: FirestoreEmulator | None = None
        self.pubsub: PubsubEmulator | None = None

    def start(self) -> Emulators:
        """Start both emulators (once)."""
        if self.firestore is None:
            self.firestore = FirestoreEmulator().start()
        if self.pubsub is None:
            self.pubsub = PubsubEmulator(use_existing=False).start()
        return self

    @property
    def env(self) -> dict[str, str]:
        """GOOGLE_CLOUD_PROJECT plus the emulator switches."""
        assert self.firestore is not None and self.pubsub is not None
        return {"GOOGLE_CLOUD_PROJECT": PROJECT_ID, **self.firestore.env, **self.pubsub.env}

    def create_topic(self, topic_id: str) -> None:
        """Create a Pub/Sub topic on the emulator."""
        with scoped_environment(self.env):
            publisher = pubsub_v1.PublisherClient()
            publisher.create_topic(name=publisher.topic_path(PROJECT_ID, topic_id))

    def stop(self) -> None:
        """Stop what was started."""
        for emulator in (self.firestore, self.pubsub):
            if emulator is not None:
                emulator.stop()
        self.firestore = self.pubsub = None


def function_process(
    name: str, env: Mapping[str, str], *, baseline: str | None = None, threads: int = 8
) -> FunctionProcess:
    """Our function `name`, or the baseline `baseline` standing in for it (not started)."""
    if baseline is None:
        return FunctionProcess(name, env, threads=threads)
    from local_stack.functions import SIGNATURE_TYPES

    return FunctionProcess(
        baseline,
        env,
        threads=threads,
        source=BASELINES_DIR / f"{baseline}_baseline.py",
        signature_type=SIGNATURE_TYPES.get(baseline, "http"),
    )


def function_env(emulators: Emulators, **values: str) -> dict[str, str]:
    """Every setting any function needs, on the emulators, plus `values`."""
    return {
        **emulators.env,
        "SRP_API_URL": "http://127.0.0.1:9",
        "SRP_API_KEY": API_KEY,
        "WEBHOOK_URL": "http://127.0.0.1:9/",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "EVENTS_TOPIC": "bench-events",
        "RENDERS_BUCKET": "bench-renders",
        "DERIVATIVES_BUCKET": "bench-derivatives",
        "TASKS_COLLECTION": fresh_name("bench-tasks"),
        "SRP_TIMEOUT_SECONDS": "5",
        # Building a Storage client needs no server; sections that use GCS pass a real one.
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
        **values,
    }
