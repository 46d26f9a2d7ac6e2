"""Cold start per function: process start to first 2xx, and import time, against baselines.

Each function gets one "cold request", the cheapest request that makes it build every
client it uses and answer 2xx; its baseline (bench/baselines/<name>_baseline.py) builds the
same Google clients at import and does the same kind of I/O for that request:

- submit_task: a message that breaks the schema (recorded failed, task.failed published);
- ingest_webhook: an `in_progress` callback for a submitted record (transaction, event);
- postprocess_render: a finalized object outside render/ (ignored, clients built);
- reconcile_tasks: a scheduler tick on an empty collection (queries);
- record_dead_letter: a dead letter for an unknown request (read, create, event).

Import time is measured in a fresh interpreter: loading main.py and building the clients
the handler builds on its first request (both build them lazily, in the serving process:
a gRPC channel created before gunicorn forks its worker can hang the first publish).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable

import httpx

from bench.common import (
    BASELINES_DIR,
    PROJECT_ID,
    SAMPLE_COLLECTION_ID,
    WEBHOOK_SECRET,
    Emulators,
    Row,
    Section,
    fresh_name,
    function_env,
    function_process,
    median,
)
from local_stack.emulators import scoped_environment
from local_stack.eventarc_events import pubsub_event, storage_finalized_event
from local_stack.functions import FUNCTIONS_DIR, available_functions
from local_stack.processes import REPO_ROOT

TARGET = 1.15
# The services each handler builds on its first request (see functions/*/main.py, wiring.py).
CLIENTS_BUILT: dict[str, tuple[str, ...]] = {
    "submit_task": ("store", "srp", "publisher"),
    "ingest_webhook": ("store", "srp", "publisher"),
    "postprocess_render": ("store", "storage", "publisher"),
    "reconcile_tasks": ("store", "srp", "publisher"),
    "record_dead_letter": ("store", "publisher"),
}

Request = tuple[str, dict[str, str], bytes]  # path+query, headers, body


def _pubsub(data: bytes) -> Request:
    message_id = uuid.uuid4().hex
    headers, body = pubsub_event(
        project_id=PROJECT_ID,
        topic_id="bench",
        subscription_id="bench-sub",
        message_id=message_id,
        data=data,
    )
    return "/", headers, body


def cold_request(name: str, env: dict[str, str]) -> Request:
    """The request that makes `name` build its clients and answer 2xx (see module doc)."""
    if name == "submit_task":
        return _pubsub(json.dumps({"request_id": f"cold-{uuid.uuid4().hex}", "x": 1}).encode())
    if name == "record_dead_letter":
        return _pubsub(json.dumps({"request_id": f"dead-{uuid.uuid4().hex}"}).encode())
    if name == "reconcile_tasks":
        return _pubsub(b"{}")
    if name == "postprocess_render":
        headers, body = storage_finalized_event(
            {
                "bucket": env["RENDERS_BUCKET"],
                "name": "notes/readme.txt",
                "generation": "1",
                "size": "5",
                "contentType": "text/plain",
            },
            event_id=uuid.uuid4().hex,
        )
        return "/", headers, body
    if name == "ingest_webhook":
        from srp_bundle.callback_auth import TOKEN_HEADER, legacy_callback_token

        request_id, task_id = submitted_record(env)
        body = {
            "status": "in_progress",
            "task_id": task_id,
            "timestamp": "2025-01-01T00:00:00.000Z",
        }
        headers = {
            "Content-Type": "application/json",
            TOKEN_HEADER: legacy_callback_token(WEBHOOK_SECRET, request_id),
        }
        return f"/?request_id={request_id}", headers, json.dumps(body).encode()
    raise ValueError(name)


def submitted_records(env: dict[str, str], count: int) -> list[tuple[str, str]]:
    """Create `count` records as submit_task leaves them; their (request id, SRP task id)."""
    from google.cloud import firestore

    from srp_bundle.task_state import State, TaskRecord

    with scoped_environment(env):
        client = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])
    records = client.collection(env["TASKS_COLLECTION"])
    ids = [(f"req-{uuid.uuid4().hex[:16]}", str(uuid.uuid4())) for _ in range(count)]
    for start in range(0, count, 250):
        batch = client.batch()
        for request_id, task_id in ids[start : start + 250]:
            record = TaskRecord(
                request_id=request_id,
                collection_id=SAMPLE_COLLECTION_ID,
                state=State.SUBMITTED,
                task_id=task_id,
                status="new",
            )
            batch.set(records.document(request_id), record.to_document())
        batch.commit()
    client.close()
    return ids


def submitted_record(env: dict[str, str]) -> tuple[str, str]:
    """One submitted record's (request id, SRP task id)."""
    return submitted_records(env, 1)[0]


