"""End to end on the whole local stack (local_stack.stack): publish -> completed, and cost.

One request with a realistic 2048x2048 render, then a burst of N requests with small
renders (so the run stays within minutes on 2 cores). Each request's latency is its record's
last update (the `completed` transition) minus its publish time; from it we subtract the SRP
emulator's own time for its task (creation to finished render: queue and render), which
is SRP's, not ours. The functions run with bench/instrument/sitecustomize.py, which counts
billable operations; the counts per completed request feed docs/benchmarks.md's cost table.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    SAMPLE_COLLECTION_ID,
    SAMPLE_INPUT,
    Row,
    Section,
    fresh_name,
    median,
    percentile,
)
from local_stack.stack import LocalStack, StackConfig

INSTRUMENT_DIR = Path(__file__).resolve().parent / "instrument"


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _counts(directory: Path) -> dict[str, Counter[str]]:
    by_function: dict[str, Counter[str]] = defaultdict(Counter)
    for path in directory.glob("*.json"):
        data = json.loads(path.read_text())
        by_function[data["function"]].update(data["counts"])
    return dict(by_function)


def _burst(stack: LocalStack, count: int, timeout: float) -> dict[str, Any]:
    """Publish `count` requests at once, wait for all; latencies, SRP time, wall time."""
    assert stack.srp is not None
    stack.srp.control.reset()
    published: dict[str, float] = {}
    started = time.time()
    for _ in range(count):
        request_id = stack.publish_request(SAMPLE_COLLECTION_ID, SAMPLE_INPUT)
        published[request_id] = time.time()
    records = stack.wait_for_states(published, timeout=timeout, poll_interval=0.2)
    wall = time.time() - started
    states = Counter(str(record["state"]) for record in records.values())
    srp_tasks = {entry["task"]["id"]: entry for entry in stack.srp.control.tasks()}
    latencies, srp_times = [], []
    for request_id, record in records.items():
        latency = _timestamp(record["updated_at"]) - published[request_id]
        task = srp_tasks.get(str(record.get("task_id")))
        srp_time = 0.0
        if task and task.get("finished_at"):
            srp_time = _timestamp(task["finished_at"]) - _timestamp(task["task"]["creation_date"])
        latencies.append(latency)
        srp_times.append(srp_time)
    return {"latencies": latencies, "srp": srp_times, "wall": wall, "states": states}


def run(*, burst: int, log: Callable[[str], None]) -> Section:
    """Run one request, then a burst, on a fresh stack; rows for latency, throughput, cost."""
    section = Section("end to end")
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as counts_dir:
        for label, count, size in (("1 request", 1, 2048), (f"{burst} requests", burst, 256)):
            config = StackConfig(
                tasks_collection=fresh_name("bench-e2e"),
                render_size=size,
                srp_parallel=2,
                srp_queue_seconds=0.0,
                srp_render_seconds=0.0,
                function_env={"PYTHONPATH": str(INSTRUMENT_DIR), "BENCH_COUNTS_DIR": counts_dir},
            )
            for stale in Path(counts_dir).glob("*.json"):
                stale.unlink()
            with LocalStack(config) as stack:
                # One warm-up request so no function's cold start lands in the figures.
                _burst(stack, 1, timeout=120)
                time.sleep(1.0)
                warm_up = _counts(Path(counts_dir))
                result = _burst(stack, count, timeout=60 + count * 1.5)
                # Let in-flight work (final events, acks) settle before reading counters.
                time.sleep(1.0)
                counts = _counts(Path(counts_dir))
            for name, spent in warm_up.items():
                counts[name].subtract(spent)
            completed = result["states"].get("completed", 0)
            ours = [lat - srp for lat, srp in zip(result["latencies"], result["srp"], strict=True)]
            log(
                f"  {label} ({size}px): {dict(result['states'])}, wall {result['wall']:.1f}s, "
                f"p50 {median(result['latencies']):.2f}s of which SRP {median(result['srp']):.2f}s"
            )
            section.rows += [
                Row(
                    "end to end",
                    f"{label}: publish -> completed, p50",
                    median(result["latencies"]),
                    median(result["srp"]),
                    "s",
                    "SRP emulator's own time (p50)",
                ),
                Row("end to end", f"{label}: ours (minus SRP time), p50", median(ours), None, "s"),
                Row(
                    "end to end",
                    f"{label}: ours (minus SRP time), p99",
                    percentile(ours, 0.99),
                    None,
                    "s",
                ),
            ]
            if count > 1:
                section.rows.append(
                    Row(
                        "end to end",
                        f"{label}: completed per second",
                        completed / result["wall"],
                        None,
                        "req/s",
                    )
                )
            if count > 1 and completed:
                total: Counter[str] = Counter()
                for function_counts in counts.values():
                    total.update(function_counts)
                per_function = {
                    name: {k: round(v / completed, 2) for k, v in sorted(c.items())}
                    for name, c in sorted(counts.items())
                }
                section.notes.append(
                    f"cost counters per completed request ({completed} completed, "
                    f"instrumented): total "
                    + json.dumps({k: round(v / completed, 2) for k, v in sorted(total.items())})
                    + "; by function "
                    + json.dumps(per_function)
                )
            if completed != count:
                section.notes.append(f"{label}: only {completed} of {count} completed")
    return section
