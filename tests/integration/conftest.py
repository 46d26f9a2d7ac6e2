"""Integration fixtures: our functions under functions-framework, the SRP emulator, events.

Function processes are started once per distinct configuration and shared by tests;
each test isolates itself with unique request ids, and reads events by request id.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from google.cloud import firestore, pubsub_v1, storage

from local_stack.emulators import FirestoreEmulator, GcsEmulator, PubsubEmulator
from local_stack.eventarc_events import pubsub_event
from local_stack.functions import FunctionProcess
from local_stack.processes import free_port
from local_stack.srp_emulator import SrpEmulatorProcess
from local_stack.terraform_exemptions import terraform_index_exemptions
from srp_bundle.callback_auth import (
    CallbackSigner,
    deployment_scope,
    legacy_callback_token,
    new_callback_nonce,
)
from srp_bundle.effects import Effects
from srp_bundle.events import EventPublisher
from srp_bundle.outbox import apply_and_publish
from srp_bundle.settings import load_settings
from srp_bundle.task_state import Change, TaskRecord, Transition, utc_now
from srp_bundle.task_store import TaskStore
from srp_bundle.wiring import Services

SAMPLE_COLLECTION_ID = "3f1c9a52-7d4e-4b8a-9c1e-5a2b7d6e8f01"
SEED_INPUT = {
    "bg": "RareFlare3.png",
    "pants": "stepper",
    "pants_color": "#ffffff",
    "shoe": "4",
    "shoe_color": "#ff0000",
    "platform": "epic",
}
SRP_API_KEY = "integration-" + secrets.token_hex(8)
WEBHOOK_SECRET = secrets.token_hex(24)


class EventCollector:
    """Pulls outgoing events from a subscription in the background, indexed by request id."""

    def __init__(self, subscriber: pubsub_v1.SubscriberClient, subscription: str) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pull, daemon=True)
        self._thread.start()

    def _pull(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.subscriber.pull(
                    subscription=self.subscription, max_messages=100, timeout=2
                )
            except Exception:
                continue
            if not response.received_messages:
                time.sleep(0.05)
                continue
            self.subscriber.acknowledge(
                subscription=self.subscription,
                ack_ids=[m.ack_id for m in response.received_messages],
            )
            with self._lock:
                for received in response.received_messages:
                    event = {
                        "type": received.message.attributes["type"],
                        "event_id": received.message.attributes.get("event_id"),
                        "data": json.loads(received.message.data),
                    }
                    self.by_request[event["data"]["request_id"]].append(event)
                self._lock.notify_all()

    def types(self, request_id: str) -> list[str]:
        """Event types received so far for a request, in arrival order."""
        with self._lock:
            return [e["type"] for e in self.by_request[request_id]]

    def wait_for(self, request_id: str, event_type: str, timeout: float = 30) -> list[str]:
        """Wait until an event of `event_type` arrived for the request; return all its types."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while event_type not in [e["type"] for e in self.by_request[request_id]]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no {event_type} for {request_id}; got {self.types(request_id)}"
                    )
                self._lock.wait(remaining)
        return self.types(request_id)

    def settle(self, seconds: float = 1.0) -> None:
        """Give in-flight events a moment, so a test can assert nothing more arrives."""
        time.sleep(seconds)

    def stop(self) -> None:
        """Stop pulling."""
        self._stop.set()
        self._thread.join(5)


