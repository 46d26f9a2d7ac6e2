"""derivative_store against fake-gcs-server with the real google-cloud-storage client."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from local_stack.emulators import GcsEmulator
from srp_bundle.derivative_store import (
    CACHE_CONTROL,
    delete_superseded_derivatives,
    download_render_to_file,
    store_derivatives,
)
from srp_bundle.derivatives import RenderDerivatives, make_derivatives
from srp_bundle.errors import SourceTooLargeError
from srp_bundle.settings import parse_derivative_specs

pytestmark = pytest.mark.integration

COLLECTION = "my-collection"
TASK_UUID = "6f1c2d3e-0000-4000-8000-123456789abc"
RENDER_NAME = f"render/{COLLECTION}/{TASK_UUID}/render.png"


@pytest.fixture
def client(gcs_emulator: GcsEmulator) -> storage.Client:
    """The real client, pointed at the emulator without touching os.environ."""
    return storage.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": gcs_emulator.url},
    )


@pytest.fixture
def bucket(client: storage.Client, unique_name: Callable[[str], str]) -> storage.Bucket:
    """A fresh bucket for one test."""
    return client.create_bucket(unique_name("derivatives"))


@pytest.fixture(scope="module")
def rendered() -> RenderDerivatives:
    """Derivatives of a small RGBA render, made once for the module."""
    xy = pyvips.Image.xyz(400, 300)
    image = xy[0].bandjoin([xy[1], xy[0] * 0 + 128, xy[1] * 0 + 200]).cast("uchar")
    png = bytes(image.copy(interpretation="srgb").pngsave_buffer())
    return make_derivatives(png, parse_derivative_specs("512:webp,256:webp,1024:png,128:jpeg"))


def store(bucket: storage.Bucket, rendered: RenderDerivatives, generation: int = 1712345678901234):
    return store_derivatives(
        bucket,
        rendered.derivatives,
        collection_name=COLLECTION,
        task_id=TASK_UUID,
        source_bucket_name="renders",
        source_object_name=RENDER_NAME,
        source_generation=generation,
        request_id="request-1",
    )


def test_derivatives_are_written_with_names_types_and_metadata(
    bucket: storage.Bucket, rendered: RenderDerivatives
) -> None:
    stored = store(bucket, rendered)

    folder = f"derivatives/{COLLECTION}/{TASK_UUID}/render.png/g1712345678901234"
    assert [item.path for item in stored] == [
        f"{folder}/512.webp",
        f"{folder}/256.webp",
        f"{folder}/1024.png",
        f"{folder}/128.jpg",
    ]
    assert all(item.written for item in stored)
    for item, derivative in zip(stored, rendered.derivatives, strict=True):
        blob = bucket.get_blob(item.path)
        assert blob is not None
        assert blob.content_type == derivative.content_type
        assert blob.cache_control == CACHE_CONTROL
        assert blob.metadata == {
            "request_id": "request-1",
            "task_id": TASK_UUID,
            "source_bucket": "renders",
            "source_object": RENDER_NAME,
            "source_generation": "1712345678901234",
            "sha256": derivative.info.sha256,
            "width": str(derivative.info.width),
            "height": str(derivative.info.height),
            "format": derivative.info.format,
            "role": "thumbnail",
        }
        assert blob.download_as_bytes() == derivative.data
        assert item.object_generation == blob.generation
        assert item.as_record() == {
            "path": item.path,
            "width": derivative.info.width,
            "height": derivative.info.height,
            "format": derivative.spec.image_format,
            "bytes": len(derivative.data),
            "sha256": hashlib.sha256(derivative.data).hexdigest(),
            "source": RENDER_NAME,
            "role": "thumbnail",
        }


def test_storing_again_writes_nothing_and_reports_the_same_metadata(
    bucket: storage.Bucket, rendered: RenderDerivatives
) -> None:
    first = store(bucket, rendered)
    generations_before = {blob.name: blob.generation for blob in bucket.list_blobs()}

    second = store(bucket, rendered)

    assert not any(item.written for item in second)
    assert [item.as_record() for item in second] == [item.as_record() for item in first]
    assert [item.object_generation for item in second] == [item.object_generation for item in first]
    assert {blob.name: blob.generation for blob in bucket.list_blobs()} == generations_before


def test_an_object_we_did_not_write_at_our_name_is_replaced(
    bucket: storage.Bucket, rendered: RenderDerivatives
) -> None:
    name = f"derivatives/{COLLECTION}/{TASK_UUID}/render.png/g7/512.webp"
    bucket.blob(name).upload_from_string(b"not ours", content_type="text/plain")

    stored = store(bucket, rendered, generation=7)

    assert stored[0].written
    blob = bucket.get_blob(name)
    assert blob is not None
    assert blob.download_as_bytes() == rendered.derivatives[0].data
    assert blob.metadata is not None
    assert blob.metadata["sha256"] == rendered.derivatives[0].info.sha256


def test_a_newer_generation_supersedes_older_ones_but_never_newer_ones(
    bucket: storage.Bucket, rendered: RenderDerivatives
) -> None:
    older, current, newer = (store(bucket, rendered, generation=g) for g in (100, 200, 300))
    # Another output file of the same task, with an older generation: not superseded.
    other_file = store_derivatives(
        bucket,
        rendered.derivatives,
        collection_name=COLLECTION,
        task_id=TASK_UUID,
        source_bucket_name="renders",
        source_object_name=f"render/{COLLECTION}/{TASK_UUID}/render.mp4",
        source_generation=50,
    )

    deleted = delete_superseded_derivatives(bucket, COLLECTION, TASK_UUID, 200, RENDER_NAME)

    assert sorted(deleted) == sorted(item.path for item in older)
    remaining = sorted(blob.name for blob in bucket.list_blobs())
    assert remaining == sorted(item.path for item in current + newer + other_file)


def test_download_reads_exactly_the_event_generation(
    bucket: storage.Bucket, tmp_path: Path
) -> None:
    blob = bucket.blob(RENDER_NAME)
    blob.upload_from_string(b"\x89PNG\r\n\x1a\nfirst", content_type="image/png")
    first_generation = blob.generation
    assert first_generation is not None
    local = tmp_path / "source"

    assert download_render_to_file(bucket, RENDER_NAME, first_generation, local)
    assert local.read_bytes() == b"\x89PNG\r\n\x1a\nfirst"
    with pytest.raises(SourceTooLargeError) as raised:
        download_render_to_file(bucket, RENDER_NAME, first_generation, local, max_bytes=4)
    assert raised.value.code == "source_too_large"
    assert not download_render_to_file(bucket, f"{RENDER_NAME}.missing", 1, local)

    blob.upload_from_string(b"\x89PNG\r\n\x1a\nsecond", content_type="image/png")
    assert blob.generation != first_generation
    # The event for the first generation arrives late: it finds nothing to process.
    assert not download_render_to_file(bucket, RENDER_NAME, first_generation, local)
    assert download_render_to_file(bucket, RENDER_NAME, blob.generation, local)
    assert local.read_bytes() == b"\x89PNG\r\n\x1a\nsecond"
