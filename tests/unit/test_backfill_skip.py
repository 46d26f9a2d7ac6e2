"""backfill's choice of what to process when a task has several output files."""

from __future__ import annotations

import argparse

from srp_bundle.cli._backfill import _skip_reason
from srp_bundle.settings import Settings
from srp_bundle.task_state import State, TaskRecord
from srp_bundle.trigger_events import StorageObject

TASK = "7f6c1c52-0d36-4a7f-9d1e-1a2b3c4d5e6f"
PNG, VIDEO = f"render/demo/{TASK}/render.png", f"render/demo/{TASK}/render.mp4"
SETTINGS = Settings(project_id="p", renders_bucket_name="r", derivatives_bucket_name="d")
ARGS = argparse.Namespace(collection_id=None, batch=None)


class OneRecordStore:
    """The store's one read backfill makes, answered from memory."""

    def __init__(self, record: TaskRecord) -> None:
        self.record = record

    def find_by_task_id(self, task_id: str) -> TaskRecord | None:
        return self.record if task_id == self.record.task_id else None


def test_a_file_not_yet_processed_is_backfilled_beside_one_that_is() -> None:
    record = TaskRecord(
        request_id="req",
        collection_id="c",
        task_id=TASK,
        state=State.RENDERED,
        output_files=[PNG, VIDEO],
        files=[{"path": PNG, "generation": 1, "kind": "image"}],
        derivatives=[{"path": "d/512.webp", "source": PNG, "role": "thumbnail"}],
    )
    store = OneRecordStore(record)

    assert _skip_reason(SETTINGS, store, StorageObject("r", PNG, 1), ARGS) == "with derivatives"
    assert _skip_reason(SETTINGS, store, StorageObject("r", VIDEO, 2), ARGS) is None
