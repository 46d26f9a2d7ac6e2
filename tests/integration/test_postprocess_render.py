"""postprocess_render under functions-framework, against fake-gcs-server, Firestore and Pub/Sub.

One function process serves the module; every test uses its own task ids, so their
objects, records and events never meet. Outgoing events are pulled from a subscription
each test creates on the module's EVENTS_TOPIC.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pyvips
from google.cloud import firestore, pubsub_v1, storage

from local_stack import media_samples
from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator, scoped_environment
from local_stack.eventarc_events import storage_finalized_event
from local_stack.functions import FunctionProcess
from local_stack.processes import REPO_ROOT
from srp_bundle import media
from srp_bundle.derivatives import sniff_image_format
from srp_bundle.events import EventPublisher
from srp_bundle.media_budget import MediaBudget
from srp_bundle.outbox import apply_and_publish
from srp_bundle.task_state import SrpStatusReported, State, TaskRecord, TaskSubmitted, utc_now
from srp_bundle.task_store import TaskStore

pytestmark = pytest.mark.integration

SPECS = "128:webp,64:png,512:jpeg"
COLLECTION_NAME = "dynamic-nft"
MAX_MEDIA_SECONDS = 5
MAX_SOURCE_PIXELS = 2_000_000


@dataclass
class Stack:
    """The running function and the clients a test inspects it with."""

    project_id: str
    env: dict[str, str]
    function: FunctionProcess
    # The same function with RENDERS_BUCKET == DERIVATIVES_BUCKET == `shared_bucket_name`.
    shared_bucket_function: FunctionProcess
    shared_bucket_name: str
    # The same function with a DERIVATIVES_BUCKET that does not exist until a test makes it.
    missing_bucket_function: FunctionProcess
    missing_bucket_name: str
    storage: storage.Client
    renders: storage.Bucket
    derivatives: storage.Bucket
    store: TaskStore
    publisher: EventPublisher
    subscriber: pubsub_v1.SubscriberClient
    topic_path: str
    function_tmp: str


@pytest.fixture(scope="module")
def stack(
    project_id: str,
    firestore_emulator: FirestoreEmulator,
    pubsub_emulator: PubsubEmulator,
    gcs_emulator: GcsEmulator,
) -> Iterator[Stack]:
    """Buckets, a topic, a tasks collection and postprocess_render running on them."""
    suffix = uuid.uuid4().hex[:10]
    emulators = {
        "GOOGLE_CLOUD_PROJECT": project_id,
        **firestore_emulator.env,
        **pubsub_emulator.env,
        **gcs_emulator.env,
    }
    topic_id = f"render-events-{suffix}"
    # The functions' own /tmp, so tests can see it left empty on every path.
    function_tmp = tempfile.mkdtemp(prefix="postprocess-tmp-")
    env = {
        "TMPDIR": function_tmp,
        **emulators,
        "RENDERS_BUCKET": f"renders-{suffix}",
        "DERIVATIVES_BUCKET": f"derivatives-{suffix}",
        "EVENTS_TOPIC": topic_id,
        "TASKS_COLLECTION": f"tasks-{suffix}",
        "DERIVATIVE_SPECS": SPECS,
        # Small limits, so over-limit media is cheap to make.
        "MAX_MEDIA_SECONDS": str(MAX_MEDIA_SECONDS),
        "MAX_SOURCE_PIXELS": str(MAX_SOURCE_PIXELS),
    }
    shared_bucket_name, missing_bucket_name = f"shared-{suffix}", f"not-yet-{suffix}"
    shared_bucket_env = {
        **env,
        "RENDERS_BUCKET": shared_bucket_name,
        "DERIVATIVES_BUCKET": shared_bucket_name,
    }
    functions = [
        FunctionProcess("postprocess_render", env),
        FunctionProcess("postprocess_render", shared_bucket_env),
        FunctionProcess("postprocess_render", {**env, "DERIVATIVES_BUCKET": missing_bucket_name}),
    ]
    # Started before this process uses gRPC: forking with preexec_fn while gRPC's threads
    # run can abort the child (see the report on local_stack/processes.py).
    for function in functions:
        function.start()
    try:
        with scoped_environment(emulators):
            storage_client = storage.Client(project=project_id)
            storage_client.create_bucket(shared_bucket_name)
            store = TaskStore(firestore.Client(project=project_id), env["TASKS_COLLECTION"])
            publisher_client = pubsub_v1.PublisherClient()
            topic_path = publisher_client.topic_path(project_id, topic_id)
            publisher_client.create_topic(name=topic_path)
            subscriber = pubsub_v1.SubscriberClient()
        yield Stack(
            project_id=project_id,
            env=env,
            function=functions[0],
            shared_bucket_function=functions[1],
            shared_bucket_name=shared_bucket_name,
            missing_bucket_function=functions[2],
            missing_bucket_name=missing_bucket_name,
            storage=storage_client,
            renders=storage_client.create_bucket(env["RENDERS_BUCKET"]),
            derivatives=storage_client.create_bucket(env["DERIVATIVES_BUCKET"]),
            store=store,
            publisher=EventPublisher(publisher_client, project_id, topic_id),
            subscriber=subscriber,
            topic_path=topic_path,
            function_tmp=function_tmp,
        )
    finally:
        for function in functions:
            function.stop()
        shutil.rmtree(function_tmp, ignore_errors=True)


@pytest.fixture
def events(stack: Stack) -> EventInbox:
    """Outgoing events published from now on."""
    subscription = stack.subscriber.subscription_path(
        stack.project_id, f"events-{uuid.uuid4().hex[:10]}"
    )
    stack.subscriber.create_subscription(
        name=subscription, topic=stack.topic_path, ack_deadline_seconds=10
    )
    return EventInbox(stack.subscriber, subscription)


class EventInbox:
    """Everything published to the events topic since the inbox was made."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, subscription: str) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.received: list[tuple[str, dict[str, Any]]] = []

    def of(self, request_id: str) -> list[tuple[str, dict[str, Any]]]:
        """Types and data of the events about one request, in no promised order.

        Every function call here returns only after its events were published, so
        pulling until the subscription is empty sees all of them.
        """
        while True:
            response = self.subscriber.pull(
                subscription=self.subscription, max_messages=100, timeout=10
            )
            if not response.received_messages:
                break
            self.subscriber.acknowledge(
                subscription=self.subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
            for received in response.received_messages:
                message = received.message
                self.received.append((message.attributes["type"], json.loads(message.data)))
        return [(kind, data) for kind, data in self.received if data["request_id"] == request_id]

    def types(self, request_id: str) -> list[str]:
        """The types of one request's events, sorted (Pub/Sub does not promise an order)."""
        return sorted(kind for kind, _ in self.of(request_id))


# ---- helpers ------------------------------------------------------------------------------


def rgba_png(width: int, height: int, shade: int = 0) -> bytes:
    """A small RGBA render with a gradient and a half-transparent half."""
    xy = pyvips.Image.xyz(width, height)
    red = xy[0] * (255 / width)
    green = xy[1] * (255 / height)
    blue = red * 0 + shade
    alpha = (xy[0] >= width // 2).ifthenelse(255, 96)
    image = red.bandjoin([green, blue, alpha]).cast("uchar").copy(interpretation="srgb")
    return bytes(image.pngsave_buffer())


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return (
        struct.pack(">I", len(data))
        + chunk_type
        + data
        + struct.pack(">I", zlib.crc32(chunk_type + data))
    )


def decompression_bomb() -> bytes:
    """A valid-looking 100000 x 100000 RGBA PNG of a few hundred bytes."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 400_001 * 4, 9)  # the first rows; the header claims more
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data is garbage (chunk CRCs fixed up to match)."""
    data = rgba_png(256, 256)
    idat_at = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[idat_at : idat_at + 4])
    garbage = bytes((i * 37 + 11) % 256 for i in range(length))
    return data[:idat_at] + png_chunk(b"IDAT", garbage) + data[idat_at + 12 + length :]


def new_task(stack: Stack, *, attach: bool = True) -> tuple[str, str]:
    """A task record (request id, SRP task id), submitted to SRP unless `attach` is False."""
    request_id = f"request-{uuid.uuid4().hex[:12]}"
    task_id = str(uuid.uuid4())
    stack.store.create(TaskRecord(request_id=request_id, collection_id=str(uuid.uuid4())))
    if attach:
        apply_and_publish(stack.store, stack.publisher, request_id, TaskSubmitted(task_id))
    return request_id, task_id


def render_name(task_id: str) -> str:
    """SRP's render path for a task."""
    return f"render/{COLLECTION_NAME}/{task_id}/render.png"


def derivative_folder(task_id: str) -> str:
    """Where every derivative of a task goes."""
    return f"derivatives/{COLLECTION_NAME}/{task_id}/"


def source_folder(task_id: str, file_name: str = "render.png") -> str:
    """Where every derivative of one output file of a task goes."""
    return f"{derivative_folder(task_id)}{file_name}/"


def upload(
    bucket: storage.Bucket,
    name: str,
    data: bytes,
    content_type: str = "image/png",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write an object; return its resource as a finalized event carries it."""
    blob = bucket.blob(name)
    blob.metadata = metadata
    blob.upload_from_string(data, content_type=content_type)
    return {
        "kind": "storage#object",
        "bucket": bucket.name,
        "name": name,
        "generation": str(blob.generation),
        "metageneration": "1",
        "size": str(blob.size),
        "contentType": content_type,
        "metadata": blob.metadata or {},
    }


def deliver(function: FunctionProcess, resource: dict[str, Any]) -> httpx.Response:
    """POST the finalized CloudEvent as Eventarc would."""
    headers, body = storage_finalized_event(resource, event_id=uuid.uuid4().hex)
    return httpx.post(function.url, headers=headers, content=body, timeout=60)


def srp_reports_done(
    stack: Stack, request_id: str, task_id: str, output_files: tuple[str, ...] | None = None
) -> None:
    """What ingest_webhook does with SRP's `done` callback."""
    files = output_files if output_files is not None else (render_name(task_id),)
    apply_and_publish(
        stack.store, stack.publisher, request_id, SrpStatusReported(task_id, "done", files)
    )


def object_generations(bucket: storage.Bucket, prefix: str) -> dict[str, int]:
    """Name -> generation of every object under a prefix."""
    return {blob.name: blob.generation for blob in bucket.list_blobs(prefix=prefix)}


def record(stack: Stack, request_id: str) -> TaskRecord:
    """The task record, which must exist."""
    found = stack.store.get(request_id)
    assert found is not None
    return found


# ---- derivatives -------------------------------------------------------------------------


def test_render_becomes_derivatives_listed_on_the_record(stack: Stack) -> None:
    request_id, task_id = new_task(stack)
    png = rgba_png(256, 256)
    resource = upload(stack.renders, render_name(task_id), png)

    response = deliver(stack.function, resource)

    assert response.status_code == 200, response.text
    generation = int(resource["generation"])
    folder = f"{source_folder(task_id)}g{generation}"
    expected = {  # 512 is larger than the render: never upscaled
        f"{folder}/128.webp": (128, 128, "webp", "image/webp"),
        f"{folder}/64.png": (64, 64, "png", "image/png"),
        f"{folder}/512.jpg": (256, 256, "jpeg", "image/jpeg"),
    }
    blobs = {blob.name: blob for blob in stack.derivatives.list_blobs(prefix=folder)}
    assert sorted(blobs) == sorted(expected)
    for name, (width, height, image_format, content_type) in expected.items():
        blob = blobs[name]
        data = blob.download_as_bytes()
        image = pyvips.Image.new_from_buffer(data, "")
        assert (image.width, image.height) == (width, height)
        assert sniff_image_format(data) == image_format
        assert blob.content_type == content_type
        assert blob.cache_control == "public, max-age=31536000, immutable"
        assert blob.metadata["request_id"] == request_id
        assert blob.metadata["task_id"] == task_id
        assert blob.metadata["source_generation"] == str(generation)
        assert blob.metadata["source_object"] == render_name(task_id)

    stored = record(stack, request_id)
    assert stored.render_path == render_name(task_id)
    assert stored.render_generation == generation
    assert [(d["path"], d["width"], d["height"], d["format"]) for d in stored.derivatives] == [
        (name, width, height, image_format)
        for name, (width, height, image_format, _) in expected.items()
    ]
    assert all(d["bytes"] == blobs[d["path"]].size for d in stored.derivatives)
    assert {(d["source"], d["role"]) for d in stored.derivatives} == {
        (render_name(task_id), "thumbnail")
    }
    assert stored.files == [
        {
            "path": render_name(task_id),
            "generation": generation,
            "kind": "image",
            "format": "png",
            "content_type": "image/png",
            "bytes": len(png),
            "sha256": hashlib.sha256(png).hexdigest(),
            "width": 256,
            "height": 256,
        }
    ]
    assert stored.other_files == []
    assert stored.state == State.SUBMITTED  # completion also needs SRP's done
    assert stack.store.render_result(task_id, render_name(task_id)) is not None


def test_a_redelivered_event_writes_nothing(stack: Stack, events: EventInbox) -> None:
    request_id, task_id = new_task(stack)
    resource = upload(stack.renders, render_name(task_id), rgba_png(256, 256))
    assert deliver(stack.function, resource).status_code == 200
    srp_reports_done(stack, request_id, task_id)
    before = object_generations(stack.derivatives, derivative_folder(task_id))
    record_before = record(stack, request_id)

    for _ in range(2):
        assert deliver(stack.function, resource).status_code == 200

    assert object_generations(stack.derivatives, derivative_folder(task_id)) == before
    assert len(before) == 3
    record_after = record(stack, request_id)
    assert record_after.updated_at == record_before.updated_at
    assert record_after.derivatives == record_before.derivatives
    assert events.types(request_id) == ["render.completed", "task.submitted"]


def test_a_newer_generation_replaces_the_derivatives(stack: Stack) -> None:
    request_id, task_id = new_task(stack)
    first = upload(stack.renders, render_name(task_id), rgba_png(256, 256))
    assert deliver(stack.function, first).status_code == 200
    second = upload(stack.renders, render_name(task_id), rgba_png(320, 160, shade=200))
    assert int(second["generation"]) > int(first["generation"])

    assert deliver(stack.function, second).status_code == 200
    # The old event arriving late changes nothing.
    assert deliver(stack.function, first).status_code == 200

    folder = f"{source_folder(task_id)}g{second['generation']}"
    names = set(object_generations(stack.derivatives, derivative_folder(task_id)))
    assert names == {f"{folder}/128.webp", f"{folder}/64.png", f"{folder}/512.jpg"}
    stored = record(stack, request_id)
    assert stored.render_generation == int(second["generation"])
    assert {d["path"]: (d["width"], d["height"]) for d in stored.derivatives} == {
        f"{folder}/128.webp": (128, 64),
        f"{folder}/64.png": (64, 32),
        f"{folder}/512.jpg": (320, 160),
    }


# ---- exactly one render.completed -----------------------------------------------------------


@pytest.mark.parametrize("order", ["render_then_done", "done_then_render", "render_before_record"])
def test_exactly_one_render_completed_whatever_the_order(
    stack: Stack, events: EventInbox, order: str
) -> None:
    request_id, task_id = new_task(stack, attach=order != "render_before_record")
    resource = upload(stack.renders, render_name(task_id), rgba_png(256, 256))

    if order == "done_then_render":
        srp_reports_done(stack, request_id, task_id)
        assert deliver(stack.function, resource).status_code == 200
    else:
        assert deliver(stack.function, resource).status_code == 200
        if order == "render_before_record":
            assert stack.store.find_by_task_id(task_id) is None
            # submit_task attaches the task id: the waiting result is applied with it.
            apply_and_publish(stack.store, stack.publisher, request_id, TaskSubmitted(task_id))
            assert record(stack, request_id).derivatives
        srp_reports_done(stack, request_id, task_id)
    # Redeliveries of both signals change nothing.
    assert deliver(stack.function, resource).status_code == 200
    srp_reports_done(stack, request_id, task_id)

    completed = [data for kind, data in events.of(request_id) if kind == "render.completed"]
    assert len(completed) == 1
    assert completed[0]["task_id"] == task_id
    assert completed[0]["state"] == "completed"
    assert [d["path"] for d in completed[0]["derivatives"]] == [
        d["path"] for d in record(stack, request_id).derivatives
    ]
    assert record(stack, request_id).state == State.COMPLETED
    assert stack.store.pending_events(utc_now() + timedelta(days=1), 10, request_id) == []


# ---- ignored objects --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "derivatives_bucket",
        "derivatives_prefix",
        "derivative_metadata",
        "other_file",
        "other_bucket",
    ],
)
def test_objects_that_are_not_renders_are_ignored(stack: Stack, case: str) -> None:
    request_id, task_id = new_task(stack)
    png = rgba_png(64, 64)
    name = render_name(task_id)
    if case == "derivatives_bucket":
        resource = upload(stack.derivatives, name, png)
    elif case == "derivatives_prefix":
        resource = upload(stack.renders, f"derivatives/{COLLECTION_NAME}/{task_id}/g1/64.png", png)
    elif case == "derivative_metadata":
        metadata = {"source_object": name, "source_generation": "1", "task_id": task_id}
        resource = upload(stack.renders, name, png, metadata=metadata)
    elif case == "other_file":
        # Five folders below the task folder: deeper than any output file SRP may name.
        deep = "a/b/c/d/e/0001.png"
        resource = upload(stack.renders, f"render/{COLLECTION_NAME}/{task_id}/{deep}", png)
    else:
        other = stack.storage.create_bucket(f"other-{uuid.uuid4().hex[:10]}")
        resource = upload(other, name, png)

    response = deliver(stack.function, resource)

    assert response.status_code == 200, response.text
    assert stack.store.render_results(task_id) == []
    assert object_generations(stack.derivatives, derivative_folder(task_id)) == {}
    assert record(stack, request_id).derivatives == []


