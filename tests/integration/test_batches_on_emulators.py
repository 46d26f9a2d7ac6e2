"""Batches against the emulators: submit_task takes declarations and members in any order,
duplicates included; `batch.completed` goes out once with the members' final counts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from srp_bundle.batches import BatchStore
from srp_bundle.task_state import DerivativesReady

pytestmark = pytest.mark.integration


def declaration(batch_id: str, total: int) -> dict[str, Any]:
    return {"batch": {"batch_id": batch_id, "total": total, "metadata": {"drop": batch_id}}}


def batch_events(pipeline, batch_id: str, timeout: float = 0.0) -> list[dict[str, Any]]:
    """The batch.completed events received for the batch (waiting up to `timeout` for one)."""
    deadline = time.monotonic() + timeout
    while True:
        with pipeline.events._lock:
            found = [
                e
                for e in pipeline.events.by_request[None]
                if e["type"] == "batch.completed" and e["data"]["batch_id"] == batch_id
            ]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def complete(pipeline, request_id: str) -> None:
    """What postprocess_render records for each output file, applied as it applies it."""
    record = pipeline.wait_for_state(request_id, "rendered")
    for generation, path in enumerate(record.output_files, start=1):
        pipeline.apply(request_id, DerivativesReady(path, generation, (), {"kind": "other"}))
    pipeline.wait_for_state(request_id, "completed")


def test_declared_first_failed_members_and_duplicates_make_one_batch_completed(
    pipeline, render_request, unique_name
) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    batch_id = unique_name("drop")
    pipeline.srp.control.set_faults(srp_render_fails_rate=1.0)
    members = [render_request(batch_id=batch_id) for _ in range(2)]

    assert pipeline.deliver(submit, declaration(batch_id, 2)).status_code == 200
    for member in members:
        assert pipeline.deliver(submit, member).status_code == 200
    assert pipeline.deliver(submit, members[0]).status_code == 200  # delivered twice
    for member in members:
        pipeline.wait_for_state(member["request_id"], "failed")
    (event,) = batch_events(pipeline, batch_id, timeout=30)
    assert pipeline.deliver(submit, declaration(batch_id, 2)).status_code == 200  # again
    pipeline.events.settle()

    assert batch_events(pipeline, batch_id) == [event]
    assert {k: event["data"][k] for k in ("total", "completed", "failed", "metadata")} == {
        "total": 2,
        "completed": 0,
        "failed": 2,
        "metadata": {"drop": batch_id},
    }
    batch = BatchStore(pipeline.store).get(batch_id)
    assert batch is not None and (batch.state, batch.failed) == ("done", 2)


def test_declared_after_its_completed_members(pipeline, render_request, unique_name) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    batch_id = unique_name("drop")
    members = [render_request(batch_id=batch_id) for _ in range(2)]
    for member in members:
        assert pipeline.deliver(submit, member).status_code == 200
    for member in members:
        complete(pipeline, member["request_id"])
    assert batch_events(pipeline, batch_id) == []  # every member final, no total yet

    assert pipeline.deliver(submit, declaration(batch_id, 2)).status_code == 200

    (event,) = batch_events(pipeline, batch_id, timeout=30)
    assert (event["data"]["completed"], event["data"]["failed"]) == (2, 0)
    assert pipeline.record(members[0]["request_id"]).batch_id == batch_id


def test_a_conflicting_declaration_is_refused_with_its_reason(pipeline, unique_name) -> None:
    submit = pipeline.function("submit_task")
    batch_id = unique_name("drop")
    batches = BatchStore(pipeline.store)
    assert pipeline.deliver(submit, declaration(batch_id, 2)).status_code == 200
    before = batches.get(batch_id)

    response = pipeline.deliver(submit, declaration(batch_id, 3))

    assert response.status_code == 200  # acknowledged: it can never succeed
    assert batches.get(batch_id) == before
    (refusal,) = batches.refusals(batch_id)
    assert refusal["total"] == 3 and "declared with total 2" in refusal["reason"]


def test_members_beyond_total_are_counted_and_the_batch_stays_done(
    pipeline, render_request, unique_name
) -> None:
    pipeline.function("ingest_webhook")
    submit = pipeline.function("submit_task")
    batch_id = unique_name("drop")
    pipeline.srp.control.set_faults(srp_render_fails_rate=1.0)
    assert pipeline.deliver(submit, declaration(batch_id, 1)).status_code == 200
    first, extra = render_request(batch_id=batch_id), render_request(batch_id=batch_id)
    pipeline.deliver(submit, first)
    pipeline.wait_for_state(first["request_id"], "failed")
    pipeline.deliver(submit, extra)
    pipeline.wait_for_state(extra["request_id"], "failed")
    pipeline.events.settle()

    (event,) = batch_events(pipeline, batch_id)
    assert (event["data"]["total"], event["data"]["failed"]) == (1, 1)
    assert BatchStore(pipeline.store).counts(batch_id).finished == 2  # shown as beyond_total


def test_an_invalid_declaration_is_recorded_as_failed_with_the_reason(
    pipeline, unique_name
) -> None:
    submit = pipeline.function("submit_task")
    message_id = unique_name("msg")

    response = pipeline.deliver(submit, declaration(unique_name("drop"), 0), message_id=message_id)

    assert response.status_code == 200
    record = pipeline.wait_for_state(message_id, "failed")
    assert (
        record.error is not None
        and "batch.total must be an integer >= 1" in (record.error["message"])
    )
