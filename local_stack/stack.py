"""The whole pipeline on one machine: emulators, SRP emulator, functions, Eventarc bridge.

`LocalStack` starts everything on free loopback ports, wires it as production is wired
(topics, subscriptions, dead-letter policy, bucket notifications, triggers) and stops
every process it started, whatever happens. The CLI (`python -m local_stack`) and the
end-to-end tests drive it through the same methods.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore, pubsub_v1, storage

from local_stack.bridge import BackoffPolicy, Bridge, Route
from local_stack.emulators import (
    FirestoreEmulator,
    GcsEmulator,
    PubsubEmulator,
    scoped_environment,
)
from local_stack.functions import SIGNATURE_TYPES, FunctionProcess, available_functions
from local_stack.processes import ManagedProcess, free_port
from local_stack.srp_emulator import SrpEmulatorProcess
from local_stack.terraform_exemptions import terraform_index_exemptions
from srp_bundle import settings as bundle_settings

logger = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"completed", "failed"})


@dataclass(frozen=True)
class StackConfig:
    """Everything a local stack run can vary; the defaults are the developer's stack."""

    project_id: str = "srp-local"
    tasks_collection: str = bundle_settings.DEFAULT_TASKS_COLLECTION
    requests_topic: str = "render-requests"
    dead_letter_topic: str = "render-requests-dead-letter"
    events_topic: str = "render-events"
    reconcile_topic: str = "reconcile"
    notifications_topic: str = "gcs-notifications"
    renders_bucket: str = "srp-renders"
    derivatives_bucket: str = "srp-derivatives"
    derivative_specs: str = bundle_settings.DEFAULT_DERIVATIVE_SPECS
    # The SRP emulator.
    render_size: int = 2048
    srp_parallel: int = 2
    srp_queue_seconds: float = 0.2
    srp_render_seconds: float = 0.3
    srp_faults: Mapping[str, Any] | None = None
    srp_seed: int | None = None
    # Commit faults of the local Firestore (local_stack/firestore/README.md), e.g.
    # {"seed": 3, "drop_answer_rate": 0.05}; its index exemptions come from our Terraform.
    firestore_faults: Mapping[str, Any] | None = None
    # Eventarc and the render-requests subscription's retry and dead-letter policy.
    max_delivery_attempts: int = 5
    retry: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(0.5, 10.0))
    bridge_concurrency: int = 4
    function_threads: int = 8
    # Which functions to run (None: every functions/<name>/main.py) and extra settings.
    functions: Sequence[str] | None = None
    function_env: Mapping[str, str] = field(default_factory=dict)


class StackError(RuntimeError):
    """The stack cannot start; the message says which part and why."""


