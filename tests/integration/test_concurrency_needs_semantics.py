"""Control: the concurrency scenarios break on the plain emulator, so they really test something.

The same scenarios pass on our Firestore (tests in test_submit_task and test_ingest_webhook);
here they run against `@firestore-emulator/server` without our transaction layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator
from local_stack.srp_emulator import SrpEmulatorProcess

from concurrency_scenarios import callback_burst, deliver_concurrently
from conftest import Pipeline, running_pipeline

pytestmark = pytest.mark.integration
ROUNDS = 5


@pytest.fixture(scope="module")
def plain_pipeline(
    project_id: str,
    pubsub_emulator: PubsubEmulator,
    gcs_emulator: GcsEmulator,
    srp_emulator: SrpEmulatorProcess,
) -> Iterator[Pipeline]:
    with FirestoreEmulator(semantics=False) as plain_firestore:
        base_env = {
            "GOOGLE_CLOUD_PROJECT": project_id,
            **plain_firestore.env,
            **pubsub_emulator.env,
            **gcs_emulator.env,
        }
        with running_pipeline(project_id, base_env, srp_emulator) as pipeline:
            yield pipeline


def test_without_the_layer_concurrent_deliveries_post_more_than_once(
    plain_pipeline: Pipeline, render_request
) -> None:
    plain_pipeline.srp.control.reset()
    posts = [deliver_concurrently(plain_pipeline, render_request()) for _ in range(ROUNDS)]
    assert max(posts) > 1, f"the plain emulator happened to serialise every round: {posts}"


def test_without_the_layer_a_callback_burst_publishes_a_transition_twice(
    plain_pipeline: Pipeline,
) -> None:
    plain_pipeline.srp.control.reset()
    rendered_events = callback_burst(plain_pipeline, tasks=50, per_task=4)
    assert max(rendered_events.values()) > 1, "no lost update in this burst"
