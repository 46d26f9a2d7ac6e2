"""The real Google client libraries against each local emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from google.api_core import exceptions
from google.cloud import firestore, pubsub_v1, storage

from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator
from local_stack.processes import REPO_ROOT, listening_pids, port_is_open

pytestmark = pytest.mark.integration


def test_firestore_transaction_and_create_conflict(
    emulator_env: dict[str, str], unique_name
) -> None:
    client = firestore.Client()
    document = client.collection(unique_name("smoke")).document("counter")
    document.create({"value": 1})

    @firestore.transactional
    def increment(transaction: firestore.Transaction) -> int:
        current = document.get(transaction=transaction).get("value")
        transaction.update(document, {"value": current + 1})
        return int(current) + 1

    assert increment(client.transaction()) == 2
    assert document.get().get("value") == 2
    with pytest.raises(exceptions.AlreadyExists):
        document.create({"value": 0})
    assert document.get().get("value") == 2


def test_gcs_upload_download_list(emulator_env: dict[str, str], unique_name) -> None:
    client = storage.Client()
    bucket = client.create_bucket(unique_name("smoke"))
    bucket.blob("render/a/1/render.png").upload_from_string(b"\x89PNG...", content_type="image/png")
    bucket.blob("render/a/2/render.png").upload_from_string(b"second")

    names = [blob.name for blob in client.list_blobs(bucket, prefix="render/a/")]
    assert names == ["render/a/1/render.png", "render/a/2/render.png"]
    assert bucket.blob("render/a/1/render.png").download_as_bytes() == b"\x89PNG..."


def test_pubsub_publish_and_pull(
    emulator_env: dict[str, str], project_id: str, unique_name
) -> None:
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project_id, unique_name("smoke"))
    subscription = subscriber.subscription_path(project_id, unique_name("smoke-sub"))
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)

    publisher.publish(topic, b"hello", kind="smoke").result(timeout=10)
    response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)

    assert [m.message.data for m in response.received_messages] == [b"hello"]
    assert response.received_messages[0].message.attributes["kind"] == "smoke"


def test_gcs_publishes_finalize_notifications(
    pubsub_emulator: PubsubEmulator, project_id: str, unique_name
) -> None:
    os.environ.update(pubsub_emulator.env)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_id = unique_name("finalize")
    topic = publisher.topic_path(project_id, topic_id)
    subscription = subscriber.subscription_path(project_id, unique_name("finalize-sub"))
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)

    with GcsEmulator(
        pubsub_host=pubsub_emulator.host, pubsub_project=project_id, notify_topic=topic_id
    ) as gcs:
        os.environ.update(gcs.env)
        bucket = storage.Client(project=project_id).create_bucket(unique_name("notify"))
        bucket.blob("render/c/t/render.png").upload_from_string(b"png")
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)

    attributes = response.received_messages[0].message.attributes
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["objectId"] == "render/c/t/render.png"
    assert attributes["bucketId"] == bucket.name


def test_emulator_processes_are_gone_after_stop() -> None:
    emulators = [FirestoreEmulator(), GcsEmulator(), PubsubEmulator(use_existing=False)]
    pids, ports = [], []
    for emulator in emulators:
        with emulator:
            assert emulator.process is not None and emulator.process.is_running()
            pids.append(emulator.process.pid)
            ports.append(int(emulator.host.rsplit(":", 1)[1]))
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
    # The port is released (another process on this shared machine may have taken it since).
    for port in ports:
        assert not listening_pids(port) & set(pids)


def test_emulators_die_with_a_killed_parent() -> None:
    """Even a test run killed with SIGKILL leaves no emulator behind."""
    script = textwrap.dedent(
        """
        import os, signal
        from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator
        started = [FirestoreEmulator().start(), GcsEmulator().start(),
                   PubsubEmulator(use_existing=False).start()]
        print(" ".join(f"{e.process.pid}:{e.host}" for e in started), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    children = [item.split(":", 1) for item in result.stdout.split()]
    assert len(children) == 3, result.stderr
    for pid, host in children:
        _wait_gone(int(pid), int(host.rsplit(":", 1)[1]))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, port: int) -> None:
    """Wait until the process is gone (or a zombie) and nothing listens on its port any more.

    A zombie leader can outlive its threads' sockets for a moment, so the port is checked too.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gone = not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
        if gone and not port_is_open("127.0.0.1", port):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} or its port {port} outlived its parent")