def time_to_first_2xx(name: str, env: dict[str, str], baseline: str | None) -> float:
    """Seconds from spawning the process to its first 2xx answer to the cold request."""
    path, headers, body = cold_request(name, env)
    process = function_process(name, env, baseline=baseline, threads=8)
    started = time.perf_counter()
    process.start()
    try:
        with httpx.Client(timeout=60) as client:
            response = client.post(process.url + path, headers=headers, content=body)
            elapsed = time.perf_counter() - started
        if not 200 <= response.status_code < 300:
            tail = "\n".join(list(process.output)[-15:])
            raise RuntimeError(
                f"{baseline or name}: cold request got {response.status_code}\n{tail}"
            )
        return elapsed
    finally:
        process.stop()


def _import_script(name: str, baseline: bool) -> str:
    if baseline:
        path = BASELINES_DIR / f"{name}_baseline.py"
        build = "module.clients()"
    else:
        path = FUNCTIONS_DIR / name / "main.py"
        build = "\n".join(f"module.services.{service}" for service in CLIENTS_BUILT[name])
    return (
        "import importlib.util, time\n"
        "started = time.perf_counter()\n"
        f"spec = importlib.util.spec_from_file_location('main', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        + build
        + "\n"
        + "print(time.perf_counter() - started)\n"
    )


def import_time(name: str, env: dict[str, str], baseline: bool) -> float:
    """Seconds to import the function module and build its clients, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", _import_script(name, baseline)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"importing {name} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def extra_imports(name: str, env: dict[str, str], top: int = 5) -> list[tuple[str, float]]:
    """Modules ours imports and the baseline does not (grouped by package), with their ms."""

    def modules(baseline: bool) -> dict[str, int]:
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", _import_script(name, baseline)],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        found: dict[str, int] = {}
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
            if match:
                found[match.group(4)] = int(match.group(1))
        return found

    ours, theirs = modules(False), modules(True)
    by_package: dict[str, int] = defaultdict(int)
    for module, self_us in ours.items():
        if module not in theirs:
            # Our own modules one by one, third-party code by distribution.
            package = module.split(".")[0]
            by_package[module if package == "srp_bundle" else package] += self_us
    ranked = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    return [(package, micros / 1000) for package, micros in ranked]


def run(emulators: Emulators, *, repeats: int, log: Callable[[str], None]) -> Section:
    """Measure every function that exists against its baseline, interleaved."""
    section = Section("cold start")
    emulators.start()
    names = [n for n in available_functions() if (BASELINES_DIR / f"{n}_baseline.py").exists()]
    topic = fresh_name("bench-events")
    emulators.create_topic(topic)
    for name in names:
        ready: dict[bool, list[float]] = {False: [], True: []}
        imports: dict[bool, list[float]] = {False: [], True: []}
        for attempt in range(repeats):
            # Alternate who goes first so a noisy neighbour hurts both alike.
            order = (False, True) if attempt % 2 == 0 else (True, False)
            for is_baseline in order:
                env = function_env(emulators, EVENTS_TOPIC=topic)
                ready[is_baseline].append(
                    time_to_first_2xx(name, env, name if is_baseline else None)
                )
                imports[is_baseline].append(import_time(name, env, is_baseline))
        log(
            f"  {name}: first 2xx {median(ready[False]):.2f}s vs {median(ready[True]):.2f}s, "
            f"import {median(imports[False]):.2f}s vs {median(imports[True]):.2f}s"
        )
        section.rows.append(
            Row(
                "cold start",
                f"{name}: start -> first 2xx",
                median(ready[False]),
                median(ready[True]),
                "s",
                "ff + its Google clients",
                TARGET,
            )
        )
        section.rows.append(
            Row(
                "cold start",
                f"{name}: import + clients",
                median(imports[False]),
                median(imports[True]),
                "s",
                "ff + its Google clients",
                TARGET,
            )
        )
        extras = extra_imports(name, function_env(emulators, EVENTS_TOPIC=topic))
        section.notes.append(
            f"{name} imports beyond its baseline (self time, ms): "
            + ", ".join(f"{package} {ms:.0f}" for package, ms in extras)
        )
    return section
