"""Control: the concurrency scenarios break on the plain emulator, so they really test something.

The same kind of scenario passes on our Firestore (tests in test_submit_task and
test_ingest_webhook); here it runs against `@firestore-emulator/server` without our
transaction layer. The race is not left to chance: a read barrier in the emulator
(`control.arm_read_barrier`) holds the first two transactional reads of the record until
both have arrived, so both transactions read the same state before either commits — the
interleaving that the layer turns into an ABORTED retry and the plain emulator lets through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator
from local_stack.srp_emulator import SrpEmulatorProcess

from concurrency_scenarios import (
    callback_body,
    deliver_concurrently,
    post_callback,
    submitted_record,
)
from conftest import Pipeline, running_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plain_firestore() -> Iterator[FirestoreEmulator]:
    """The upstream emulator alone (FIRESTORE_SEMANTICS=off)."""
    with FirestoreEmulator(semantics=False) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def plain_pipeline(
    project_id: str,
    plain_firestore: FirestoreEmulator,
    pubsub_emulator: PubsubEmulator,
    gcs_emulator: GcsEmulator,
    srp_emulator: SrpEmulatorProcess,
) -> Iterator[Pipeline]:
    base_env = {
        "GOOGLE_CLOUD_PROJECT": project_id,
        **plain_firestore.env,
        **pubsub_emulator.env,
        **gcs_emulator.env,
    }
    with running_pipeline(project_id, base_env, srp_emulator) as pipeline:
        yield pipeline


def _hold_first_two_reads(
    firestore: FirestoreEmulator, pipeline: Pipeline, request_id: str
) -> None:
    path = f"{pipeline.tasks_collection}/{request_id}"
    firestore.control.arm_read_barrier(2, f"^{re.escape(path)}$", timeout_seconds=30)


def _barrier_filled(firestore: FirestoreEmulator) -> bool:
    return firestore.control.read_barrier()["history"][-1] == {"outcome": "filled", "readers": 2}


def test_without_the_layer_concurrent_deliveries_post_more_than_once(
    plain_pipeline: Pipeline, plain_firestore: FirestoreEmulator, render_request
) -> None:
    plain_pipeline.srp.control.reset()
    request = render_request()
    _hold_first_two_reads(plain_firestore, plain_pipeline, request["request_id"])

    posts = deliver_concurrently(plain_pipeline, request)

    assert _barrier_filled(plain_firestore)
    assert posts > 1


def test_without_the_layer_two_done_callbacks_publish_rendered_twice(
    plain_pipeline: Pipeline, plain_firestore: FirestoreEmulator
) -> None:
    webhook = plain_pipeline.function("ingest_webhook", CONFIRM_TERMINAL_STATUS="false")
    request_id, task_id = submitted_record(plain_pipeline)
    _hold_first_two_reads(plain_firestore, plain_pipeline, request_id)

    with ThreadPoolExecutor(2) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    post_callback(
                        plain_pipeline, webhook.url, request_id, callback_body("done", task_id)
                    ).status_code
                ),
                range(2),
            )
        )

    assert codes == [200, 200]
    assert _barrier_filled(plain_firestore)
    plain_pipeline.events.wait_for(request_id, "task.status_changed")
    plain_pipeline.events.settle(1.0)
    rendered = [
        event
        for event in plain_pipeline.events.by_request[request_id]
        if event["data"]["state"] == "rendered"
    ]
    assert len(rendered) == 2
