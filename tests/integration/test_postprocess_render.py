"""postprocess_render under functions-framework, against fake-gcs-server, Firestore and Pub/Sub.

One function process serves the module; every test uses its own task ids, so their
objects, records and events never meet. Outgoing events are pulled from a subscription
each test creates on the module's EVENTS_TOPIC.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
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

from local_stack.cloudevents import storage_finalized_event
from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator, scoped_environment
from local_stack.functions import FunctionProcess
from local_stack.processes import REPO_ROOT
from srp_bundle.derivatives import sniff_image_format
from srp_bundle.events import EventPublisher, publish_transition
from srp_bundle.task_state import SrpStatusReported, State, TaskRecord, TaskSubmitted, utc_now
from srp_bundle.task_store import TaskStore

pytestmark = pytest.mark.integration

SPECS = "128:webp,64:png,512:jpeg"
COLLECTION_NAME = "dynamic-nft"


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
    env = {
        **emulators,
        "RENDERS_BUCKET": f"renders-{suffix}",
        "DERIVATIVES_BUCKET": f"derivatives-{suffix}",
        "EVENTS_TOPIC": topic_id,
        "TASKS_COLLECTION": f"tasks-{suffix}",
        "DERIVATIVE_SPECS": SPECS,
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
        )
    finally:
        for function in functions:
            function.stop()


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


def jpeg_bytes() -> bytes:
    """A real JPEG, to be uploaded with a PNG content type."""
    return bytes(pyvips.Image.black(64, 64).jpegsave_buffer())


def new_task(stack: Stack, *, attach: bool = True) -> tuple[str, str]:
    """A task record (request id, SRP task id), submitted to SRP unless `attach` is False."""
    request_id = f"request-{uuid.uuid4().hex[:12]}"
    task_id = str(uuid.uuid4())
    stack.store.create(TaskRecord(request_id=request_id, collection_id=str(uuid.uuid4())))
    if attach:
        transition = stack.store.apply(request_id, TaskSubmitted(task_id))
        publish_transition(stack.store, stack.publisher, request_id, transition.events)
    return request_id, task_id


def render_name(task_id: str) -> str:
    """SRP's render path for a task."""
    return f"render/{COLLECTION_NAME}/{task_id}/render.png"


def derivative_folder(task_id: str) -> str:
    """Where every derivative of a task goes."""
    return f"derivatives/{COLLECTION_NAME}/{task_id}/"


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


def srp_reports_done(stack: Stack, request_id: str, task_id: str) -> None:
    """What ingest_webhook does with SRP's `done` callback."""
    transition = stack.store.apply(
        request_id, SrpStatusReported(task_id, "done", (render_name(task_id),))
    )
    publish_transition(stack.store, stack.publisher, request_id, transition.events)


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
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(1000)
    upload(stack.renders, f"render/{COLLECTION_NAME}/{task_id}/turntable.mp4", video, "video/mp4")
    resource = upload(stack.renders, render_name(task_id), rgba_png(256, 256))

    response = deliver(stack.function, resource)

    assert response.status_code == 200, response.text
    generation = int(resource["generation"])
    folder = f"{derivative_folder(task_id)}g{generation}"
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
    assert stored.other_files == [
        {
            "path": f"render/{COLLECTION_NAME}/{task_id}/turntable.mp4",
            "bytes": len(video),
            "sha256": hashlib.sha256(video).hexdigest(),
            "content_type": "video/mp4",
            "generation": stored.other_files[0]["generation"],
        }
    ]
    assert stored.other_files[0]["generation"] > 0
    assert stored.state == State.SUBMITTED  # completion also needs SRP's done
    assert stack.store.render_result(task_id) is not None


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

    folder = f"{derivative_folder(task_id)}g{second['generation']}"
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
            transition = stack.store.apply(request_id, TaskSubmitted(task_id))
            publish_transition(stack.store, stack.publisher, request_id, transition.events)
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
        resource = upload(stack.renders, f"render/{COLLECTION_NAME}/{task_id}/frame_0001.png", png)
    else:
        other = stack.storage.create_bucket(f"other-{uuid.uuid4().hex[:10]}")
        resource = upload(other, name, png)

    response = deliver(stack.function, resource)

    assert response.status_code == 200, response.text
    assert stack.store.render_result(task_id) is None
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
    "not_png": (jpeg_bytes, "not_png"),
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

    transition = stack.store.apply(request_id, TaskSubmitted(task_id))
    publish_transition(stack.store, stack.publisher, request_id, transition.events)

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
    assert stack.store.render_result(task_id) is None
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
