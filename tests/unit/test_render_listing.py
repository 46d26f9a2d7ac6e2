"""The files a done request completes on: SRP's answer, else the task's render folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from srp_bundle.render_listing import (
    MAX_OUTPUT_FILES,
    RenderFolder,
    trusted_output_files,
    warn_if_untrusted,
)
from srp_bundle.settings import Settings
from srp_bundle.srp_models import SrpCollection, SrpTask

TASK = "0b7e4a53-4bd5-4f2e-9a49-1c6c3a8f0d11"
FOLDER = f"render/demo/{TASK}/"


@dataclass
class _Blob:
    name: str


class _Bucket:
    """The one call RenderFolder makes, over a fixed list of names (the I/O edge)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.prefixes: list[str] = []

    def list_blobs(self, prefix: str = "", max_results: int | None = None) -> Any:
        self.prefixes.append(prefix)
        return [_Blob(n) for n in sorted(self.names) if n.startswith(prefix)][:max_results]


class _Client:
    def __init__(self, bucket: _Bucket) -> None:
        self._bucket = bucket

    def bucket(self, name: str) -> _Bucket:
        assert name == "renders"
        return self._bucket


def _folder(names: list[str]) -> tuple[RenderFolder, _Bucket]:
    bucket = _Bucket(names)
    client = _Client(bucket)
    return RenderFolder(lambda: client, "renders", Settings("p").render_path_pattern), bucket


def _task(**fields: Any) -> SrpTask:
    return SrpTask(id=TASK, status="done", collection=SrpCollection(name="demo"), **fields)


def test_the_folder_lists_every_file_of_the_task_and_nothing_else() -> None:
    folder, bucket = _folder(
        [
            FOLDER + "render.png",
            FOLDER + "frames/0001.png",
            FOLDER + "turntable.mp4",
            FOLDER + "bad name.png",  # not a safe segment: post-processing skips it too
            f"render/demo/{TASK}x/render.png",  # another folder sharing the prefix
            "render/demo/11111111-2222-4333-8444-555555555555/render.png",
        ]
    )
    assert trusted_output_files(_task(), folder) == (
        FOLDER + "frames/0001.png",
        FOLDER + "render.png",
        FOLDER + "turntable.mp4",
    )
    assert bucket.prefixes == [FOLDER]


def test_srp_answer_listing_files_wins_over_the_folder() -> None:
    folder, bucket = _folder([FOLDER + "render.png", FOLDER + "extra.png"])
    assert trusted_output_files(_task(output_files=(FOLDER + "render.png",)), folder) == (
        FOLDER + "render.png",
    )
    assert bucket.prefixes == []  # no listing needed


def test_an_unsafe_collection_name_from_srp_lists_nothing() -> None:
    folder, bucket = _folder([FOLDER + "render.png"])
    task = SrpTask(id=TASK, status="done", collection=SrpCollection(name=".."))
    assert trusted_output_files(task, folder) == ()
    assert bucket.prefixes == []


def test_without_srp_collection_name_only_the_stand_in_names_the_folder() -> None:
    folder, _ = _folder([FOLDER + "render.png"])
    bare = SrpTask(id=TASK, status="done")
    assert trusted_output_files(bare, folder) == ()
    assert trusted_output_files(bare, folder, "demo") == (FOLDER + "render.png",)
    assert trusted_output_files(bare, None, "demo") == ()


def test_a_huge_folder_is_listed_up_to_the_bound() -> None:
    folder, _ = _folder([f"{FOLDER}f{i:04}.png" for i in range(MAX_OUTPUT_FILES + 50)])
    assert len(trusted_output_files(_task(), folder)) == MAX_OUTPUT_FILES


def test_files_a_callback_lists_that_srp_does_not_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        extra = warn_if_untrusted(
            [FOLDER + "render.png", FOLDER + "ghost.png"], [FOLDER + "render.png"], TASK
        )
    assert extra == [FOLDER + "ghost.png"]
    assert "ghost.png" in caplog.text
    assert warn_if_untrusted([FOLDER + "render.png"], [FOLDER + "render.png"], TASK) == []
