"""Every fault mode at once on the whole local stack, N requests: is anything lost or doubled?

One fresh stack runs N requests with no faults (the baseline), another the same N with every
SRP fault mode (each API fault certain for one request, then all at their rates) and the
Firestore commit faults (local_stack.fault_run: answers lost with
DEADLINE_EXCEEDED for the first half, UNAVAILABLE for the second), reconcile running as
Cloud Scheduler would. The fault run is audited with the invariants the end-to-end tests
check; the table gives wall times, the notes the counts (states, SRP tasks attached,
duplicates, unconfirmed, largest record, faults injected, violations).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import SAMPLE_COLLECTION_ID, Row, Section, fresh_name
from local_stack.bridge import BackoffPolicy
from local_stack.fault_run import (
    FAULT_RUN_ENV,
    FIRESTORE_FAULTS,
    audit,
    publish_under_each_post_fault,
    wait_with_reconcile,
)
from local_stack.stack import LocalStack, StackConfig

TRAITS = {
    "bg": ["RareFlare3.png", "Plain.png", "Stripes.png", "Checker.png"],
    "pants": ["stepper", "baggy", "shorts", "jeans"],
    "platform": ["common", "rare", "epic", "legendary"],
}


def _inputs(count: int) -> list[dict[str, str]]:
    rng = random.Random(1)
    return [
        {
            **{trait: rng.choice(values) for trait, values in TRAITS.items()},
            "pants_color": f"#{rng.randrange(0x1000000):06x}",
        }
        for _ in range(count)
    ]


def _config(faults: bool) -> StackConfig:
    return StackConfig(
        tasks_collection=fresh_name("bench-faults"),
        render_size=256,
        srp_parallel=4,
        srp_queue_seconds=0.05,
        srp_render_seconds=0.1,
        firestore_faults=(
            {**FIRESTORE_FAULTS, "seed": 21, "drop_answer_code": "DEADLINE_EXCEEDED"}
            if faults
            else None
        ),
        max_delivery_attempts=20,
        retry=BackoffPolicy(0.2, 5.0),
        function_env=FAULT_RUN_ENV if faults else {},
    )


def _run(count: int, faults: bool, log: Callable[[str], None]) -> dict[str, Any]:
    inputs = _inputs(count)
    with LocalStack(_config(faults)) as stack:
        started = time.monotonic()
        pending = iter(inputs)

        def publish() -> str:
            return stack.publish_request(SAMPLE_COLLECTION_ID, next(pending))

        ids = publish_under_each_post_fault(stack, publish, seed=21) if faults else []
        ids += [publish() for _ in range(count // 2 - len(ids))]
        if faults:
            stack.firestore_emulator.control.set_faults(
                **FIRESTORE_FAULTS, seed=22, drop_answer_code="UNAVAILABLE"
            )
        ids += [publish() for _ in range(count - len(ids))]
        records = wait_with_reconcile(stack, ids, timeout=600 + count * 3)
        wall = time.monotonic() - started
        result = audit(stack, records, events_timeout=300)
        assert stack.srp is not None
        injected = Counter(str(entry["fault"]) for entry in stack.srp.control.requests())
        injected.update(
            str(entry["fault"]) for entry in stack.firestore_emulator.control.stats()["injected"]
        )
    injected.pop("None", None)
    log(
        f"  {count} requests, faults {'on' if faults else 'off'}: {dict(result.states)} "
        f"in {wall:.0f}s; violations {result.violations or 'none'}"
    )
    return {"wall": wall, "audit": result, "injected": injected}


def run(*, requests: int, log: Callable[[str], None]) -> Section:
    """The fault-free baseline, then the fault run; wall times and the audit's counts."""
    section = Section("faults")
    baseline = _run(requests, faults=False, log=log)
    faulty = _run(requests, faults=True, log=log)
    result = faulty["audit"]
    section.rows.append(
        Row(
            "faults",
            f"{requests} requests under every fault mode: publish -> all final",
            faulty["wall"],
            baseline["wall"],
            "s",
            "same requests, no faults",
        )
    )
    lost = requests - result.states.get("completed", 0) - result.states.get("failed", 0)
    section.notes.append(
        f"fault run of {requests} requests: states {json.dumps(dict(result.states))}, "
        f"lost {lost}; SRP tasks {result.srp_tasks} = attached {result.attached} + "
        f"recorded duplicates {result.duplicates} + never named by SRP (all callbacks "
        f"dropped, counted as unconfirmed) {result.srp_tasks - result.attached - result.duplicates}"
        f"; unconfirmed_submissions total {result.unconfirmed}; largest record "
        f"{result.largest_record_bytes} bytes; faults injected "
        f"{json.dumps(dict(sorted(faulty['injected'].items())))}; violations "
        f"{json.dumps(result.violations) if result.violations else 'none'}"
    )
    return section