class Pipeline:
    """Everything a function test needs: env, clients, the SRP emulator and helpers."""

    def __init__(
        self,
        project_id: str,
        base_env: dict[str, str],
        srp: SrpEmulatorProcess,
        events: EventCollector,
        events_topic: str,
        renders_bucket: str,
        derivatives_bucket: str,
    ) -> None:
        self.project_id = project_id
        self.base_env = base_env
        self.srp = srp
        self.events = events
        self.events_topic = events_topic
        self.renders_bucket = renders_bucket
        self.derivatives_bucket = derivatives_bucket
        self.tasks_collection = f"tasks-{uuid.uuid4().hex[:8]}"
        self.webhook_port = free_port()
        self.firestore = firestore.Client(project=project_id)
        self.store = TaskStore(self.firestore, self.tasks_collection)
        self.storage = storage.Client(project=project_id)
        self.events_publisher = EventPublisher(
            pubsub_v1.PublisherClient(), project_id, events_topic
        )
        self._functions: dict[tuple[str, tuple[tuple[str, str], ...]], FunctionProcess] = {}
        self.http = httpx.Client(timeout=60)

    @property
    def webhook_url(self) -> str:
        """Where SRP calls back (the shared ingest_webhook process)."""
        return f"http://127.0.0.1:{self.webhook_port}/"

    def env(self, **overrides: str) -> dict[str, str]:
        """The functions' environment."""
        return {
            **self.base_env,
            "SRP_API_URL": self.srp.url,
            "SRP_API_KEY": SRP_API_KEY,
            "WEBHOOK_URL": self.webhook_url,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "EVENTS_TOPIC": self.events_topic,
            "TASKS_COLLECTION": self.tasks_collection,
            "RENDERS_BUCKET": self.renders_bucket,
            "DERIVATIVES_BUCKET": self.derivatives_bucket,
            "SRP_TIMEOUT_SECONDS": "3",
            **overrides,
        }

    def function(self, name: str, **overrides: str) -> FunctionProcess:
        """A running function process with this configuration (started on first use)."""
        key = (name, tuple(sorted(overrides.items())))
        if key not in self._functions:
            port = self.webhook_port if name == "ingest_webhook" and not overrides else None
            self._functions[key] = FunctionProcess(name, self.env(**overrides), port=port).start()
        return self._functions[key]

    def deliver(
        self,
        function: FunctionProcess,
        body: dict[str, Any] | bytes,
        *,
        message_id: str | None = None,
        attributes: dict[str, str] | None = None,
        topic: str = "render-requests",
    ) -> httpx.Response:
        """POST one Pub/Sub message to a function as Eventarc would."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers, payload = pubsub_event(
            project_id=self.project_id,
            topic_id=topic,
            subscription_id=f"{topic}-sub",
            message_id=message_id or uuid.uuid4().hex,
            data=data,
            attributes=attributes,
        )
        return self.http.post(function.url, headers=headers, content=payload)

    def srp_tasks(self) -> list[dict[str, Any]]:
        """Every task the SRP emulator holds, in the seed's public shape."""
        return [entry["task"] for entry in self.srp.control.tasks()]

    def srp_task(self, task_id: str) -> dict[str, Any]:
        """One SRP task, in the seed's public shape."""
        matches = [task for task in self.srp_tasks() if task["id"] == task_id]
        assert matches, f"SRP has no task {task_id}"
        return matches[0]

    def services(
        self, function_name: str | None = None, effects: Effects | None = None, **overrides: str
    ) -> Services:
        """The jobs as a deployed function wires them, on this pipeline's emulators."""
        return Services(load_settings(function_name, self.env(**overrides)), effects)

    def apply(self, request_id: str, change: Change) -> Transition:
        """Apply a change as a function would: commit, then publish its events."""
        transition = apply_and_publish(self.store, self.events_publisher, request_id, change)
        return transition

    def unpublished_events(self, request_id: str) -> list[dict[str, Any]]:
        """Events decided for the request whose publication was never confirmed."""
        return self.store.pending_events(utc_now() + timedelta(days=1), 100, request_id)

    def callback_token(self, request_id: str, secret: str = WEBHOOK_SECRET) -> str:
        """The token SRP would send for this request (v1 for a record without a nonce)."""
        record = self.store.get(request_id)
        nonce = record.callback_nonce if record is not None else new_callback_nonce()
        if nonce is None:
            return legacy_callback_token(secret, request_id)
        scope = deployment_scope(self.project_id, self.tasks_collection)
        return CallbackSigner(scope, (secret,)).token(request_id, nonce)

    def record(self, request_id: str) -> TaskRecord:
        """The task record, which must exist."""
        record = self.store.get(request_id)
        assert record is not None, f"no record for {request_id}"
        return record

    def wait_for_state(self, request_id: str, *states: str, timeout: float = 30) -> TaskRecord:
        """Poll the record until it reaches one of `states`."""
        deadline = time.monotonic() + timeout
        record = None
        while time.monotonic() < deadline:
            record = self.store.get(request_id)
            if record is not None and record.state in states:
                return record
            time.sleep(0.1)
        raise TimeoutError(f"{request_id} never reached {states}; last: {record}")

    def close(self) -> None:
        """Stop every function process."""
        for process in self._functions.values():
            process.stop()
        self.http.close()


