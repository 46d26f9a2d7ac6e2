"""Renders are real PNGs: deterministic, layered, coloured where the layer is."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage
from PIL import Image, ImageChops

from local_stack.srp_emulator import (
    MEDIA_SAMPLES,
    SAMPLE_COLLECTION_UID,
    SEED_EXAMPLE_INPUT,
    SrpEmulatorProcess,
)
from local_stack.srp_emulator.catalog import (
    SAMPLE_COLLECTIONS_FILE,
    Collection,
    CollectionConfigError,
    load_collections,
)
from local_stack.srp_emulator.renderer import DEFAULT_RENDER_SIZE, layer_box, render_png
from srp_bundle import media
from srp_bundle.media_budget import MediaBudget

from srp_emulator_helpers import RENDER_SIZE, submit

SIZE = 256


@pytest.fixture(scope="module")
def collection() -> Collection:
    """The sample collection shipped with the emulator."""
    return load_collections(SAMPLE_COLLECTIONS_FILE)[SAMPLE_COLLECTION_UID]


def render(collection: Collection, size: int = SIZE, **changes: Any) -> Image.Image:
    """Render the seed's example input with some traits changed."""
    input_data = collection.validate_input({**SEED_EXAMPLE_INPUT, **changes})
    return Image.open(io.BytesIO(render_png(collection, input_data, size)))


def changed_box(first: Image.Image, second: Image.Image) -> tuple[int, int, int, int] | None:
    """Bounding box of the pixels that differ."""
    return ImageChops.difference(first, second).getbbox(alpha_only=False)


def test_the_same_input_renders_the_same_bytes(collection: Collection) -> None:
    input_data = collection.validate_input(SEED_EXAMPLE_INPUT)

    assert render_png(collection, input_data, SIZE) == render_png(collection, input_data, SIZE)


def test_the_default_render_is_a_2048_square_rgba_png(collection: Collection) -> None:
    image = render(collection, size=DEFAULT_RENDER_SIZE)

    assert image.format == "PNG"
    assert image.mode == "RGBA"
    assert image.size == (2048, 2048)


@pytest.mark.parametrize(
    ("trait", "changes"),
    [
        ("pants", {"pants_color": "#00ff00"}),
        ("shoe", {"shoe_color": "#0000ff"}),
        ("pants", {"pants": "baggy"}),
        ("shoe", {"shoe": "3"}),
        ("platform", {"platform": "legendary"}),
    ],
)
def test_changing_a_trait_or_colour_changes_pixels_only_where_its_layer_is(
    collection: Collection, trait: str, changes: dict[str, str]
) -> None:
    left, top, right, bottom = layer_box(collection, trait, SIZE)

    difference = changed_box(render(collection), render(collection, **changes))

    assert difference is not None
    assert left <= difference[0] and top <= difference[1]
    assert difference[2] <= right and difference[3] <= bottom


def test_a_layer_is_painted_in_its_colour(collection: Collection) -> None:
    left, top, right, bottom = layer_box(collection, "pants", SIZE)
    image = render(collection, pants_color="#00ff00")

    assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (0, 255, 0, 255)


def test_the_background_covers_the_whole_canvas(collection: Collection) -> None:
    difference = changed_box(render(collection), render(collection, bg="Plain.png"))

    assert difference == (0, 0, SIZE, SIZE)


def test_renders_served_by_the_emulator_are_identical_for_identical_input(
    srp: SrpEmulatorProcess, renders_bucket: storage.Bucket
) -> None:
    first, second = (submit(srp).json()["id"] for _ in range(2))
    tasks = srp.control.wait_for_tasks(status="done", count=2)
    paths = {task["task"]["id"]: task["output_files"][0] for task in tasks}

    first_bytes = renders_bucket.blob(paths[first]).download_as_bytes()
    second_bytes = renders_bucket.blob(paths[second]).download_as_bytes()

    assert first_bytes == second_bytes
    assert Image.open(io.BytesIO(first_bytes)).size == (RENDER_SIZE, RENDER_SIZE)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"collections": []}, "one or more"),
        ({"collections": [{"uid": "not-a-uuid", "id": 1, "name": "x", "layers": []}]}, "uid"),
        (
            {
                "collections": [
                    {
                        "uid": "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01",
                        "id": 1,
                        "name": "x",
                        "layers": [{"trait": "bg", "values": {"a": "hexagon"}}],
                    }
                ]
            },
            "unknown shape 'hexagon'",
        ),
        (
            {
                "collections": [
                    {
                        "uid": "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01",
                        "id": 1,
                        "name": "x",
                        "options": {"outputs": ["scene.blend"]},
                        "layers": [{"trait": "bg", "values": {"a": "solid"}}],
                    }
                ]
            },
            "cannot render 'scene.blend'",
        ),
    ],
    ids=["empty", "bad-uid", "unknown-shape", "unknown-output"],
)
def test_a_malformed_collections_file_is_refused_with_the_reason(
    tmp_path: Path, document: dict[str, Any], words: str
) -> None:
    path = tmp_path / "collections.json"
    path.write_text(json.dumps(document))

    with pytest.raises(CollectionConfigError, match=words):
        load_collections(path)


@pytest.mark.parametrize(
    ("sample", "kinds"),
    [
        ("video", {"render.mp4": ("video", "mp4"), "render.png": ("image", "png")}),
        ("sound", {"render.wav": ("audio", "wav")}),
        ("model", {"scene.glb": ("model", "glb")}),
    ],
)
def test_media_collections_write_every_output_file(
    srp: SrpEmulatorProcess,
    renders_bucket: storage.Bucket,
    tmp_path: Path,
    sample: str,
    kinds: dict[str, tuple[str, str]],
) -> None:
    collection_uid, input_data = MEDIA_SAMPLES[sample]
    task_id = submit(srp, collection_id=collection_uid, input_data=input_data).json()["id"]
    (task,) = [
        t for t in srp.control.wait_for_tasks(status="done", count=1) if t["task"]["id"] == task_id
    ]

    names = {path.rsplit("/", 1)[-1]: path for path in task["output_files"]}
    assert sorted(names) == sorted(kinds)
    for name, (kind, file_format) in kinds.items():
        data = renders_bucket.blob(names[name]).download_as_bytes()
        sniffed = media.sniff_media(data[: media.HEAD_BYTES])
        assert (sniffed.kind, sniffed.format) == (kind, file_format)
        if kind in ("video", "audio"):
            local = tmp_path / name
            local.write_bytes(data)
            probed = media.probe(
                str(local), sniffed, max_seconds=60, max_pixels=10**8, budget=MediaBudget(60)
            )
            assert probed.kind == kind and probed.duration >= 1.9
        if kind == "video":
            assert (probed.width, probed.height) == (RENDER_SIZE, RENDER_SIZE)
