"""Throughput of the emulator with and without the transactional layer (run by hand).

Usage: .venv/bin/python local_stack/firestore/bench_overhead.py
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from google.cloud import firestore

from local_stack.processes import free_port

SERVER_SCRIPT = Path(__file__).with_name("server.js")
SETS = 500
TRANSACTIONS = 200


def measure(semantics: str) -> tuple[float, float]:
    """Seconds for SETS plain sets and TRANSACTIONS sequential transactional increments."""
    port = free_port()
    env = {**os.environ, "FIRESTORE_SEMANTICS": semantics}
    server = subprocess.Popen(
        ["node", str(SERVER_SCRIPT), str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        os.environ["FIRESTORE_EMULATOR_HOST"] = f"127.0.0.1:{port}"
        collection = firestore.Client(project="bench").collection(f"bench-{uuid.uuid4().hex[:8]}")
        started = time.perf_counter()
        for index in range(SETS):
            collection.document(f"doc-{index}").set({"index": index})
        sets_seconds = time.perf_counter() - started

        counter = collection.document("counter")
        counter.set({"count": 0})

        @firestore.transactional
        def increment(transaction: firestore.Transaction) -> None:
            current = counter.get(transaction=transaction).get("count")
            transaction.update(counter, {"count": current + 1})

        client = collection._client
        started = time.perf_counter()
        for _ in range(TRANSACTIONS):
            increment(client.transaction())
        return sets_seconds, time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    """Print both measurements for each mode."""
    for semantics in ("off", "on", "off", "on"):
        sets_seconds, transactions_seconds = measure(semantics)
        print(
            f"FIRESTORE_SEMANTICS={semantics:3}: {SETS} sets {sets_seconds:.2f} s "
            f"({SETS / sets_seconds:.0f}/s), {TRANSACTIONS} transactions "
            f"{transactions_seconds:.2f} s ({TRANSACTIONS / transactions_seconds:.0f}/s)"
        )


if __name__ == "__main__":
    main()