@pytest.fixture(scope="session")
def srp_emulator(gcs_emulator: GcsEmulator, project_id: str) -> Iterator[SrpEmulatorProcess]:
    """The SRP emulator for the session: small renders, quick lifecycle."""
    with SrpEmulatorProcess(
        renders_bucket=f"renders-{uuid.uuid4().hex[:8]}",
        api_keys=[SRP_API_KEY],
        env={**gcs_emulator.env, "GOOGLE_CLOUD_PROJECT": project_id},
        render_size=128,
        parallel=4,
        queue_seconds=0.05,
        render_seconds=0.1,
        callback_backoff=0.2,
        seed=7,
    ) as process:
        yield process


@contextmanager
def running_pipeline(
    project_id: str, base_env: dict[str, str], srp: SrpEmulatorProcess
) -> Iterator[Pipeline]:
    """A pipeline on the given emulators: its own events topic, bucket and task collection."""
    saved = dict(os.environ)
    os.environ.update(base_env)
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    events_topic = f"render-events-{uuid.uuid4().hex[:8]}"
    publisher.create_topic(name=publisher.topic_path(project_id, events_topic))
    subscription = subscriber.subscription_path(project_id, f"{events_topic}-test")
    subscriber.create_subscription(
        name=subscription,
        topic=publisher.topic_path(project_id, events_topic),
        ack_deadline_seconds=30,
    )
    derivatives_bucket = f"derivatives-{uuid.uuid4().hex[:8]}"
    storage.Client(project=project_id).create_bucket(derivatives_bucket)
    events = EventCollector(subscriber, subscription)
    pipeline = Pipeline(
        project_id, base_env, srp, events, events_topic, srp.renders_bucket, derivatives_bucket
    )
    try:
        yield pipeline
    finally:
        pipeline.close()
        events.stop()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def _pipeline(
    project_id: str,
    firestore_emulator: FirestoreEmulator,
    pubsub_emulator: PubsubEmulator,
    gcs_emulator: GcsEmulator,
    srp_emulator: SrpEmulatorProcess,
) -> Iterator[Pipeline]:
    base_env = {
        "GOOGLE_CLOUD_PROJECT": project_id,
        **firestore_emulator.env,
        **pubsub_emulator.env,
        **gcs_emulator.env,
    }
    with running_pipeline(project_id, base_env, srp_emulator) as pipeline:
        yield pipeline


@pytest.fixture
def pipeline(_pipeline: Pipeline, firestore_emulator: FirestoreEmulator) -> Iterator[Pipeline]:
    """The shared pipeline, with the SRP emulator reset (no faults) around each test and the
    local Firestore exempting from indexing what Terraform exempts (set for every test, so a
    test that changed them cannot leak into the next)."""
    os.environ.update(_pipeline.base_env)
    firestore_emulator.control.set_index_exemptions(
        terraform_index_exemptions({"tasks_collection": _pipeline.tasks_collection})
    )
    _pipeline.srp.control.reset()
    yield _pipeline
    _pipeline.srp.control.reset()


@pytest.fixture
def render_request(unique_name: Callable[[str], str]) -> Callable[..., dict[str, Any]]:
    """A valid render request for the sample collection, with a unique request id."""

    def make(**fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "collection_id": SAMPLE_COLLECTION_ID,
            "input_data": dict(SEED_INPUT),
            "request_id": unique_name("req"),
        }
        body.update(fields)
        return {k: v for k, v in body.items() if v is not None}

    return make
