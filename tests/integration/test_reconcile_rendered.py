"""reconcile_tasks under functions-framework: nothing stays `rendered` forever.

SRP said done, but a storage event was lost (or a file never came): past
RENDERED_DEADLINE_SECONDS reconcile re-drives post-processing once from the renders
bucket, and a record still `rendered` at a later run fails with `postprocess_deadline`.
"""

from __future__ import annotations

import time
import uuid

import pytest
import pyvips

from local_stack import media_samples
from srp_bundle.task_state import SrpStatusReported, State, TaskRecord, TaskSubmitted

pytestmark = pytest.mark.integration

DEADLINE = {"STALE_AFTER_SECONDS": "1", "RENDERED_DEADLINE_SECONDS": "1"}


def rendered_record(pipeline, file_names: tuple[str, ...]) -> tuple[str, list[str]]:
    """A record SRP reported done with these output files; returns its id and their paths."""
    request_id, task_id = f"req-{uuid.uuid4().hex[:10]}", str(uuid.uuid4())
    pipeline.store.create(TaskRecord(request_id=request_id, collection_id=str(uuid.uuid4())))
    pipeline.apply(request_id, TaskSubmitted(task_id))
    paths = [f"render/deadline/{task_id}/{name}" for name in file_names]
    pipeline.apply(request_id, SrpStatusReported(task_id, "done", tuple(paths)))
    assert pipeline.record(request_id).state == State.RENDERED
    return request_id, paths


def write_render(pipeline, path: str, data: bytes) -> None:
    """SRP writes a file; its storage event is lost (no postprocess_render runs)."""
    pipeline.storage.bucket(pipeline.renders_bucket).blob(path).upload_from_string(data)


def reconcile_after_the_deadline(pipeline) -> None:
    """Let the record go stale and past its deadline, then run reconcile once."""
    time.sleep(1.2)
    reconcile = pipeline.function("reconcile_tasks", **DEADLINE)
    assert pipeline.deliver(reconcile, {}, topic="reconcile").status_code == 200


def test_a_lost_storage_event_is_re_driven_and_completes(pipeline) -> None:
    request_id, (png, clip) = rendered_record(pipeline, ("render.png", "render.mp4"))
    write_render(pipeline, png, _png())
    write_render(pipeline, clip, media_samples.video("mp4", seconds=1.0))

    reconcile_after_the_deadline(pipeline)

    record = pipeline.record(request_id)
    assert record.state == State.COMPLETED, record.error
    assert record.redriven_at is not None
    assert {d["source"] for d in record.derivatives} == {png, clip}
    pipeline.events.wait_for(request_id, "render.completed")
    pipeline.events.settle(0.3)
    assert pipeline.events.types(request_id).count("render.completed") == 1


def test_a_file_that_never_comes_fails_the_request_after_one_re_drive(pipeline) -> None:
    request_id, (png, clip) = rendered_record(pipeline, ("render.png", "render.mp4"))
    write_render(pipeline, png, _png())  # the video never arrives

    reconcile_after_the_deadline(pipeline)

    record = pipeline.record(request_id)
    assert record.state == State.RENDERED
    assert record.redriven_at is not None
    assert [f["path"] for f in record.files] == [png]  # re-driven from the bucket
    kinds = [entry["kind"] for entry in pipeline.store.event_log(request_id)]
    assert kinds.count("postprocess_redriven") == 1

    reconcile_after_the_deadline(pipeline)

    record = pipeline.record(request_id)
    assert record.state == State.FAILED
    assert record.error is not None and record.error["code"] == "postprocess_deadline"
    assert clip in record.error["message"] and png not in record.error["message"]
    assert pipeline.events.wait_for(request_id, "task.failed")
    kinds = [entry["kind"] for entry in pipeline.store.event_log(request_id)]
    assert kinds.count("postprocess_redriven") == 1  # re-driven once only


def _png() -> bytes:
    image = pyvips.Image.black(64, 64).new_from_image([200, 60, 30]).cast("uchar")
    return bytes(image.pngsave_buffer())
