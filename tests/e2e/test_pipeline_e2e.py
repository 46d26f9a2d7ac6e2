"""End to end over the local stack: Pub/Sub -> submit_task -> SRP emulator -> callbacks and
renders -> ingest_webhook and postprocess_render -> Firestore and events, via the bridge."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from local_stack.bridge import RetryPolicy
from local_stack.srp_emulator import SAMPLE_COLLECTION_UID, SEED_EXAMPLE_INPUT
from local_stack.stack import LocalStack, StackConfig

pytestmark = pytest.mark.integration

TRAITS = {
    "bg": ["RareFlare3.png", "Plain.png", "Stripes.png", "Checker.png"],
    "pants": ["stepper", "baggy", "shorts", "jeans"],
    "platform": ["common", "rare", "epic", "legendary"],
}


def _inputs(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    inputs = [dict(SEED_EXAMPLE_INPUT)]
    while len(inputs) < count:
        item = {trait: rng.choice(values) for trait, values in TRAITS.items()}
        item["pants_color"] = f"#{rng.randrange(0x1000000):06x}"
        inputs.append(item)
    return inputs


def _wait_with_reconcile(stack: LocalStack, ids: list[str], timeout: float) -> dict[str, dict]:
    """What Cloud Scheduler does in production: run reconcile_tasks now and then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return stack.wait_for_states(ids, timeout=3)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
            stack.trigger_reconcile()


@pytest.fixture
def make_stack(unique_name: Callable[[str], str]) -> Iterator[Callable[..., LocalStack]]:
    stacks: list[LocalStack] = []

    def make(**overrides) -> LocalStack:
        config = StackConfig(
            project_id=unique_name("e2e"),
            tasks_collection=unique_name("tasks"),
            render_size=256,
            srp_parallel=4,
            srp_queue_seconds=0.05,
            srp_render_seconds=0.1,
            retry=RetryPolicy(0.2, 2.0),
            **overrides,
        )
        stack = LocalStack(config).start()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def test_n_requests_give_n_completed_records_events_and_derivatives(make_stack) -> None:
    stack = make_stack()
    ids = [stack.publish_request(SAMPLE_COLLECTION_UID, item) for item in _inputs(20, seed=1)]

    records = stack.wait_for_states(ids, timeout=180)

    assert Counter(r["state"] for r in records.values()) == {"completed": 20}
    stack.wait_for_events("render.completed", ids)
    time.sleep(0.5)  # room for a duplicate to show up, were there one
    completed = Counter(
        e["data"]["request_id"] for e in stack.events() if e["type"] == "render.completed"
    )
    assert completed == dict.fromkeys(ids, 1)
    assert len({r["task_id"] for r in records.values()}) == 20
    for record in records.values():
        assert stack.download(stack.config.renders_bucket, record["render_path"])[:4] == b"\x89PNG"
        sizes = sorted(d["width"] for d in record["derivatives"])
        assert sizes == [256, 256, 256]  # 256px renders: fit inside, never upscaled
        for derivative in record["derivatives"]:
            data = stack.download(stack.config.derivatives_bucket, derivative["path"])
            assert len(data) == derivative["bytes"]


def test_with_srp_faults_every_request_ends_completed_or_failed_and_nothing_is_duplicated(
    make_stack,
) -> None:
    stack = make_stack(
        srp_seed=11,
        srp_faults={
            "error_5xx_rate": 0.15,
            "error_429_rate": 0.15,
            "retry_after_seconds": 1,
            "lost_response_rate": 0.15,
            "duplicate_callback_rate": 0.3,
            "out_of_order_rate": 0.3,
            "drop_callback_rate": 0.25,
            "early_done_rate": 0.2,
            "render_failure_rate": 0.1,
        },
        max_delivery_attempts=20,
        function_env={
            "STALE_AFTER_SECONDS": "2",
            "AMBIGUOUS_SUBMIT_WAIT_SECONDS": "3",
        },
    )
    ids = [stack.publish_request(SAMPLE_COLLECTION_UID, item) for item in _inputs(30, seed=2)]

    records = _wait_with_reconcile(stack, ids, timeout=240)

    states = Counter(r["state"] for r in records.values())
    assert set(states) <= {"completed", "failed"} and states["completed"] > 0, states
    for record in records.values():
        if record["state"] == "failed":
            assert record["error"]["code"] and record["error"]["message"]
    stack.wait_for_events(
        "render.completed", [i for i, r in records.items() if r["state"] == "completed"]
    )
    time.sleep(0.5)  # room for a duplicate to show up, were there one
    events = stack.events()
    completed = Counter(e["data"]["request_id"] for e in events if e["type"] == "render.completed")
    assert all(count == 1 for count in completed.values())
    assert set(completed) == {i for i, r in records.items() if r["state"] == "completed"}
    # Every task SRP created is the request's one attached task, a recorded duplicate, or
    # the task of a POST whose answer was lost and that SRP never named since (counted on
    # the record as an unconfirmed submission).
    attached = [r["task_id"] for r in records.values() if r.get("task_id")]
    assert len(attached) == len(set(attached))
    duplicates = {d for r in records.values() for d in r.get("duplicate_task_ids", [])}
    assert not set(attached) & duplicates
    srp_tasks = {entry["task"]["id"]: entry["task"] for entry in stack.srp.control.tasks()}
    assert set(attached) | duplicates <= set(srp_tasks)
    for task_id in set(srp_tasks) - set(attached) - duplicates:
        request_id = _request_named_by(srp_tasks[task_id])
        assert records[request_id]["unconfirmed_submissions"] >= 1, (task_id, request_id)
    for request_id, record in records.items():
        created = [t for t in srp_tasks.values() if _request_named_by(t) == request_id]
        known = int(bool(record.get("task_id"))) + len(record.get("duplicate_task_ids", []))
        assert known <= len(created) <= known + record["unconfirmed_submissions"]


def _request_named_by(task: dict) -> str:
    """The request id in our callback URL, the first of the task's callback_urls."""
    url = task["options"]["callback_urls"][0]["url"]
    return parse_qs(urlsplit(url).query)["request_id"][0]