def test_one_bucket_for_renders_and_derivatives_cannot_loop(stack: Stack) -> None:
    bucket = stack.storage.bucket(stack.shared_bucket_name)
    function = stack.shared_bucket_function
    request_id, task_id = new_task(stack)
    resource = upload(bucket, render_name(task_id), rgba_png(256, 256))

    assert deliver(function, resource).status_code == 200
    outputs = object_generations(bucket, derivative_folder(task_id))
    assert len(outputs) == 3
    # Feed every output back, as the bucket's own finalize trigger would.
    for name in outputs:
        blob = bucket.get_blob(name)
        assert blob is not None
        output_event = {
            "bucket": bucket.name,
            "name": name,
            "generation": blob.generation,
            "metadata": blob.metadata,
        }
        assert deliver(function, output_event).status_code == 200

    assert object_generations(bucket, f"render/{COLLECTION_NAME}/{task_id}/") == {
        render_name(task_id): int(resource["generation"])
    }
    assert object_generations(bucket, derivative_folder(task_id)) == outputs
    assert record(stack, request_id).render_generation == int(resource["generation"])


# ---- renders that can never become derivatives -----------------------------------------------

BAD_RENDERS = {
    "corrupt": (corrupt_png, "corrupt_image"),
    "truncated": (lambda: rgba_png(256, 256)[:600], "corrupt_image"),
    "decompression_bomb": (decompression_bomb, "too_many_pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD_RENDERS))
def test_a_bad_render_fails_the_task_cleanly(stack: Stack, events: EventInbox, case: str) -> None:
    make_bytes, code = BAD_RENDERS[case]
    request_id, task_id = new_task(stack)
    resource = upload(stack.renders, render_name(task_id), make_bytes())

    response = deliver(stack.function, resource)

    assert response.status_code == 200, response.text
    failed = record(stack, request_id)
    assert failed.state == State.FAILED
    assert failed.error is not None and failed.error["code"] == code
    assert render_name(task_id) in failed.error["message"]
    assert object_generations(stack.derivatives, derivative_folder(task_id)) == {}
    assert events.types(request_id) == ["task.failed", "task.submitted"]
    assert [data["error"] for kind, data in events.of(request_id) if kind == "task.failed"] == [
        failed.error
    ]
    # A redelivery neither retries the work nor publishes again.
    assert deliver(stack.function, resource).status_code == 200
    assert events.types(request_id) == ["task.failed", "task.submitted"]
    assert stack.function.is_running()


def test_a_bad_render_fails_a_record_that_appears_later(stack: Stack, events: EventInbox) -> None:
    request_id, task_id = new_task(stack, attach=False)
    resource = upload(stack.renders, render_name(task_id), rgba_png(256, 256)[:600])
    assert deliver(stack.function, resource).status_code == 200
    assert record(stack, request_id).state == State.RECEIVED

    apply_and_publish(stack.store, stack.publisher, request_id, TaskSubmitted(task_id))

    failed = record(stack, request_id)
    assert failed.state == State.FAILED
    assert failed.error is not None and failed.error["code"] == "corrupt_image"
    assert events.types(request_id) == ["task.failed", "task.submitted"]


def test_the_function_still_serves_after_bad_renders(stack: Stack) -> None:
    for make_bytes, _ in BAD_RENDERS.values():
        _, task_id = new_task(stack)
        resource = upload(stack.renders, render_name(task_id), make_bytes())
        assert deliver(stack.function, resource).status_code == 200

    request_id, task_id = new_task(stack)
    resource = upload(stack.renders, render_name(task_id), rgba_png(256, 256))
    assert deliver(stack.function, resource).status_code == 200
    assert stack.function.is_running()
    assert len(record(stack, request_id).derivatives) == 3


# ---- transient errors and cold start ----------------------------------------------------------


def test_a_storage_error_is_retried_until_it_succeeds(stack: Stack) -> None:
    function = stack.missing_bucket_function
    request_id, task_id = new_task(stack)
    resource = upload(stack.renders, render_name(task_id), rgba_png(256, 256))

    failed = deliver(function, resource)
    assert failed.status_code == 500  # Eventarc retries it
    assert stack.store.render_results(task_id) == []
    assert record(stack, request_id).derivatives == []

    stack.storage.create_bucket(stack.missing_bucket_name)
    assert deliver(function, resource).status_code == 200

    assert len(record(stack, request_id).derivatives) == 3


def test_the_handler_does_not_load_libvips_at_import(stack: Stack) -> None:
    script = textwrap.dedent(
        """
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("main", sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(module.postprocess_render)
        print(sorted(name for name in sys.modules if name.split(".")[0] == "pyvips"))
        """
    )
    main = REPO_ROOT / "functions" / "postprocess_render" / "main.py"
    result = subprocess.run(
        [sys.executable, "-c", script, str(main)],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ---- every kind of render: image, video, audio, 3D, other -----------------------------------


def _gif() -> bytes:
    pages = [
        pyvips.Image.black(200, 120).new_from_image([i * 50 % 256, 90, 200]).cast("uchar")
        for i in range(4)
    ]
    strip = pyvips.Image.arrayjoin(pages, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 120)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * 4)
    return bytes(strip.gifsave_buffer())


def _still(image_format: str) -> bytes:
    image = pyvips.Image.black(300, 200).new_from_image([30, 140, 220]).cast("uchar")
    return bytes(image.write_to_buffer(f".{image_format}"))


@dataclass(frozen=True)
class Kind:
    """A sample of one kind of render and what post-processing must make of it."""

    file_name: str
    make: Any
    kind: str
    format: str
    content_type: str
    roles: tuple[str, ...]
    size: tuple[int, int] | None = None  # the source's frame size, for images and video
    details: tuple[tuple[str, Any], ...] = ()


THUMBNAILS = ("thumbnail",) * 3
KINDS = {
    "png": Kind(
        "render.png",
        lambda: rgba_png(300, 200),
        "image",
        "png",
        "image/png",
        THUMBNAILS,
        (300, 200),
    ),
    "jpeg": Kind(
        "render.jpg", lambda: _still("jpeg"), "image", "jpeg", "image/jpeg", THUMBNAILS, (300, 200)
    ),
    "webp": Kind(
        "render.webp", lambda: _still("webp"), "image", "webp", "image/webp", THUMBNAILS, (300, 200)
    ),
    "avif": Kind(
        "render.avif", lambda: _still("avif"), "image", "avif", "image/avif", THUMBNAILS, (300, 200)
    ),
    "animated_gif": Kind(
        "render.gif",
        _gif,
        "image",
        "gif",
        "image/gif",
        (*THUMBNAILS, "preview"),
        (200, 120),
        (("frames", 4),),
    ),
    "mp4": Kind(
        "render.mp4",
        lambda: media_samples.video("mp4", black_lead_seconds=0.5),
        "video",
        "mp4",
        "video/mp4",
        ("poster",) * 3 + ("preview",),
        (320, 240),
        (("codec", "h264"), ("frame_rate", 25.0), ("width", 320), ("height", 240)),
    ),
    "mov": Kind(
        "render.mov",
        lambda: media_samples.video("mov", seconds=1.0),
        "video",
        "mov",
        "video/quicktime",
        ("poster",) * 3 + ("preview",),
        (320, 240),
        (("codec", "h264"),),
    ),
    "webm": Kind(
        "render.webm",
        lambda: media_samples.video("webm", seconds=1.0),
        "video",
        "webm",
        "video/webm",
        ("poster",) * 3 + ("preview",),
        (320, 240),
        (("codec", "vp9"),),
    ),
    "wav": Kind(
        "render.wav",
        lambda: media_samples.sound("wav"),
        "audio",
        "wav",
        "audio/wav",
        ("waveform",) * 3,
        None,
        (("sample_rate", 44100), ("channels", 2), ("codec", "pcm_s16le")),
    ),
    "mp3": Kind(
        "render.mp3",
        lambda: media_samples.sound("mp3"),
        "audio",
        "mp3",
        "audio/mpeg",
        ("waveform",) * 3,
        None,
        (("sample_rate", 44100), ("codec", "mp3")),
    ),
    "ogg": Kind(
        "render.ogg",
        lambda: media_samples.sound("ogg"),
        "audio",
        "ogg",
        "audio/ogg",
        ("waveform",) * 3,
        None,
        (("codec", "vorbis"),),
    ),
    "flac": Kind(
        "render.flac",
        lambda: media_samples.sound("flac"),
        "audio",
        "flac",
        "audio/flac",
        ("waveform",) * 3,
        None,
        (("codec", "flac"),),
    ),
    "glb": Kind(
        "scene.glb",
        lambda: media_samples.glb(
            meshes=3, nodes=5, materials=2, generator="Blender glTF exporter"
        ),
        "model",
        "glb",
        "model/gltf-binary",
        (),
        None,
        (("meshes", 3), ("nodes", 5), ("materials", 2), ("generator", "Blender glTF exporter")),
    ),
    "gltf": Kind(
        "scene.gltf",
        lambda: json.dumps(media_samples.gltf_document(meshes=2, nodes=2)).encode(),
        "model",
        "gltf",
        "model/gltf+json",
        (),
        None,
        (("meshes", 2), ("nodes", 2)),
    ),
    "zip": Kind(
        "scene.usdz", lambda: b"PK\x03\x04" + bytes(200), "other", "zip", "application/zip", ()
    ),
}
SPEC_SIZES = [(128, "webp"), (64, "png"), (512, "jpeg")]


def file_name_of(task_id: str, file_name: str) -> str:
    """The object name of one output file of a task."""
    return f"render/{COLLECTION_NAME}/{task_id}/{file_name}"


def check_derivatives(stack: Stack, stored: TaskRecord, sample: Kind, source: str) -> None:
    """Every derivative decoded and measured against the record and the specs."""
    derivatives = [d for d in stored.derivatives if d["source"] == source]
    assert [d["role"] for d in derivatives] == list(sample.roles)
    for derivative, (size, image_format) in zip(derivatives, [*SPEC_SIZES, (0, "")], strict=False):
        blob = stack.derivatives.get_blob(derivative["path"])
        assert blob is not None, derivative["path"]
        data = blob.download_as_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (
            derivative["bytes"],
            derivative["sha256"],
        )
        assert sniff_image_format(data) == derivative["format"]
        if derivative["role"] == "preview":
            decoded = pyvips.Image.new_from_buffer(data, "", n=-1)
            frames = decoded.get("n-pages")
            assert frames == derivative["frames"] > 1
            assert (decoded.width, decoded.get("page-height")) == (
                derivative["width"],
                derivative["height"],
            )
            assert max(decoded.width, decoded.get("page-height")) <= 320
            continue
        decoded = pyvips.Image.new_from_buffer(data, "")
        assert (decoded.width, decoded.height) == (derivative["width"], derivative["height"])
        assert derivative["format"] == image_format
        source_size = sample.size or (1024, 256)  # the waveform's size
        assert max(decoded.width, decoded.height) == min(size, max(source_size))  # no upscaling


@pytest.mark.parametrize("order", ["file_then_done", "done_then_file"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_render_completes_with_its_derivatives(
    stack: Stack, events: EventInbox, kind: str, order: str
) -> None:
    sample = KINDS[kind]
    data = sample.make()
    request_id, task_id = new_task(stack)
    name = file_name_of(task_id, sample.file_name)
    # The declared type is never trusted: every file is uploaded as a generic binary.
    resource = upload(stack.renders, name, data, "application/octet-stream")

    if order == "done_then_file":
        srp_reports_done(stack, request_id, task_id, (name,))
        assert record(stack, request_id).state == State.RENDERED
    response = deliver(stack.function, resource)
    assert response.status_code == 200, response.text
    if order == "file_then_done":
        assert record(stack, request_id).state == State.SUBMITTED
        srp_reports_done(stack, request_id, task_id, (name,))
    # Redeliveries of both signals change nothing.
    assert deliver(stack.function, resource).status_code == 200
    srp_reports_done(stack, request_id, task_id, (name,))

    stored = record(stack, request_id)
    assert stored.state == State.COMPLETED, stored.error
    (described,) = stored.files
    assert {k: described[k] for k in ("path", "kind", "format", "content_type", "bytes")} == {
        "path": name,
        "kind": sample.kind,
        "format": sample.format,
        "content_type": sample.content_type,
        "bytes": len(data),
    }
    assert described["sha256"] == hashlib.sha256(data).hexdigest()
    assert described["generation"] == int(resource["generation"])
    for key, value in sample.details:
        assert described[key] == value, key
    if sample.kind in ("video", "audio"):
        assert described["duration"] > 0.9
    check_derivatives(stack, stored, sample, name)
    assert stored.other_files == ([] if sample.roles else [described])
    completed = [data for kind, data in events.of(request_id) if kind == "render.completed"]
    assert len(completed) == 1
    assert completed[0]["derivatives"] == stored.derivatives
    assert completed[0]["files"] == stored.files
    assert os.listdir(stack.function_tmp) == []


def test_a_video_poster_skips_the_black_opening() -> None:
    clip = media_samples.video("mp4", seconds=2.0, black_lead_seconds=1.0)
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(clip)
        file.flush()
        sniffed = media.sniff_media(clip[:4096])
        budget = MediaBudget(60)
        probed = media.probe(file.name, sniffed, max_seconds=60, max_pixels=10**7, budget=budget)
        frame, at = media.poster_frame(file.name, sniffed, probed, max_pixels=10**7, budget=budget)

    assert media.mean_luma(frame) >= media.POSTER_MIN_LUMA
    # 10% (0.3 s) is still black; 25% (0.75 s) too; the poster comes from 50% (1.5 s).
    assert at == pytest.approx(probed.duration * 0.5)


def test_several_outputs_complete_only_when_every_one_is_done(
    stack: Stack, events: EventInbox
) -> None:
    request_id, task_id = new_task(stack)
    png_name, video_name = file_name_of(task_id, "render.png"), file_name_of(task_id, "render.mp4")
    png = upload(stack.renders, png_name, rgba_png(200, 200))
    clip = upload(stack.renders, video_name, media_samples.video("mp4", seconds=1.0), "video/mp4")

    assert deliver(stack.function, png).status_code == 200
    srp_reports_done(stack, request_id, task_id, (png_name, video_name))
    assert record(stack, request_id).state == State.RENDERED
    assert "render.completed" not in events.types(request_id)

    assert deliver(stack.function, clip).status_code == 200

    stored = record(stack, request_id)
    assert stored.state == State.COMPLETED
    assert [f["path"] for f in stored.files] == [video_name, png_name]
    assert stored.render_path == png_name  # the first output file SRP listed
    assert {(d["source"], d["role"]) for d in stored.derivatives} == {
        (png_name, "thumbnail"),
        (video_name, "poster"),
        (video_name, "preview"),
    }
    assert events.types(request_id).count("render.completed") == 1
    (completed,) = [data for kind, data in events.of(request_id) if kind == "render.completed"]
    assert len(completed["derivatives"]) == 7  # 3 thumbnails, 3 posters, 1 preview


def test_an_output_file_in_a_subfolder_completes_the_request(stack: Stack) -> None:
    request_id, task_id = new_task(stack)
    name = file_name_of(task_id, "frames/still.png")
    resource = upload(stack.renders, name, rgba_png(64, 64))

    assert deliver(stack.function, resource).status_code == 200
    srp_reports_done(stack, request_id, task_id, (name,))

    stored = record(stack, request_id)
    assert stored.state == State.COMPLETED
    folder = f"{derivative_folder(task_id)}frames%2Fstill.png/g{resource['generation']}/"
    assert sorted(d["path"] for d in stored.derivatives) == sorted(
        f"{folder}{leaf}" for leaf in ("128.webp", "64.png", "512.jpg")
    )


# ---- media that can never be post-processed ----------------------------------------------------


def _truncated_mp4() -> bytes:
    clip = media_samples.video("mp4", seconds=1.0)
    return clip[: len(clip) // 3]


def _corrupt_mp4() -> bytes:
    clip = media_samples.video("mp4", seconds=1.0)
    header_end = clip.index(b"mdat") + 4
    return clip[:header_end] + bytes((i * 31 + 7) % 256 for i in range(len(clip) - header_end))


BAD_MEDIA = {
    "truncated_mp4": ("render.mp4", _truncated_mp4, "corrupt_media"),
    "corrupt_mp4": ("render.mp4", _corrupt_mp4, "corrupt_media"),
    "video_too_long": (
        "render.mp4",
        lambda: media_samples.video("mp4", width=64, height=64, seconds=MAX_MEDIA_SECONDS + 1),
        "media_too_long",
    ),
    "video_too_many_pixels": (
        "render.webm",
        lambda: media_samples.video("webm", width=1920, height=1088, seconds=0.2),
        "too_many_pixels",
    ),
    "corrupt_wav": ("render.wav", lambda: b"RIFF\x24\x00\x00\x00WAVE" + bytes(64), "corrupt_media"),
    "sound_too_long": (
        "render.flac",
        lambda: media_samples.sound("flac", seconds=MAX_MEDIA_SECONDS + 1),
        "media_too_long",
    ),
    "corrupt_gif": ("render.gif", lambda: _gif()[:80], "corrupt_image"),
    "corrupt_glb": ("scene.glb", lambda: b"glTF\x02\x00\x00\x00\x40\x00\x00\x00", "corrupt_media"),
    # Before its JSON was parsed within limits, this raised RecursionError: a crash, retried.
    "deeply_nested_glb": (
        "scene.glb",
        lambda: _glb(b'{"asset": {}, "x": ' + b"[" * 50_000),
        "corrupt_media",
    ),
    # ffprobe sees 64x64; the decoder meets 1920x1088 (over MAX_SOURCE_PIXELS) a second in.
    "video_growing_past_the_pixel_limit": (
        "render.mp4",
        lambda: media_samples.video_that_grows(first=(64, 64), then=(1920, 1088)),
        "too_many_pixels",
    ),
    # Each 1000x1000 frame is inside MAX_SOURCE_PIXELS; 1000 of them are not inside
    # MAX_ANIMATION_PIXELS (default 500,000,000).
    "gif_of_many_large_frames": (
        "render.gif",
        lambda: media_samples.gif_bomb(width=1000, height=1000, frames=1000),
        "too_many_pixels",
    ),
}


def _glb(text: bytes) -> bytes:
    text += b" " * (-len(text) % 4)
    chunk = struct.pack("<I4s", len(text), b"JSON") + text
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunk)) + chunk


@pytest.mark.parametrize("case", sorted(BAD_MEDIA))
def test_bad_media_fails_the_task_with_a_reason(
    stack: Stack, events: EventInbox, case: str
) -> None:
    file_name, make_bytes, code = BAD_MEDIA[case]
    request_id, task_id = new_task(stack)
    name = file_name_of(task_id, file_name)
    resource = upload(stack.renders, name, make_bytes(), "application/octet-stream")

    response = deliver(stack.function, resource)

    assert response.status_code == 200, response.text
    failed = record(stack, request_id)
    assert failed.state == State.FAILED
    assert failed.error is not None and failed.error["code"] == code, failed.error
    assert name in failed.error["message"]
    assert object_generations(stack.derivatives, derivative_folder(task_id)) == {}
    # A redelivery neither retries the work nor publishes again.
    assert deliver(stack.function, resource).status_code == 200
    assert events.types(request_id) == ["task.failed", "task.submitted"]
    assert stack.function.is_running()
    assert os.listdir(stack.function_tmp) == []  # cleaned on the failure path too


def _playlist(url: str, secret_file: str) -> bytes:
    return (
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{url}/segment.ts\n#EXTINF:1.0,\nfile://{secret_file}\n"
        f"#EXTINF:1.0,\nconcat:{secret_file}\n#EXT-X-ENDLIST\n"
    ).encode()


@pytest.mark.parametrize("disguise", ["named_mp4", "mp4_signature"])
def test_a_crafted_file_that_references_a_url_or_a_file_opens_nothing(
    stack: Stack, tmp_path: Any, disguise: str, request_listener: Any
) -> None:
    request_id, task_id = new_task(stack)
    secret = tmp_path / "secret.ts"
    secret.write_bytes(media_samples.video("mp4", seconds=0.5))
    playlist = _playlist(request_listener.url, str(secret))
    if disguise == "mp4_signature":
        playlist = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + playlist
    name = file_name_of(task_id, "render.mp4")
    resource = upload(stack.renders, name, playlist, "video/mp4")

    assert deliver(stack.function, resource).status_code == 200

    stored = record(stack, request_id)
    if disguise == "named_mp4":
        # No magic number: described as an unknown file, never handed to ffmpeg.
        assert stored.files[0]["kind"] == "other"
        assert stored.files[0]["content_type"] == "application/octet-stream"
        assert stored.derivatives == []
    else:
        # ffmpeg reads it as the MP4 it claims to be (never as a playlist) and fails.
        assert stored.state == State.FAILED
        assert stored.error is not None and stored.error["code"] == "corrupt_media"
    assert request_listener.requests == []
