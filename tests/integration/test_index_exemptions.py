"""Long strings where Terraform exempts the field from indexing: the local Firestore, like the
deployment, takes them there and nowhere else (local_stack/firestore/README.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.emulators import FirestoreControl, FirestoreEmulator
from local_stack.terraform_exemptions import terraform_index_exemptions

pytestmark = pytest.mark.integration

LONG_NOTE = "n" * 3000  # twice what an indexed string may be


@pytest.fixture
def control(firestore_emulator: FirestoreEmulator) -> Iterator[FirestoreControl]:
    """The session emulator's control API; its exemptions are restored after the test."""
    exemptions = firestore_emulator.control.index_exemptions()
    yield firestore_emulator.control
    firestore_emulator.control.set_index_exemptions(exemptions)


def test_terraform_exempts_the_fields_that_carry_requesters_data() -> None:
    exemptions = terraform_index_exemptions({"tasks_collection": "srp_tasks"})

    assert {"collection": "srp_tasks", "field": "metadata"} in exemptions
    assert {"collection": "srp_tasks_outbox", "field": "event"} in exemptions
    assert {"collection": "events", "field": "request"} in exemptions
    assert {"collection": "events", "field": "received"} in exemptions


def test_a_request_with_long_metadata_is_submitted_and_its_event_published(
    pipeline, render_request
) -> None:
    submit = pipeline.function("submit_task")
    request = render_request(metadata={"note": LONG_NOTE})

    response = pipeline.deliver(submit, request)

    assert response.status_code == 200, response.text
    assert pipeline.record(request["request_id"]).metadata == {"note": LONG_NOTE}
    pipeline.events.wait_for(request["request_id"], "task.submitted")


def test_control_without_the_exemptions_the_same_request_cannot_be_stored(
    pipeline, render_request, control: FirestoreControl
) -> None:
    control.set_index_exemptions([])
    submit = pipeline.function("submit_task")
    request = render_request(metadata={"note": LONG_NOTE})

    response = pipeline.deliver(submit, request)

    assert response.status_code == 500
    assert pipeline.store.get(request["request_id"]) is None
    assert pipeline.srp_tasks() == []