class LocalStack:
    """The running stack; a context manager that always stops what it started."""

    def __init__(
        self,
        config: StackConfig | None = None,
        *,
        firestore_emulator: FirestoreEmulator | None = None,
        pubsub_emulator: PubsubEmulator | None = None,
    ) -> None:
        self.config = config or StackConfig()
        # Emulators passed in belong to the caller (e.g. a test session): never stopped here.
        self._given_firestore = firestore_emulator
        self._given_pubsub = pubsub_emulator
        self.firestore_emulator = firestore_emulator or FirestoreEmulator(
            faults=self.config.firestore_faults,
            index_exemptions=terraform_index_exemptions(
                {"tasks_collection": self.config.tasks_collection}
            ),
        )
        self.pubsub_emulator = pubsub_emulator or PubsubEmulator(use_existing=False)
        self.gcs_emulator: GcsEmulator | None = None
        self.srp: SrpEmulatorProcess | None = None
        self.functions: dict[str, FunctionProcess] = {}
        self.bridge: Bridge | None = None
        self.api_key = f"local-{secrets.token_urlsafe(24)}"
        self.webhook_secret = secrets.token_urlsafe(32)  # 43 characters
        self.env: dict[str, str] = {}
        self._publisher: pubsub_v1.PublisherClient | None = None
        self._subscriber: pubsub_v1.SubscriberClient | None = None
        self._firestore: firestore.Client | None = None
        self._storage: storage.Client | None = None
        self._events: list[dict[str, Any]] = []
        self._events_lock = threading.Lock()
        self._started: list[Callable[[], None]] = []

    # -- names -------------------------------------------------------------------------

    def topic_path(self, topic_id: str) -> str:
        """projects/<project>/topics/<topic_id>."""
        return f"projects/{self.config.project_id}/topics/{topic_id}"

    def subscription_path(self, subscription_id: str) -> str:
        """projects/<project>/subscriptions/<subscription_id>."""
        return f"projects/{self.config.project_id}/subscriptions/{subscription_id}"

    @property
    def function_names(self) -> list[str]:
        """The functions this stack runs."""
        names = list(self.config.functions or available_functions())
        unknown = [name for name in names if name not in SIGNATURE_TYPES]
        if unknown:
            raise StackError(f"unknown function(s): {', '.join(unknown)}")
        return names

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> LocalStack:
        """Start every part in dependency order; on any failure stop what already runs."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        config = self.config
        names = self.function_names
        # Every child is spawned before this process opens its first gRPC channel: forking
        # a process with live gRPC threads can abort the child (seen with fake-gcs-server).
        self._start_part(self.pubsub_emulator, self._given_pubsub is None)
        self._start_part(self.firestore_emulator, self._given_firestore is None)
        # fake-gcs-server looks the notification topic up only when it publishes.
        self.gcs_emulator = GcsEmulator(
            pubsub_host=self.pubsub_emulator.host,
            pubsub_project=config.project_id,
            notify_topic=config.notifications_topic,
        )
        self._start_part(self.gcs_emulator, True)
        emulator_env = {
            "GOOGLE_CLOUD_PROJECT": config.project_id,
            **self.pubsub_emulator.env,
            **self.firestore_emulator.env,
            **self.gcs_emulator.env,
        }

        # Every function's port is known before any starts: submit_task needs WEBHOOK_URL.
        ports = {name: free_port() for name in names}
        webhook_url = (
            f"http://127.0.0.1:{ports['ingest_webhook']}/"
            if "ingest_webhook" in ports
            else "http://127.0.0.1:9/"  # nothing listens: callbacks fail, reconcile catches up
        )
        self.srp = SrpEmulatorProcess(
            renders_bucket=config.renders_bucket,
            api_keys=[self.api_key],
            env=emulator_env,
            render_size=config.render_size,
            parallel=config.srp_parallel,
            queue_seconds=config.srp_queue_seconds,
            render_seconds=config.srp_render_seconds,
            faults=config.srp_faults,
            seed=config.srp_seed,
            extra_args=["--no-create-bucket"],
        )
        self._started.append(self.srp.stop)
        self.srp.start()

        self.env = {
            **emulator_env,
            bundle_settings.SRP_API_URL: self.srp.url,
            bundle_settings.SRP_API_KEY: self.api_key,
            bundle_settings.WEBHOOK_URL: webhook_url,
            bundle_settings.WEBHOOK_SECRET: self.webhook_secret,
            bundle_settings.TASKS_COLLECTION: config.tasks_collection,
            bundle_settings.EVENTS_TOPIC: config.events_topic,
            bundle_settings.RENDERS_BUCKET: config.renders_bucket,
            bundle_settings.DERIVATIVES_BUCKET: config.derivatives_bucket,
            bundle_settings.DERIVATIVE_SPECS: config.derivative_specs,
            # Producers on this machine call back over http to loopback addresses.
            bundle_settings.ALLOW_LOCAL_HTTP_CALLBACKS: "true",
            **config.function_env,
        }
        for name in names:
            missing = [
                variable
                for variable in bundle_settings.REQUIRED_BY_FUNCTION.get(name, ())
                if not self.env.get(variable)
            ]
            if missing:
                raise StackError(f"{name} needs {', '.join(missing)}, which the stack lacks")
        self.functions = {
            name: FunctionProcess(name, self.env, port=ports[name], threads=config.function_threads)
            for name in names
        }
        # One after another from this thread: children get PR_SET_PDEATHSIG, which fires
        # when the *thread* that forked them ends, so a worker pool would kill them at once.
        for process in self.functions.values():
            self._started.append(process.stop)
            process.start()

        with scoped_environment(emulator_env):
            self._publisher = pubsub_v1.PublisherClient()
            self._subscriber = pubsub_v1.SubscriberClient()
            self._storage = storage.Client(project=config.project_id)
            self._firestore = firestore.Client(project=config.project_id)
        self._started.append(self._close_clients)
        self._create_messaging()
        for bucket in (config.renders_bucket, config.derivatives_bucket):
            with contextlib.suppress(api_exceptions.Conflict):
                self._storage.create_bucket(bucket)

        self.bridge = Bridge(
            self._routes(),
            retry=config.retry,
            concurrency=config.bridge_concurrency,
            subscriber=self._subscriber,
            publisher=self._publisher,
        )
        self._started.append(self.bridge.stop)
        self.bridge.start()

    def _start_part(
        self, part: FirestoreEmulator | PubsubEmulator | GcsEmulator, own: bool
    ) -> None:
        if own:
            self._started.append(part.stop)
            part.start()

    def _close_clients(self) -> None:
        # Before the emulators go: open gRPC channels to a dead server only log noise.
        if self._subscriber is not None:
            self._subscriber.close()
        if self._publisher is not None:
            self._publisher.transport.close()
        if self._firestore is not None:
            self._firestore.close()

    def stop(self) -> None:
        """Stop everything this stack started, newest first; never raises for one part."""
        while self._started:
            stop = self._started.pop()
            try:
                stop()
            except Exception:
                logger.exception("stopping a part of the local stack failed")

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def processes(self) -> list[ManagedProcess | SrpEmulatorProcess]:
        """Every child process this stack started (for checks that none outlives it)."""
        found: list[ManagedProcess | SrpEmulatorProcess] = []
        for emulator, own in (
            (self.pubsub_emulator, self._given_pubsub is None),
            (self.firestore_emulator, self._given_firestore is None),
            (self.gcs_emulator, True),
        ):
            if own and emulator is not None and emulator.process is not None:
                found.append(emulator.process)
        if self.srp is not None:
            found.append(self.srp)
        found.extend(self.functions.values())
        return found

    # -- wiring ------------------------------------------------------------------------

    def _create_messaging(self) -> None:
        config = self.config
        assert self._publisher is not None and self._subscriber is not None
        subscriptions = {
            config.requests_topic: "submit-task",
            config.dead_letter_topic: "record-dead-letter",
            config.reconcile_topic: "reconcile-tasks",
            config.notifications_topic: "postprocess-render",
            config.events_topic: "events-observer",
        }
        for topic_id, subscription_id in subscriptions.items():
            topic = self.topic_path(topic_id)
            with contextlib.suppress(api_exceptions.AlreadyExists):
                self._publisher.create_topic(name=topic)
            with contextlib.suppress(api_exceptions.AlreadyExists):
                # pstest refuses ack deadlines under 10 s.
                self._subscriber.create_subscription(
                    name=self.subscription_path(subscription_id),
                    topic=topic,
                    ack_deadline_seconds=60,
                )

    def _routes(self) -> list[Route]:
        config = self.config
        routes = []
        for name, process in self.functions.items():
            url = f"{process.url}/"
            if name == "submit_task":
                routes.append(
                    Route(
                        self.subscription_path("submit-task"),
                        url,
                        dead_letter_topic=self.topic_path(config.dead_letter_topic),
                        max_attempts=config.max_delivery_attempts,
                    )
                )
            elif name == "record_dead_letter":
                routes.append(Route(self.subscription_path("record-dead-letter"), url))
            elif name == "reconcile_tasks":
                routes.append(Route(self.subscription_path("reconcile-tasks"), url))
            elif name == "postprocess_render":
                routes.append(
                    Route(
                        self.subscription_path("postprocess-render"),
                        url,
                        kind="gcs",
                        bucket=config.renders_bucket,
                    )
                )
        return routes

    # -- driving and observing ---------------------------------------------------------

    def publish_request(
        self,
        collection_id: str,
        input_data: Mapping[str, Any],
        *,
        request_id: str | None = None,
        **fields: Any,
    ) -> str:
        """Publish one render request; returns its request id (a new UUID unless given)."""
        request_id = request_id or str(uuid.uuid4())
        body = {
            "collection_id": collection_id,
            "input_data": dict(input_data),
            "request_id": request_id,
            **fields,
        }
        self.publish_raw(json.dumps(body).encode())
        return request_id

    def publish_raw(self, data: bytes, topic_id: str | None = None, **attributes: str) -> str:
        """Publish any bytes (render-requests by default); returns the message id."""
        assert self._publisher is not None, "the stack is not running"
        topic = self.topic_path(topic_id or self.config.requests_topic)
        return str(self._publisher.publish(topic, data, **attributes).result(timeout=30))

    def trigger_reconcile(self) -> str:
        """What Cloud Scheduler does: a message on the reconcile topic."""
        return self.publish_raw(b"{}", topic_id=self.config.reconcile_topic)

    def record(self, request_id: str) -> dict[str, Any] | None:
        """The task record of a request, as stored, or None."""
        assert self._firestore is not None, "the stack is not running"
        snapshot = (
            self._firestore.collection(self.config.tasks_collection).document(request_id).get()
        )
        return snapshot.to_dict() if snapshot.exists else None

    def records(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Task records of several requests (None for those without one yet)."""
        assert self._firestore is not None, "the stack is not running"
        collection = self._firestore.collection(self.config.tasks_collection)
        ids = list(request_ids)
        found = {
            snapshot.id: snapshot.to_dict()
            for snapshot in self._firestore.get_all([collection.document(i) for i in ids])
            if snapshot.exists
        }
        return {request_id: found.get(request_id) for request_id in ids}

    def wait_for_states(
        self,
        request_ids: Iterable[str],
        states: Collection[str] = TERMINAL_STATES,
        *,
        timeout: float = 120.0,
        on_progress: Callable[[dict[str, dict[str, Any] | None]], None] | None = None,
        poll_interval: float = 0.25,
    ) -> dict[str, dict[str, Any]]:
        """Wait until every request's record is in one of `states`; TimeoutError otherwise."""
        ids = list(request_ids)
        deadline = time.monotonic() + timeout
        while True:
            current = self.records(ids)
            if on_progress is not None:
                on_progress(current)
            pending = [
                request_id
                for request_id, record in current.items()
                if record is None or record.get("state") not in states
            ]
            if not pending:
                return {request_id: record for request_id, record in current.items() if record}
            if time.monotonic() > deadline:
                summary = {i: (current[i] or {}).get("state") for i in pending[:10]}
                raise TimeoutError(
                    f"{len(pending)} of {len(ids)} requests not in {sorted(states)} "
                    f"after {timeout}s: {summary}"
                )
            time.sleep(poll_interval)

    def events(self) -> list[dict[str, Any]]:
        """Every outgoing event seen so far on EVENTS_TOPIC: {"type", "data", "attributes"}."""
        assert self._subscriber is not None, "the stack is not running"
        subscription = self.subscription_path("events-observer")
        while True:
            with warnings.catch_warnings():
                # Deprecated for production pull loops; exactly right for draining a fake.
                warnings.simplefilter("ignore", DeprecationWarning)
                response = self._subscriber.pull(
                    request={
                        "subscription": subscription,
                        "max_messages": 1000,
                        "return_immediately": True,
                    },
                    timeout=30,
                )
            received = list(response.received_messages)
            if not received:
                break
            with self._events_lock:
                for item in received:
                    attributes = dict(item.message.attributes)
                    try:
                        data: Any = json.loads(item.message.data)
                    except ValueError:
                        data = item.message.data.decode(errors="replace")
                    self._events.append(
                        {"type": attributes.get("type"), "data": data, "attributes": attributes}
                    )
            self._subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]}
            )
        with self._events_lock:
            return list(self._events)

    def wait_for_events(
        self, event_type: str, request_ids: Iterable[str], *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Every event seen so far, once each request has an event of `event_type`.

        A record reaches its state when its transaction commits; its event is published
        just after, so a reader of both waits for the event too.
        """
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            seen = {
                e["data"].get("request_id")
                for e in events
                if e["type"] == event_type and isinstance(e["data"], dict)
            }
            if wanted <= seen:
                return events
            if time.monotonic() > deadline:
                missing = sorted(wanted - seen)[:10]
                raise TimeoutError(f"no {event_type} after {timeout}s for {missing}")
            time.sleep(0.1)

    def download(self, bucket: str, path: str) -> bytes:
        """An object's bytes from the local GCS."""
        return bytes(self.bucket(bucket).blob(path).download_as_bytes())

    def bucket(self, name: str) -> Any:
        """A local GCS bucket, through the stack's storage client."""
        assert self._storage is not None, "the stack is not running"
        return self._storage.bucket(name)

    def describe(self) -> dict[str, Any]:
        """Endpoints, topics and env vars, for printing and for tools pointed at the stack."""
        return {
            "firestore": self.firestore_emulator.host,
            "pubsub": self.pubsub_emulator.host,
            "gcs": self.gcs_emulator.url if self.gcs_emulator else None,
            "srp": self.srp.url if self.srp else None,
            "functions": {name: process.url for name, process in self.functions.items()},
            "topics": {
                "requests": self.topic_path(self.config.requests_topic),
                "dead_letters": self.topic_path(self.config.dead_letter_topic),
                "events": self.topic_path(self.config.events_topic),
                "reconcile": self.topic_path(self.config.reconcile_topic),
                "gcs_notifications": self.topic_path(self.config.notifications_topic),
            },
            "buckets": [self.config.renders_bucket, self.config.derivatives_bucket],
        }
