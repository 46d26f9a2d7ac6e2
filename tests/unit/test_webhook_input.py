"""Hostile webhook input: malformed tokens, deep JSON, paths outside the task's folder."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from srp_bundle.callback_auth import CallbackSigner, legacy_callback_token
from srp_bundle.errors import InvalidMessageError
from srp_bundle.events import PublishOutcome
from srp_bundle.json_limits import nesting_depth, parse_json
from srp_bundle.reconciliation import Reconciler
from srp_bundle.render_paths import check_output_files, render_path, task_folder
from srp_bundle.settings import load_settings
from srp_bundle.srp_models import SrpCollection, SrpTask
from srp_bundle.task_state import State, TaskRecord, Transition, advance

SECRET = "s3cret-s3cret-s3cret"
SIGNER = CallbackSigner("scope", (SECRET, None))
NONCE = "0" * 32
TASK = "0b7e4a53-4bd5-4f2e-9a49-1c6c3a8f0d11"
GOOD = f"render/demo_collection/{TASK}/render.png"


@pytest.mark.parametrize(
    "token",
    [
        "v1." + "é" * 64,  # non-ASCII: hmac.compare_digest raises TypeError on it
        "v1.é",
        "\u00e9" + legacy_callback_token(SECRET, "r")[1:],
        legacy_callback_token(SECRET, "r") + "\n",
        legacy_callback_token(SECRET, "r").upper(),
        "\u00e9" + SIGNER.token("r", NONCE)[1:],
        SIGNER.token("r", NONCE).upper(),
        "v2." + "0" * 64,
        "v3." + "0" * 64,
        "v1." + "0" * 63,
        "v1." + "0" * 65,
        "\x00" * 67,
        "x" * 10_000,
    ],
)
def test_every_malformed_token_is_simply_invalid(token: str) -> None:
    assert SIGNER.is_valid(token, "r", None) is False
    assert SIGNER.is_valid(token, "r", NONCE) is False


def test_a_hostile_request_id_never_breaks_the_check() -> None:
    for request_id in ("é", "\udcff", "a\x00b", "x" * 10_000):
        assert not SIGNER.is_valid("v1." + "0" * 64, request_id, None)
        assert not SIGNER.is_valid("v2." + "0" * 64, request_id, NONCE)
    assert SIGNER.is_valid(legacy_callback_token(SECRET, "\udcff"), "\udcff", None)
    assert SIGNER.is_valid(SIGNER.token("\udcff", NONCE), "\udcff", NONCE)


def test_depth_is_measured_without_recursion_and_ignores_brackets_in_strings() -> None:
    assert nesting_depth('{"a": [1, {"b": "[[[[{{{{"}]}', 100) == 3
    assert nesting_depth("[" * 100_000, 10) == 11  # stops counting past the limit
    assert nesting_depth(r'["\"[[[", "\\", [[]]]', 100) == 3


def test_json_deep_enough_for_a_recursion_error_is_refused_with_the_limit() -> None:
    body = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    with pytest.raises(RecursionError):
        json.loads(body)  # what the handlers did before: a 500
    with pytest.raises(InvalidMessageError, match="deeper than 16 levels"):
        parse_json(body, what="body", max_bytes=1 << 20, max_depth=16)
    with pytest.raises(InvalidMessageError, match="deeper than 16 levels"):
        parse_json(b"[" * 17 + b"]" * 17, what="body", max_bytes=1 << 20, max_depth=16)


def test_json_within_the_limits_parses_like_json_loads() -> None:
    nested: object = "leaf"
    for _ in range(16):
        nested = [nested]
    data = json.dumps({"x": nested, "s": "[[[["}).encode()
    assert parse_json(data, what="body", max_bytes=1 << 20, max_depth=17) == json.loads(data)
    utf16 = json.dumps({"k": "[é]"}).encode("utf-16")
    assert parse_json(utf16, what="body", max_bytes=1 << 20, max_depth=1) == {"k": "[é]"}
    with pytest.raises(InvalidMessageError, match="more than the 3 allowed"):
        parse_json(b"[1,2]", what="body", max_bytes=3, max_depth=5)
    with pytest.raises(InvalidMessageError, match="not JSON"):
        parse_json(b"\xff\xfe\x00", what="body", max_bytes=100, max_depth=5)


def test_a_path_in_the_task_own_folder_is_accepted() -> None:
    paths = (GOOD, f"render/demo_collection/{TASK}/extra/scene.glb")
    assert check_output_files(paths, TASK) == paths
    assert check_output_files(None, TASK) == ()


@pytest.mark.parametrize(
    "path",
    [
        f"render/c/../{TASK}/render.png",
        f"render/c/{TASK}/../../secrets/key.png",
        f"render/c/{TASK}/%2e%2e/render.png",
        f"render/%2e%2e/{TASK}/render.png",
        f"render/c/{TASK}/render%2Epng",
        f"render/c/{TASK}/render.png\x00.jpg",
        f"render/c/{TASK}/render.png\n",
        f"render/c/{TASK}\u2215render.png",  # DIVISION SLASH
        f"render/c/{TASK}/\uff0e\uff0e/render.png",  # FULLWIDTH FULL STOP
        f"render/c\u2044x/{TASK}/render.png",  # FRACTION SLASH
        f"render\\c\\{TASK}\\render.png",
        f"render/c/{TASK}/a\\b.png",
        f"/render/c/{TASK}/render.png",
        f"render//c/{TASK}/render.png",
        f"render/c/{TASK}/",
        f"render/c/{TASK}/.hidden",
        f"render/c/{TASK}/./render.png",
        f"render://c/{TASK}/render.png",
        f"gs://bucket/render/c/{TASK}/render.png",
        f"derivatives/c/{TASK}/512.webp",
        f"render/c/{TASK}/a/b/c/d/e/render.png",
        f"render/c/{TASK}/{'x' * 600}.png",
        f"render/ c/{TASK}/render.png",
        "render/c/1d6f4f6e-0000-4000-8000-000000000000/render.png",  # another task's folder
        f"render/c/{TASK.upper()}x/render.png",
    ],
)
def test_a_path_outside_the_strict_grammar_or_the_task_folder_is_refused(path: str) -> None:
    with pytest.raises(InvalidMessageError, match=r"output_files\[1\]"):
        check_output_files((GOOD, path), TASK)


def test_all_files_of_a_task_sit_in_one_collection_folder() -> None:
    with pytest.raises(InvalidMessageError, match="more than one collection"):
        check_output_files((GOOD, f"render/other/{TASK}/render.png"), TASK)


def test_paths_built_from_srp_names_are_checked_too() -> None:
    assert render_path("demo_collection", TASK) == GOOD
    assert task_folder("demo_collection", TASK) == f"render/demo_collection/{TASK}/"
    for name in ("..", ".", "", "a/b", "%2e%2e", "a\\b", "x\u2215y", "a\x00", "n\n"):
        with pytest.raises(InvalidMessageError, match="not a safe path segment"):
            render_path(name, TASK)


class _MemoryStore:
    """Just enough of TaskStore for one reconcile step: the real state machine, in memory."""

    def __init__(self, record: TaskRecord) -> None:
        self.records = {record.request_id: record}
        self.changes: list[Any] = []

    def apply(self, request_id: str, change: Any, **options: Any) -> Transition:
        self.changes.append(change)
        transition = advance(self.records[request_id], change)
        self.records[request_id] = transition.record
        return transition

    def confirm_published(self, event_ids: Any) -> None:
        pass

    def callback_header_values(self, record: TaskRecord) -> tuple[str, ...]:
        return ()


class _Srp:
    def __init__(self, task: SrpTask) -> None:
        self.task = task

    def get_task(self, task_id: str, *, secrets: tuple[str, ...] = ()) -> SrpTask:
        return self.task


class _Publisher:
    def publish(self, events: Any) -> PublishOutcome:
        return PublishOutcome(published=[event["event_id"] for event in events])


@pytest.mark.parametrize(
    "collection_name", ["demo_collection", "../../secrets", "%2e%2e", "a\u2215b", ""]
)
def test_reconcile_never_builds_a_render_path_from_srp_s_collection_name(
    collection_name: str,
) -> None:
    # A done task's files may be a PNG, a video, a sound, a model: reconcile names none of
    # them (GET does not list them), so no collection name ever becomes a path.
    record = TaskRecord(request_id="r-1", collection_id="c", state=State.SUBMITTED, task_id=TASK)
    store = _MemoryStore(record)
    task = SrpTask(id=TASK, status="done", collection=SrpCollection(name=collection_name))
    # Reconcile works on its submitter's store, client and publisher.
    submitter = SimpleNamespace(store=store, srp=_Srp(task), publisher=_Publisher())
    reconciler = Reconciler(
        load_settings(None, {"GOOGLE_CLOUD_PROJECT": "p"}),
        submitter,  # type: ignore[arg-type]
    )

    reconciler._reconcile(record)

    assert [change.output_files for change in store.changes] == [()]
    assert store.records["r-1"].state == State.RENDERED
