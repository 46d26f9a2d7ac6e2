"""The emulator against SRP's documented API (docs/srp-api.md), field by field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from google.cloud import storage

from local_stack.srp_emulator import (
    DISABLED_SAMPLE_COLLECTION_UID,
    SAMPLE_COLLECTION_UID,
    SEED_EXAMPLE_INPUT,
    SrpEmulatorProcess,
)

from srp_emulator_helpers import (
    API_KEY,
    CALLBACK_ATTEMPTS,
    CALLBACK_TIMESTAMP,
    COLLECTION_KEYS,
    CREATION_DATE,
    PARALLEL,
    SECOND_API_KEY,
    TASK_KEYS,
    CallbackReceiver,
    get_task,
    submit,
)

CALLBACK_URL = "http://127.0.0.1:9/"


def assert_seed_task_shape(task: dict[str, Any]) -> None:
    """Every field of the seed's GET example, with its type, and nothing else."""
    assert set(task) == TASK_KEYS
    assert isinstance(task["id"], str) and task["id"]
    collection = task["collection"]
    assert set(collection) == COLLECTION_KEYS
    assert collection["uid"] == SAMPLE_COLLECTION_UID
    assert collection["name"] == "demo_collection"
    assert isinstance(collection["label"], str)
    assert isinstance(collection["id"], int)
    assert collection["enabled"] is True
    assert isinstance(collection["tags"], list)
    assert set(collection["plugin"]) == {"id", "label", "name"}
    assert isinstance(collection["plugin"]["id"], int)
    assert isinstance(collection["options"], dict)
    assert CREATION_DATE.match(task["creation_date"]), task["creation_date"]
    assert task["status"] in {"new", "in_progress", "done", "failed"}
    assert task["enabled"] is True
    assert set(task["options"]) == {"priority", "callback_urls"}
    assert isinstance(task["options"]["priority"], int)
    assert isinstance(task["options"]["callback_urls"], list)
    assert set(task["created_by"]) == {"id", "name"}
    assert isinstance(task["created_by"]["id"], int)
    assert isinstance(task["tags"], list)
    assert all(isinstance(job, int) for job in task["jobs"])


def test_post_answers_201_with_the_task_in_the_seed_shape(srp: SrpEmulatorProcess) -> None:
    callbacks = ["http://127.0.0.1:9/api/callback/"]
    response = submit(srp, render_options={"callback_urls": callbacks})

    assert response.status_code == 201
    task = response.json()
    assert_seed_task_shape(task)
    assert task["status"] == "new"
    assert task["input_data"] == SEED_EXAMPLE_INPUT
    assert task["options"] == {"priority": 50, "callback_urls": callbacks}
    assert task["created_by"] == {"id": 1, "name": "api-user-1"}
    assert task["jobs"] == []


def test_get_returns_the_documented_shape_through_the_lifecycle(
    srp: SrpEmulatorProcess,
) -> None:
    task_id = submit(srp, render_options={"priority": 70}).json()["id"]
    srp.control.wait_for_tasks(status="done", id=task_id)

    response = get_task(srp, task_id)

    assert response.status_code == 200
    task = response.json()
    assert_seed_task_shape(task)
    assert task["id"] == task_id
    assert task["status"] == "done"
    assert task["options"]["priority"] == 70
    assert len(task["jobs"]) == 1


