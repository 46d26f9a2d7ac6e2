"""Each injected fault does what it says (set at runtime through the control API)."""

from __future__ import annotations

import time

import httpx
import pytest
from google.cloud import storage

from local_stack.srp_emulator import SrpEmulatorProcess

from srp_emulator_helpers import CallbackReceiver, ReceivedCallback, get_task, submit


def wait_until_blob_exists(blob: storage.Blob, timeout: float = 20.0) -> None:
    """Poll the bucket until the object shows up (there is no notification to wait on)."""
    deadline = time.monotonic() + timeout
    while not blob.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{blob.name} never appeared")
        time.sleep(0.05)


def test_5xx_answers_before_anything_is_created(srp: SrpEmulatorProcess) -> None:
    srp.control.set_faults(
        srp_post_error_rate=1.0, srp_get_error_rate=1.0, error_5xx_statuses=[502, 503]
    )

    post = submit(srp)
    get = get_task(srp, "any")

    assert post.status_code in (502, 503)
    assert get.status_code in (502, 503)
    assert srp.control.tasks() == []
    logged = [entry["fault"] for entry in srp.control.requests()]
    assert logged == ["srp_post_error", "srp_get_error"]


def test_429_carries_retry_after(srp: SrpEmulatorProcess) -> None:
    srp.control.set_faults(srp_post_429_rate=1.0, srp_get_429_rate=1.0, retry_after_seconds=7)

    for response in (submit(srp), get_task(srp, "any")):
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert "throttled" in response.json()["detail"]
    assert srp.control.tasks() == []


def test_get_faults_leave_posts_alone(srp: SrpEmulatorProcess) -> None:
    srp.control.set_faults(srp_get_error_rate=1.0)

    post = submit(srp)

    assert post.status_code == 201
    assert get_task(srp, post.json()["id"]).status_code >= 500


def test_a_fraction_of_errors_is_reproducible_from_the_seed(srp: SrpEmulatorProcess) -> None:
    def statuses() -> list[int]:
        srp.control.set_faults(seed=42, srp_get_error_rate=0.3, srp_get_429_rate=0.3)
        return [get_task(srp, "unknown").status_code for _ in range(20)]

    first_run = statuses()
    second_run = statuses()

    assert first_run == second_run
    assert {404, 429} <= set(first_run)
    assert any(status >= 500 for status in first_run)


def test_a_hanging_request_times_out_and_creates_nothing(srp: SrpEmulatorProcess) -> None:
    srp.control.set_faults(srp_post_hang_rate=1.0, hang_seconds=5)

    with pytest.raises(httpx.ReadTimeout):
        submit(srp, timeout=0.5)

    assert srp.control.wait_for_requests(fault="srp_post_hang")[0]["method"] == "POST"
    assert srp.control.tasks() == []


def test_a_slow_post_creates_the_task_even_when_the_client_gives_up(
    srp: SrpEmulatorProcess,
) -> None:
    srp.control.set_faults(srp_post_slow_rate=1.0, slow_seconds=1.5)

    with pytest.raises(httpx.ReadTimeout):
        submit(srp, timeout=0.3)

    assert len(srp.control.wait_for_tasks()) == 1


def test_a_slow_get_still_answers(srp: SrpEmulatorProcess) -> None:
    task_id = submit(srp).json()["id"]
    srp.control.set_faults(srp_get_slow_rate=1.0, slow_seconds=0.3)

    response = get_task(srp, task_id, timeout=10)

    assert response.status_code == 200
    assert srp.control.requests(fault="srp_get_slow")[0]["query"] == {"id": task_id}


def test_a_lost_response_still_creates_the_task(srp: SrpEmulatorProcess) -> None:
    srp.control.set_faults(srp_lost_answer_rate=1.0)

    with pytest.raises(httpx.RemoteProtocolError):
        submit(srp)

    logged = srp.control.wait_for_requests(fault="srp_lost_answer")[0]
    tasks = srp.control.wait_for_tasks()
    assert [task["task"]["id"] for task in tasks] == [logged["task_id"]]


def test_a_failing_render_ends_failed_with_a_reason_and_no_file(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver, renders_bucket: storage.Bucket
) -> None:
    srp.control.set_faults(srp_render_fails_rate=1.0, srp_render_fails_reason="out of GPU memory")
    task_id = submit(srp, render_options={"callback_urls": callback_receiver.url}).json()["id"]

    failed = callback_receiver.wait_for(1, status="failed")[0]
    task = srp.control.wait_for_tasks(status="failed")[0]

    assert set(failed.body) == {"status", "task_id", "timestamp"}
    assert get_task(srp, task_id).json()["status"] == "failed"
    assert task["failure_reason"] == "out of GPU memory"
    assert task["output_files"] == []
    assert list(renders_bucket.list_blobs(prefix=f"render/demo_collection/{task_id}/")) == []


