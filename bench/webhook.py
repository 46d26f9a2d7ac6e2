"""ingest_webhook throughput and latency against a one-`set`-per-request handler.

Every request is an authenticated `in_progress` callback for its own submitted record,
so ours does the whole job each time: token check, validation, the transaction (read the
record, write it and an event-log entry) and the task.status_changed publish. The
baseline (bench/baselines/minimal_set_baseline.py) gets the same requests and does one
Firestore `set`; a second baseline (bench/baselines/minimal_transaction_baseline.py) does the
irreducible work, one transaction (read, write, one log entry) and one awaited publish. All
run under functions-framework with the same threads, each on a fresh collection; rounds alternate.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.cold_start import submitted_records
from bench.common import (
    WEBHOOK_SECRET,
    Emulators,
    Row,
    Section,
    fresh_name,
    function_env,
    function_process,
    median,
    percentile,
)

TARGET = 0.5
WARM_UP = 20
OURS = "ours"
HANDLERS = [OURS, "minimal_set", "minimal_transaction"]


def _callbacks(records: list[tuple[str, str]]) -> list[tuple[str, dict[str, str], bytes]]:
    from srp_bundle.callback_auth import TOKEN_HEADER, legacy_callback_token

    calls = []
    for request_id, task_id in records:
        body = {
            "status": "in_progress",
            "task_id": task_id,
            "timestamp": "2025-01-01T00:00:00.000Z",
        }
        headers = {
            "Content-Type": "application/json",
            TOKEN_HEADER: legacy_callback_token(WEBHOOK_SECRET, request_id),
        }
        calls.append((f"/?request_id={request_id}", headers, json.dumps(body).encode()))
    return calls


def _load(
    url: str, calls: list[tuple[str, dict[str, str], bytes]], clients: int
) -> tuple[float, list[float]]:
    """Send `calls` with `clients` concurrent keep-alive clients; (req/s, latencies in s)."""
    local = threading.local()
    latencies: list[float] = []

    def send(call: tuple[str, dict[str, str], bytes]) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=60)
        path, headers, body = call
        started = time.perf_counter()
        response = local.client.post(url + path, headers=headers, content=body)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, calls[:WARM_UP]))
        latencies.clear()
        started = time.perf_counter()
        list(pool.map(send, calls[WARM_UP:]))
        elapsed = time.perf_counter() - started
    return (len(calls) - WARM_UP) / elapsed, latencies


def run(
    emulators: Emulators,
    *,
    requests: int,
    rounds: int,
    levels: tuple[int, ...] = (1, 8),
    log: Callable[[str], None],
) -> Section:
    """Measure both handlers at each concurrency level."""
    section = Section("ingest_webhook")
    emulators.start()
    topic = fresh_name("bench-events")
    emulators.create_topic(topic)
    for clients in levels:
        rates: dict[str, list[float]] = {handler: [] for handler in HANDLERS}
        latencies: dict[str, list[float]] = {handler: [] for handler in HANDLERS}
        for attempt in range(rounds):
            # Rotate who goes first so a noisy neighbour hurts all alike.
            shift = attempt % len(HANDLERS)
            for handler in HANDLERS[shift:] + HANDLERS[:shift]:
                env = function_env(emulators, EVENTS_TOPIC=topic, CONFIRM_TERMINAL_STATUS="false")
                records = submitted_records(env, requests + WARM_UP)
                process = function_process(
                    "ingest_webhook", env, baseline=None if handler == OURS else handler
                ).start()
                try:
                    rate, seen = _load(process.url, _callbacks(records), clients)
                finally:
                    process.stop()
                rates[handler].append(rate)
                latencies[handler].extend(seen)
        ours = median(rates[OURS])
        log(
            f"  {clients} client(s): ours {ours:.0f} req/s, "
            + ", ".join(f"{h} {median(rates[h]):.0f} req/s" for h in HANDLERS[1:])
        )
        for handler, description, target in (
            ("minimal_set", "one Firestore set per request", TARGET),
            ("minimal_transaction", "one transaction + one publish", None),
        ):
            section.rows += [
                Row(
                    "ingest_webhook",
                    f"{clients} client(s): throughput",
                    ours,
                    median(rates[handler]),
                    "req/s",
                    description,
                    target,
                    higher_is_better=True,
                ),
                Row(
                    "ingest_webhook",
                    f"{clients} client(s): p50 latency",
                    1000 * percentile(latencies[OURS], 0.5),
                    1000 * percentile(latencies[handler], 0.5),
                    "ms",
                    description,
                ),
                Row(
                    "ingest_webhook",
                    f"{clients} client(s): p99 latency",
                    1000 * percentile(latencies[OURS], 0.99),
                    1000 * percentile(latencies[handler], 0.99),
                    "ms",
                    description,
                ),
            ]
    section.notes.append(
        f"ingest_webhook: {requests} timed callbacks per round after {WARM_UP} warm-up, "
        f"{rounds} round(s) per handler and level, fresh collection per round"
    )
    return section
