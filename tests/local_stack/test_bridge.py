"""The local Eventarc bridge against the real Pub/Sub fake, fake-gcs-server, functions-framework."""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.cloud import pubsub_v1, storage

from local_stack.bridge import (
    DEAD_LETTER_DELIVERY_COUNT,
    DEAD_LETTER_SUBSCRIPTION,
    BackoffPolicy,
    Bridge,
    Route,
)
from local_stack.emulators import GcsEmulator, PubsubEmulator
from local_stack.eventarc_events import storage_event_from_notification
from local_stack.functions import FunctionProcess
from srp_bundle.trigger_events import decode_pubsub, decode_storage_object

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "cloudevents"
ECHO_SOURCE = Path(__file__).resolve().parent / "echo_function" / "main.py"
FAST_RETRY = BackoffPolicy(minimum_backoff=0.05, maximum_backoff=0.2)
RFC3339_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Received:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback HTTP endpoint standing in for a function; `answer` picks the status code."""

    answer: Callable[[Received], int] = lambda received: 204
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def for_message(self, message_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("ce-id") == message_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received = Received({k.lower(): v for k, v in self.headers.items()}, body)
            with lock:
                state.requests.append(received)
            status = state.answer(received)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


@dataclass
class Topic:
    """A fresh topic with one subscription on the Pub/Sub fake."""

    topic: str
    subscription: str
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient

    @property
    def topic_id(self) -> str:
        return self.topic.rsplit("/", 1)[1]

    def publish(self, data: bytes, **attributes: str) -> str:
        return str(self.publisher.publish(self.topic, data, **attributes).result(timeout=10))

    def pull_now(self) -> list[Any]:
        response = self.subscriber.pull(
            request={"subscription": self.subscription, "max_messages": 10}, timeout=10
        )
        return list(response.received_messages)


@pytest.fixture
def make_topic(
    pubsub_emulator: PubsubEmulator, project_id: str, unique_name: Callable[[str], str]
) -> Callable[[], Topic]:
    os.environ.update(pubsub_emulator.env)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()

    def make() -> Topic:
        topic = publisher.topic_path(project_id, unique_name("bridge"))
        subscription = subscriber.subscription_path(project_id, unique_name("bridge-sub"))
        publisher.create_topic(name=topic)
        subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=10)
        return Topic(topic, subscription, publisher, subscriber)

    return make


def test_pubsub_message_is_posted_as_eventarc_does_and_acked(
    make_topic: Callable[[], Topic], receiver: Receiver, project_id: str
) -> None:
    source = make_topic()
    request = {"collection_id": "7f1d6a52-9a6e-4a8e-9d1e-1c2b3a4d5e6f", "input_data": {"a": 1}}
    with Bridge([Route(source.subscription, receiver.url)], retry=FAST_RETRY) as bridge:
        with_attributes = source.publish(json.dumps(request).encode(), origin="test")
        without_attributes = source.publish(b"Hello World!")
        bridge.wait_until(lambda stats: stats["delivered"] == 2)
    assert bridge.stats()["retried"] == 0

    (posted,) = receiver.for_message(with_attributes)
    assert posted.headers["ce-specversion"] == "1.0"
    assert posted.headers["ce-type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert posted.headers["ce-source"] == (
        f"//pubsub.googleapis.com/projects/{project_id}/topics/{source.topic_id}"
    )
    assert posted.headers["content-type"].startswith("application/json")
    assert RFC3339_MILLIS.match(posted.headers["ce-time"])
    message = posted.json["message"]
    assert posted.json["subscription"] == source.subscription
    assert json.loads(base64.b64decode(message["data"])) == request
    assert message["messageId"] == message["message_id"] == with_attributes
    assert message["publishTime"] == message["publish_time"] == posted.headers["ce-time"]
    assert message["attributes"] == {"origin": "test"}
    # Same keys as the google-cloudevents fixture of a message without attributes.
    fixture = json.loads((FIXTURES / "MessagePublishedData-duplicatedFields.json").read_text())
    (bare,) = receiver.for_message(without_attributes)
    assert set(bare.json) == set(fixture)
    assert set(bare.json["message"]) == set(fixture["message"]) - {"@type"}
    assert base64.b64decode(bare.json["message"]["data"]) == b"Hello World!"

    # Acked, not merely leased: once the bridge has stopped nothing comes back.
    assert source.pull_now() == []
    assert len(receiver.requests) == 2


def test_failed_attempts_are_retried_with_backoff_until_a_2xx(
    make_topic: Callable[[], Topic], receiver: Receiver
) -> None:
    source = make_topic()
    answers = iter([500, 503, 200])
    receiver.answer = lambda received: next(answers)
    with Bridge([Route(source.subscription, receiver.url)], retry=FAST_RETRY) as bridge:
        message_id = source.publish(b"flaky")
        bridge.wait_until(lambda stats: stats["delivered"] == 1)
        attempts = [record.status for record in bridge.attempts_for(message_id)]
    assert attempts == [500, 503, 200]
    assert len(receiver.for_message(message_id)) == 3
    assert bridge.stats()["retried"] == 2
    assert source.pull_now() == []


def test_a_message_that_always_fails_goes_to_the_dead_letter_topic_once(
    make_topic: Callable[[], Topic], receiver: Receiver
) -> None:
    source, dead_letters = make_topic(), make_topic()
    receiver.answer = lambda received: 500
    route = Route(
        source.subscription, receiver.url, dead_letter_topic=dead_letters.topic, max_attempts=3
    )
    with Bridge([route], retry=FAST_RETRY) as bridge:
        message_id = source.publish(b'{"request_id": "r-1"}', request_id="r-1")
        bridge.wait_until(lambda stats: stats["dead_lettered"] == 1)
    assert len(receiver.for_message(message_id)) == 3
    assert bridge.stats()["retried"] == 2

    (dead,) = dead_letters.pull_now()
    assert dead.message.data == b'{"request_id": "r-1"}'
    attributes = dict(dead.message.attributes)
    assert attributes["request_id"] == "r-1"
    assert attributes[DEAD_LETTER_DELIVERY_COUNT] == "3"
    assert attributes[DEAD_LETTER_SUBSCRIPTION] == source.subscription.rsplit("/", 1)[1]
    # Acked on the source subscription: never delivered again.
    assert source.pull_now() == []


def test_several_deliveries_of_a_route_are_in_flight_at_once(
    make_topic: Callable[[], Topic], receiver: Receiver
) -> None:
    source = make_topic()
    # Each request waits for the other two: only concurrent delivery gets all three through.
    together = threading.Barrier(3, timeout=20)

    def answer(received: Received) -> int:
        together.wait()
        return 204

    receiver.answer = answer
    with Bridge([Route(source.subscription, receiver.url)], concurrency=4) as bridge:
        for number in range(3):
            source.publish(f"message {number}".encode())
        bridge.wait_until(lambda stats: stats["delivered"] == 3)
    assert bridge.stats()["retried"] == 0
    assert not together.broken


def test_fake_gcs_finalize_notification_arrives_as_a_storage_cloud_event(
    make_topic: Callable[[], Topic],
    receiver: Receiver,
    pubsub_emulator: PubsubEmulator,
    project_id: str,
    unique_name: Callable[[str], str],
) -> None:
    notifications = make_topic()
    with GcsEmulator(
        pubsub_host=pubsub_emulator.host,
        pubsub_project=project_id,
        notify_topic=notifications.topic_id,
    ) as gcs:
        os.environ.update(gcs.env)
        client = storage.Client(project=project_id)
        bucket = client.create_bucket(unique_name("renders"))
        other_bucket = client.create_bucket(unique_name("derivatives"))
        route = Route(notifications.subscription, receiver.url, kind="gcs", bucket=bucket.name)
        with Bridge([route], retry=FAST_RETRY) as bridge:
            # Like Eventarc's `bucket` filter: the other bucket's notification is acked, unsent.
            other_bucket.blob("elsewhere.png").upload_from_string(b"other")
            blob = bucket.blob("render/sample/0b7e1c9e-2f0a-4c1b-9d55-3a8f6f1e2d4c/render.png")
            blob.upload_from_string(b"\x89PNG fake", content_type="image/png")
            bridge.wait_until(lambda stats: stats["delivered"] == 1 and stats["skipped"] == 1)

    (posted,) = receiver.requests
    assert posted.headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert posted.headers["ce-source"] == (
        f"//storage.googleapis.com/projects/_/buckets/{bucket.name}"
    )
    assert posted.headers["ce-subject"] == f"objects/{blob.name}"
    assert posted.headers["ce-id"]
    assert RFC3339_MILLIS.match(posted.headers["ce-time"])
    decoded = decode_storage_object(posted.json)
    assert (decoded.bucket, decoded.name) == (bucket.name, blob.name)
    assert decoded.generation == blob.generation
    assert decoded.size == len(b"\x89PNG fake")


def test_notification_fixture_converts_and_other_notifications_are_skipped() -> None:
    fixture = json.loads((FIXTURES / "fake-gcs-server-finalize-notification.json").read_text())
    event = storage_event_from_notification(
        "1234", fixture["attributes"], json.dumps(fixture["data"]).encode()
    )
    assert event is not None
    headers, body = event
    assert headers["ce-id"] == "1234"
    assert headers["ce-subject"] == "objects/incoming/signed-put.png"
    assert headers["ce-source"] == "//storage.googleapis.com/projects/_/buckets/uploads-bkt"
    assert headers["ce-time"] == "2026-11-26T23:58:00.000Z"
    assert json.loads(body) == fixture["data"]

    deleted = {**fixture["attributes"], "eventType": "OBJECT_DELETE"}
    assert storage_event_from_notification("1235", deleted, b"{}") is None


@pytest.fixture
def echo_function(tmp_path: Path, pubsub_emulator: PubsubEmulator) -> Iterator[tuple[str, Path]]:
    received = tmp_path / "received.jsonl"
    process = FunctionProcess(
        "echo",
        {"ECHO_FILE": str(received), **pubsub_emulator.env},
        source=ECHO_SOURCE,
        signature_type="cloudevent",
        threads=4,
    )
    with process:
        yield f"{process.url}/", received


def test_functions_framework_decodes_the_bridge_events(
    make_topic: Callable[[], Topic], echo_function: tuple[str, Path]
) -> None:
    url, received_file = echo_function
    requests, notifications, dead_letters = make_topic(), make_topic(), make_topic()
    fixture = json.loads((FIXTURES / "fake-gcs-server-finalize-notification.json").read_text())
    routes = [
        Route(requests.subscription, url, dead_letter_topic=dead_letters.topic, max_attempts=2),
        Route(notifications.subscription, url, kind="gcs"),
    ]
    with Bridge(routes, retry=FAST_RETRY) as bridge:
        message_id = requests.publish(b'{"hello": "world"}', origin="test")
        requests.publish(b"doomed", echo="crash")
        notifications.publish(json.dumps(fixture["data"]).encode(), **fixture["attributes"])
        bridge.wait_until(lambda stats: stats["delivered"] == 2 and stats["dead_lettered"] == 1)

    events = [json.loads(line) for line in received_file.read_text().splitlines()]
    by_type = {event["attributes"]["type"]: event for event in events}
    assert len(events) == 2
    published = by_type["google.cloud.pubsub.topic.v1.messagePublished"]
    assert published["attributes"]["id"] == message_id
    message = decode_pubsub(published["data"], published["attributes"]["id"])
    assert message.data == b'{"hello": "world"}'
    assert message.attributes == {"origin": "test"}
    assert message.subscription == requests.subscription

    finalized = by_type["google.cloud.storage.object.v1.finalized"]
    assert finalized["attributes"]["subject"] == "objects/incoming/signed-put.png"
    storage_object = decode_storage_object(finalized["data"])
    assert storage_object.generation == 1795737276079003
    assert storage_object.size == 1080993

    # The crashing handler answered 500 (the framework's crash), twice, then dead-lettered.
    (dead,) = dead_letters.pull_now()
    assert dead.message.data == b"doomed"
    assert dead.message.attributes[DEAD_LETTER_DELIVERY_COUNT] == "2"
    crashed = [r for r in bridge.records if r.status == 500]
    assert len(crashed) == 2