def test_duplicate_callbacks_repeat_every_status(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    srp.control.set_faults(srp_cb_duplicate_rate=1.0)
    submit(srp, render_options={"callback_urls": callback_receiver.url})

    in_progress = callback_receiver.wait_for(2, status="in_progress")
    done = callback_receiver.wait_for(2, status="done")

    assert in_progress[0].body == in_progress[1].body
    assert done[0].body == done[1].body


def test_out_of_order_callbacks_deliver_in_progress_after_done(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    srp.control.set_faults(srp_cb_out_of_order_rate=1.0)
    submit(srp, render_options={"callback_urls": callback_receiver.url})

    callback_receiver.wait_for(1, status="in_progress")

    assert [callback.body["status"] for callback in callback_receiver.received] == [
        "done",
        "in_progress",
    ]


def test_dropped_callbacks_are_never_sent(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    srp.control.set_faults(srp_cb_drop_rate=1.0)
    task_id = submit(srp, render_options={"callback_urls": callback_receiver.url}).json()["id"]

    dropped = srp.control.wait_for_callbacks(count=2, task_id=task_id, fault="srp_cb_drop")

    assert sorted(entry["status"] for entry in dropped) == ["done", "in_progress"]
    assert all(entry["attempts"] == [] for entry in dropped)
    assert callback_receiver.received == []
    assert get_task(srp, task_id).json()["status"] == "done"


def test_an_early_done_callback_arrives_before_the_file_is_in_the_bucket(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver, renders_bucket: storage.Bucket
) -> None:
    def file_exists_now(callback: ReceivedCallback) -> bool | None:
        if callback.body["status"] != "done":
            return None
        return renders_bucket.blob(callback.body["output_files"][0]).exists()

    callback_receiver.on_receive = file_exists_now
    srp.control.set_faults(srp_early_done_rate=1.0, srp_early_done_upload_delay=0.2)
    submit(srp, render_options={"callback_urls": callback_receiver.url})

    done = callback_receiver.wait_for(1, status="done")[0]

    assert done.observed is False
    wait_until_blob_exists(renders_bucket.blob(done.body["output_files"][0]))


def test_a_late_done_callback_comes_only_after_the_file_and_the_status(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver, renders_bucket: storage.Bucket
) -> None:
    def file_exists_now(callback: ReceivedCallback) -> bool | None:
        if callback.body["status"] != "done":
            return None
        return renders_bucket.blob(callback.body["output_files"][0]).exists()

    callback_receiver.on_receive = file_exists_now
    # The delay is held until the test releases it (far longer than the test ever waits), so
    # the order below is forced, not a matter of timing.
    srp.control.set_faults(srp_late_done_rate=1.0, srp_late_done_delay=600)
    task_id = submit(srp, render_options={"callback_urls": callback_receiver.url}).json()["id"]

    task = srp.control.wait_for_tasks(status="done")[0]
    callback_receiver.wait_for(1, status="in_progress")
    assert task["uploaded_at"] is not None
    assert get_task(srp, task_id).json()["status"] == "done"
    assert [c.body["status"] for c in callback_receiver.received] == ["in_progress"]

    srp.control.release()
    done = callback_receiver.wait_for(1, status="done")[0]

    assert done.observed is True
    # The emulator logs a delivery once the receiver has answered: wait for the entry.
    logged = srp.control.wait_for_callbacks(task_id=task_id, status="done", timeout=10)
    assert logged[0]["fault"] == "srp_late_done"


@pytest.mark.parametrize("statuses", [[502], [503], [504]])
def test_create_then_error_answers_5xx_although_the_task_exists_and_renders(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver, statuses: list[int]
) -> None:
    srp.control.set_faults(srp_create_then_error_rate=1.0, srp_create_then_error_statuses=statuses)

    response = submit(srp, render_options={"callback_urls": callback_receiver.url})

    assert response.status_code == statuses[0]
    assert "id" not in response.json()
    logged = srp.control.wait_for_requests(fault="srp_create_then_error")[0]
    assert logged["response_status"] == statuses[0]
    tasks = srp.control.wait_for_tasks()
    assert [task["task"]["id"] for task in tasks] == [logged["task_id"]]
    done = callback_receiver.wait_for(1, status="done")[0]
    assert done.body["task_id"] == logged["task_id"]
    assert get_task(srp, logged["task_id"]).json()["status"] == "done"


def test_create_then_hang_answers_after_the_client_gave_up_and_the_task_renders(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    # Held until released: the client's timeout always comes first.
    srp.control.set_faults(srp_create_then_hang_rate=1.0, srp_create_then_hang_seconds=600)

    with pytest.raises(httpx.ReadTimeout):
        submit(srp, render_options={"callback_urls": callback_receiver.url}, timeout=0.5)

    logged = srp.control.wait_for_requests(fault="srp_create_then_hang")[0]
    assert logged["response_status"] == 201
    done = callback_receiver.wait_for(1, status="done")[0]
    assert done.body["task_id"] == logged["task_id"]
    srp.control.release()  # the held handler answers a client that has gone


def test_create_faults_hit_posts_only_and_follow_the_seed(srp: SrpEmulatorProcess) -> None:
    srp.control.pause()  # nothing renders: only the POSTs are compared

    def outcomes() -> list[int]:
        srp.control.set_faults(
            seed=5, srp_create_then_error_rate=0.5, srp_create_then_error_statuses=[502, 503, 504]
        )
        return [submit(srp).status_code for _ in range(12)]

    first, second = outcomes(), outcomes()

    assert first == second
    assert 201 in first and any(status >= 502 for status in first)
    # Every POST created its task, whatever it answered.
    assert len(srp.control.tasks(count=24, wait=10)) == 24
    task_id = srp.control.tasks()[0]["task"]["id"]
    assert all(get_task(srp, task_id).status_code == 200 for _ in range(5))


def test_render_faults_replay_from_the_seed_whatever_the_interleaving(
    srp: SrpEmulatorProcess,
) -> None:
    def outcomes() -> list[str]:
        srp.control.reset()  # task numbers, which seed each task's faults, restart at 1
        srp.control.set_faults(seed=9, srp_render_fails_rate=0.5, srp_post_error_rate=0.3)
        for _ in range(8):
            submit(srp)  # a 5xx creates nothing; the others are tasks 1, 2, ...
        deadline = time.monotonic() + 30
        while True:
            statuses = [task["task"]["status"] for task in srp.control.tasks()]
            if all(status in ("done", "failed") for status in statuses):
                return statuses
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)

    first, second = outcomes(), outcomes()

    assert first == second
    assert {"done", "failed"} <= set(first)