def test_get_of_an_unknown_task_is_404_and_a_missing_id_is_400(srp: SrpEmulatorProcess) -> None:
    unknown = get_task(srp, "00000000-0000-0000-0000-000000000000")
    missing = httpx.get(f"{srp.url}/api/v1/tasks", headers={"Authorization": f"Bearer {API_KEY}"})

    assert unknown.status_code == 404
    assert "not found" in unknown.json()["detail"]
    assert missing.status_code == 400
    assert missing.json()["field"] == "id"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {API_KEY}", "Bearer", API_KEY],
    ids=["missing", "wrong-key", "wrong-scheme", "empty-key", "no-scheme"],
)
def test_post_and_get_without_a_valid_bearer_key_are_401_json(
    srp: SrpEmulatorProcess, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    body = {"collection_id": SAMPLE_COLLECTION_UID, "input_data": SEED_EXAMPLE_INPUT}

    post = httpx.post(f"{srp.url}/api/v1/tasks", json=body, headers=headers)
    get = httpx.get(f"{srp.url}/api/v1/tasks", params={"id": "x"}, headers=headers)

    for response in (post, get):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.json()["detail"]
    assert srp.control.tasks() == []


def test_every_configured_key_is_accepted_as_its_own_user(srp: SrpEmulatorProcess) -> None:
    response = submit(srp, api_key=SECOND_API_KEY)

    assert response.status_code == 201
    assert response.json()["created_by"] == {"id": 2, "name": "api-user-2"}


@pytest.mark.parametrize(
    ("collection_id", "expected_words"),
    [
        ("5b0c3a1e-0000-4000-8000-000000000000", "does not exist"),
        (DISABLED_SAMPLE_COLLECTION_UID, "is disabled"),
    ],
    ids=["unknown", "disabled"],
)
def test_unknown_or_disabled_collections_are_refused_with_a_message(
    srp: SrpEmulatorProcess, collection_id: str, expected_words: str
) -> None:
    response = submit(srp, collection_id=collection_id, input_data={"bg": "Plain.png"})

    assert response.status_code == 400
    assert response.json()["field"] == "collection_id"
    assert expected_words in response.json()["detail"]
    assert srp.control.tasks() == []


@pytest.mark.parametrize(
    ("change", "field_path"),
    [
        ({"pants": "kilt"}, "input_data.pants"),
        ({"shoe_color": "red"}, "input_data.shoe_color"),
        ({"hat": "cap"}, "input_data.hat"),
        ({"bg": None}, "input_data.bg"),
        ({"shoe": ["4"]}, "input_data.shoe"),
    ],
    ids=["unknown-value", "bad-colour", "unknown-trait", "missing-required", "not-a-string"],
)
def test_input_data_the_collection_cannot_render_is_refused_naming_the_field(
    srp: SrpEmulatorProcess, change: dict[str, Any], field_path: str
) -> None:
    input_data = {**SEED_EXAMPLE_INPUT, **change}
    input_data = {key: value for key, value in input_data.items() if value is not None}

    response = submit(srp, input_data=input_data)

    assert response.status_code == 400
    assert response.json()["field"] == field_path
    assert field_path in response.json()["detail"]


@pytest.mark.parametrize(
    ("callback_urls", "field_path"),
    [
        (42, "render_options.callback_urls"),
        (["ftp://example.com/cb"], "render_options.callback_urls[0]"),
        ([{"method": "post"}], "render_options.callback_urls[0].url"),
        ([{"url": CALLBACK_URL, "method": "FETCH"}], "render_options.callback_urls[0].method"),
        ([{"url": CALLBACK_URL, "headers": {"a": 1}}], "render_options.callback_urls[0].headers"),
    ],
    ids=["not-a-list", "not-http", "no-url", "bad-method", "bad-headers"],
)  # fmt: skip
def test_malformed_callback_urls_are_refused_naming_the_entry(
    srp: SrpEmulatorProcess, callback_urls: Any, field_path: str
) -> None:
    response = submit(srp, render_options={"callback_urls": callback_urls})

    assert response.status_code == 400
    assert response.json()["field"] == field_path


def test_a_string_callback_gets_a_post_per_status_with_the_seed_payload(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver, renders_bucket: storage.Bucket
) -> None:
    url = f"{callback_receiver.url}/api/callback/"
    task_id = submit(srp, render_options={"callback_urls": url}).json()["id"]

    in_progress = callback_receiver.wait_for(1, status="in_progress")[0]
    done = callback_receiver.wait_for(1, status="done")[0]

    for callback in (in_progress, done):
        assert callback.method == "POST"
        assert callback.path == "/api/callback/"
        assert callback.headers["content-type"] == "application/json"
        assert callback.body["task_id"] == task_id
        assert CALLBACK_TIMESTAMP.match(callback.body["timestamp"]), callback.body["timestamp"]
    assert set(in_progress.body) == {"status", "task_id", "timestamp"}
    assert set(done.body) == {"output_files", "status", "task_id", "timestamp"}
    expected_path = f"render/demo_collection/{task_id}/render.png"
    assert done.body["output_files"] == [expected_path]
    assert renders_bucket.blob(expected_path).download_as_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert srp.control.tasks(id=task_id)[0]["task"]["options"]["callback_urls"] == [url]


def test_a_list_of_strings_calls_back_every_url(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    urls = [f"{callback_receiver.url}/first/", f"{callback_receiver.url}/second/"]
    submit(srp, render_options={"callback_urls": urls})

    done = callback_receiver.wait_for(2, status="done")

    assert sorted(callback.path for callback in done) == ["/first/", "/second/"]


@pytest.mark.parametrize("wrapped_in_list", [True, False], ids=["in-a-list", "alone"])
def test_the_dict_form_honours_method_headers_and_data(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver, wrapped_in_list: bool
) -> None:
    entry = {
        "url": f"{callback_receiver.url}/hook?request=r-1",
        "method": "put",
        "headers": {"custom": "header", "X-Callback-Token": "token-123"},
        "data": {"extra": "data", "status": "forged"},
    }
    callback_urls: Any = [entry] if wrapped_in_list else entry
    task_id = submit(srp, render_options={"callback_urls": callback_urls}).json()["id"]

    done = callback_receiver.wait_for(1, status="done")[0]

    assert done.method == "PUT"
    assert done.query == {"request": ["r-1"]}
    assert done.headers["custom"] == "header"
    assert done.headers["x-callback-token"] == "token-123"
    # `data` is merged in, but the service's own fields win: the status stays the real one.
    assert done.body["extra"] == "data"
    assert done.body["status"] == "done"
    assert done.body["task_id"] == task_id
    assert set(done.body) == {"extra", "output_files", "status", "task_id", "timestamp"}


def test_a_failed_callback_delivery_is_retried_until_it_succeeds(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.planned_statuses = [503, 500]
    task_id = submit(srp, render_options={"callback_urls": callback_receiver.url}).json()["id"]

    received = callback_receiver.wait_for(3, status="in_progress")
    log = srp.control.wait_for_callbacks(task_id=task_id, status="in_progress")[0]

    assert [callback.body for callback in received] == [received[0].body] * 3
    assert [attempt["response_status"] for attempt in log["attempts"]] == [503, 500, 200]
    assert log["delivered"] is True


def test_a_callback_that_keeps_failing_is_given_up_after_the_configured_attempts(
    srp: SrpEmulatorProcess, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.planned_statuses = [500] * CALLBACK_ATTEMPTS
    task_id = submit(srp, render_options={"callback_urls": callback_receiver.url}).json()["id"]

    log = srp.control.wait_for_callbacks(task_id=task_id, status="in_progress")[0]

    assert len(log["attempts"]) == CALLBACK_ATTEMPTS
    assert log["delivered"] is False


def test_priority_orders_the_queue(srp: SrpEmulatorProcess) -> None:
    srp.control.pause()
    ids_by_priority = {
        priority: submit(srp, render_options={"priority": priority}).json()["id"]
        for priority in (10, 90, 50, 90)
    }
    srp.control.resume()

    tasks = srp.control.wait_for_tasks(status="done", count=4)

    start_order = {task["task"]["id"]: task["start_order"] for task in tasks}
    assert start_order[ids_by_priority[90]] < start_order[ids_by_priority[50]]
    assert start_order[ids_by_priority[50]] < start_order[ids_by_priority[10]]


def test_equal_priorities_start_first_come_first_served(srp: SrpEmulatorProcess) -> None:
    srp.control.pause()
    task_ids = [submit(srp).json()["id"] for _ in range(4)]
    srp.control.resume()

    tasks = srp.control.wait_for_tasks(status="done", count=4)

    start_order = {task["task"]["id"]: task["start_order"] for task in tasks}
    orders = [start_order[task_id] for task_id in task_ids]
    assert orders == sorted(orders)


def test_no_more_renders_run_at_once_than_configured(srp: SrpEmulatorProcess) -> None:
    for _ in range(6):
        submit(srp)

    srp.control.wait_for_tasks(status="done", count=6)

    assert 1 <= srp.control.stats()["max_active_renders"] <= PARALLEL
