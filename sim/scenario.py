"""One simulated run: the real use cases wired to the simulated world, producers, invariants.

A run is a seed plus a scenario size. Phase 1 (safety): producers publish render requests
while the run's fault kinds are injected; invariants 3-7 are checked after every step.
Phase 2 (liveness): faults stop; the world runs until every request is settled (or the
time limit), then invariants 1-7 are checked at quiescence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sim import firestore
from sim.srp import PNG, Post, Srp
from sim.storage import Storage
from sim.world import Faults, InvariantViolation, World
from srp_bundle import dead_letters
from srp_bundle.dead_letters import DELIVERY_COUNT_ATTRIBUTE, SOURCE_SUBSCRIPTION_ATTRIBUTE
from srp_bundle.derivatives import EncodedDerivative, ImageInfo
from srp_bundle.effects import Effects
from srp_bundle.errors import CorruptImageError
from srp_bundle.render_outputs import ProcessedFile
from srp_bundle.render_requests import request_id_hint
from srp_bundle.settings import Settings, parse_derivative_specs
from srp_bundle.task_state import TERMINAL_STATES, State
from srp_bundle.task_store import OUTBOX_SUFFIX
from srp_bundle.trigger_events import PubsubMessage, StorageObject
from srp_bundle.wiring import Services

TASKS = "srp_tasks"
RENDERS_BUCKET = "sim-renders"
DERIVATIVES_BUCKET = "sim-derivatives"
ACK_DEADLINE = 60.0
# Eventarc retries a failing storage event for 24 hours, then drops it.
EVENTARC_RETRY_SECONDS = 24 * 3600.0
# Terraform's submit_delivery.max_delivery_attempts: its default and its minimum.
DELIVERY_ATTEMPT_CHOICES = (20, 5)
RECONCILE_EVERY = 600.0
PUBLISH_WINDOW = 1800.0
FAULT_WINDOW = 4 * 3600.0
LIVENESS_LIMIT = 3 * 24 * 3600.0
# Records stay far below Firestore's 1 MiB; the e2e run's bound is the one to hold.
MAX_RECORD_BYTES = 100 * 1024

# Every fault kind the simulator can inject, with its probability per opportunity.
FAULT_KINDS: dict[str, float] = {
    "slow_io": 0.003,
    "fs_commit_fails": 0.03,
    "fs_commit_answer_lost": 0.03,
    "fs_read_fails": 0.02,
    "gcs_fails": 0.03,
    "ps_redeliver_after_ack": 0.05,
    "ps_concurrent_delivery": 0.05,
    "ps_duplicate_publish": 0.1,
    "ps_publish_fails": 0.03,
    "srp_connect_refused": 0.05,
    "srp_outage": 1.0,  # once per run: SRP answers 503 to everything for 1 to 4 hours
    "srp_post_error": 0.08,
    "srp_post_429": 0.08,
    "srp_post_hang": 0.05,
    "srp_create_then_error": 0.08,
    "srp_create_then_hang": 0.08,
    "srp_lost_answer": 0.08,
    "srp_get_error": 0.05,
    "srp_get_429": 0.03,
    "srp_get_hang": 0.02,
    "srp_get_lags": 0.2,
    "srp_render_fails": 0.1,
    "srp_never_finishes": 0.02,
    "srp_cb_duplicate": 0.15,
    "srp_cb_delay": 0.1,
    "srp_cb_drop": 0.15,
    "srp_cb_wrong_status": 0.05,
    "srp_cb_odd_status": 0.02,
    "srp_cb_crossed": 0.02,
    "srp_odd_collection_name": 0.02,
    "gcs_duplicate_finalize": 0.2,
    "srp_rewrites_render": 0.1,
    "srp_corrupt_render": 0.05,
    "srp_sibling_files": 0.1,
    "input_invalid": 0.05,
    "input_hostile": 0.05,
    "input_nan": 0.03,
    "input_no_request_id": 0.15,
    "srp_get_omits_callbacks": 0.1,
}


@dataclass
class RunResult:
    """What one run did and whether every invariant held."""

    seed: int
    requests: int
    steps: int
    simulated_seconds: float
    faults: list[str]
    violation: InvariantViolation | None = None
    trace: str = ""
    stats: Counter[str] = field(default_factory=Counter)


def swarm(seed: int, kinds: dict[str, float] | None = None) -> dict[str, float]:
    """The fault kinds one seed runs with: a random subset, drawn from its own stream."""
    rng = random.Random(f"swarm-{seed}")
    kinds = FAULT_KINDS if kinds is None else kinds
    enabled = {}
    for kind, p in kinds.items():
        if rng.random() < 0.6:
            enabled[kind] = p * rng.choice((0.5, 1.0, 2.0))
    return enabled


class Simulation:
    """The simulated world, the bundle's real use cases, and the invariant checks."""

    def __init__(
        self,
        seed: int,
        requests: int = 8,
        *,
        faults: dict[str, float] | None = None,
        trace_limit: int = 20000,
    ) -> None:
        self.seed = seed
        self.n_requests = requests
        self.fault_kinds = swarm(seed) if faults is None else dict(faults)
        self.world = world = World(seed, Faults(dict(self.fault_kinds)), trace_limit=trace_limit)
        # Deployment settings vary per seed too, from the swarm's stream.
        self.max_delivery_attempts = random.Random(f"config-{seed}").choice(
            DELIVERY_ATTEMPT_CHOICES
        )
        self.settings = Settings(
            project_id="sim",
            srp_api_url="https://srp.sim.invalid",
            srp_api_key="sim-key",
            webhook_url="https://hooks.sim.invalid/ingest_webhook",
            webhook_secret="sim-secret-0123456789abcdef",
            events_topic="render-events",
            renders_bucket_name=RENDERS_BUCKET,
            derivatives_bucket_name=DERIVATIVES_BUCKET,
            derivative_specs=parse_derivative_specs("512:webp,256:png"),
        )
        self.db = firestore.Server(world, index_exempt=firestore.terraform_index_exempt(TASKS))
        self.storage = Storage(world)
        self.srp = Srp(
            world,
            self.storage,
            RENDERS_BUCKET,
            self._deliver_callback,
            self.settings.srp_timeout_seconds,
            api_key=self.settings.srp_api_key,
        )
        # The real wiring, on the simulated world: one clock, one seeded randomness (the
        # SRP client's jitter, attempt ids, nonces), the simulated SRP as the HTTP seam.
        effects = Effects(
            clock=world.now,
            rng=random.Random(f"effects-{seed}"),
            sleep=world.sleep,
            srp_http=self.srp.http,
            firestore_client=lambda _: firestore.Client(self.db),
            storage_client=lambda _: self.storage.client(),
            publisher_client=lambda _: _Publisher(self),
        )
        functions = Services(self.settings, effects, process_file=_fake_process_file)
        self.store = functions.store
        self.srp_client = functions.srp
        self.publisher = functions.publisher
        self.submitter = functions.submitter
        self.ingestor = functions.ingestor
        self.postprocessor = functions.postprocessor
        # reconcile_tasks is its own function: its own services, as in production.
        self.reconciler = Services(
            self.settings, effects, process_file=_fake_process_file
        ).reconciler
        # Book-keeping for the invariants.
        self.expected: dict[str, str] = {}  # request id -> how it was produced
        self.committed_events: set[str] = set()
        self.published: list[tuple[str, str, str]] = []  # (event_id, type, request_id)
        self.derivative_writes: Counter[str] = Counter()
        self.srp_writing = False
        self.message_seq = 0
        self.reconciling = False
        self.settled = False
        self.stats: Counter[str] = Counter()
        self.violation: InvariantViolation | None = None
        self.db.on_write.append(self._on_document_write)
        self.db.on_refused = self._on_refused
        self.storage.on_write.append(self._on_object_write)
        self.srp.on_post.append(self._on_post)
        world.after_step = self._after_step

    # ---- the run ------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Safety phase, then liveness phase, then the checks at quiescence."""
        world = self.world
        previous_disable = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        try:
            for index in range(self.n_requests):
                world.at(world.rng.uniform(0, PUBLISH_WINDOW), lambda i=index: self._produce(i))
            world.at(world.rng.uniform(0, RECONCILE_EVERY), self._reconcile_tick)
            if world.fault("srp_outage"):
                start = world.rng.uniform(0, PUBLISH_WINDOW)
                self.srp.outage = (start, start + world.rng.uniform(3600, 4 * 3600))
                world.note(
                    "world", f"SRP will be down from {start:.0f}s to {self.srp.outage[1]:.0f}s"
                )
            world.run_until(FAULT_WINDOW)
            world.faults.active = False
            world.note("world", "faults stop: from now on everything must converge")
            world.run_until(FAULT_WINDOW + LIVENESS_LIMIT, stop=lambda: self.settled)
            self._check_quiescence()
        except InvariantViolation as violation:
            self.violation = violation
        finally:
            logging.disable(previous_disable)
        return RunResult(
            seed=self.seed,
            requests=len(self.expected),
            steps=world.steps,
            simulated_seconds=world.now_s,
            faults=sorted(self.fault_kinds),
            violation=self.violation,
            trace=world.format_trace() if self.violation else "",
            stats=self.stats,
        )

    def _after_step(self) -> None:
        if self.violation is not None:
            raise self.violation

    def _violate(self, invariant: str, detail: str) -> None:
        self.world.note("INVARIANT", f"{invariant} violated: {detail}")
        if self.violation is None:
            self.violation = InvariantViolation(invariant, detail)
        raise self.violation

    # ---- producers ----------------------------------------------------------------------

    def _produce(self, index: int) -> None:
        world = self.world
        body: dict[str, Any] = {
            "collection_id": str(_uuid(world.rng)),
            "input_data": {"bg": f"bg{index}.png", "n": index},
            "request_id": f"req-{index}",
        }
        if world.fault("input_no_request_id"):
            del body["request_id"]
        if world.rng.random() < 0.05:
            body["input_data"]["sim_rejected"] = True  # SRP answers 400: a permanent failure
        data = json.dumps(body).encode()
        kind = "valid"
        if world.fault("input_invalid"):
            data, kind = world.rng.choice(
                (
                    (b"not json", "not JSON"),
                    (json.dumps({**body, "inputdata": {}}).encode(), "unknown field"),
                    (json.dumps({**body, "collection_id": "nope"}).encode(), "bad collection id"),
                )
            )
        elif world.fault("input_hostile"):
            hostile = world.rng.choice(
                (
                    {"grid": [[1, 2], [3, 4]]},
                    {"__meta__": 1},
                    {"deep": _nest(25)},
                    {"blob": "x" * 70_000},
                )
            )
            body["input_data"].update(hostile)
            data, kind = json.dumps(body).encode(), f"hostile input {next(iter(hostile))}"

            if len(data) > 64 * 1024:
                kind = "too large"
        if kind == "valid" and world.fault("input_nan"):
            data = data.replace(b'"n": ', b'"n": NaN, "m": ')  # JSON that Python accepts
            kind = "input with NaN"
        message_id = self._message_id()
        request_id = request_id_hint(data, message_id)
        self.expected[request_id] = kind
        world.note("producer", f"publishes {request_id} ({kind}) as message {message_id}")
        self._subscribe_submit(PubsubMessage(message_id, data, {}, world.now()))
        if world.fault("ps_duplicate_publish"):
            again = self._message_id()
            # Without a usable request_id each message is its own request (the design says so).
            self.expected[request_id_hint(data, again)] = kind
            world.note("producer", f"publishes it again as message {again}")
            self._subscribe_submit(PubsubMessage(again, data, {}, world.now()))

    def _message_id(self) -> str:
        self.message_seq += 1
        return str(10_000_000 + self.message_seq)

    # ---- Pub/Sub push subscriptions -------------------------------------------------------

    def _subscribe_submit(self, message: PubsubMessage) -> None:
        _Delivery(self, message, "submit", self._submit_one, dead_letter=self._dead_letter).start(
            self.world.rng.uniform(0.01, 1.0)
        )

    def _submit_one(self, message: PubsubMessage) -> None:
        result = self.submitter.submit(message)
        self.world.note(None, f"submit -> {result.outcome}")

    def _dead_letter(self, message: PubsubMessage, attempts: int) -> None:
        world = self.world
        forwarded = PubsubMessage(
            self._message_id(),
            message.data,
            {
                DELIVERY_COUNT_ATTRIBUTE: str(attempts),
                SOURCE_SUBSCRIPTION_ATTRIBUTE: "projects/sim/subscriptions/render-requests",
            },
            world.now(),
        )
        world.note(None, f"message {message.message_id} dead-lettered as {forwarded.message_id}")

        def handle(m: PubsubMessage) -> None:
            record = dead_letters.record_dead_letter(self.store, self.publisher, m)
            world.note(None, f"dead letter -> {record.state if record else None}")

        _Delivery(self, forwarded, "dead_letter", handle, dead_letter=None).start(1.0)

    # ---- SRP callbacks over HTTP ------------------------------------------------------------

    def _deliver_callback(self, request_id: str, token: str, body: bytes, answered: Any) -> None:
        def handle() -> int:
            reply = self.ingestor.ingest("POST", request_id, token, body)
            self.world.note(None, f"callback {_status_of(body)} -> {reply.status_code}")
            return reply.status_code

        def done(error: BaseException | None, code: int | None) -> None:
            answered(500 if error is not None or code is None else code)

        self.world.spawn(0.0, f"webhook {request_id}", handle, done)

    # ---- storage finalize events -----------------------------------------------------------

    def _on_object_write(self, bucket: str, name: str, generation: int) -> None:
        world = self.world
        if bucket == RENDERS_BUCKET and not self.srp_writing_now():
            self._violate("5-derivatives", f"the bundle wrote {name} into the renders bucket")
        if bucket == DERIVATIVES_BUCKET:
            key = name
            self.derivative_writes[key] += 1
            if self.derivative_writes[key] > 1:
                self._violate("5-derivatives", f"{name} written twice")
            return
        if bucket != RENDERS_BUCKET:
            return
        stored = self.storage.buckets[bucket][name]
        event = StorageObject(bucket, name, generation, len(stored.data), stored.content_type, {})
        copies = 2 if world.fault("gcs_duplicate_finalize") else 1
        for _ in range(copies):
            self._finalize(event, world.rng.uniform(0.1, 30.0), attempt=1)

    def srp_writing_now(self) -> bool:
        """Whether the current write comes from SRP (the scheduler), not from a handler."""
        import greenlet

        return greenlet.getcurrent() is self.world.main

    def _finalize(self, event: StorageObject, delay: float, attempt: int) -> None:
        def handle() -> None:
            result = self.postprocessor.process(event)
            self.world.note(None, f"postprocess -> {result.outcome}: {result.reason}")

        def done(error: BaseException | None, _: Any) -> None:
            if error is not None:
                self.check_retryable(error)
            if error is not None and attempt * 600 < EVENTARC_RETRY_SECONDS:
                backoff = min(600.0, 10.0 * 2 ** (attempt - 1)) * self.world.rng.uniform(0.5, 1.0)
                self._finalize(event, backoff, attempt + 1)

        self.world.spawn(delay, f"postprocess g{str(event.generation)[-4:]}", handle, done)

    # ---- reconcile on a schedule -------------------------------------------------------------

    def _reconcile_tick(self) -> None:
        world = self.world
        world.at(RECONCILE_EVERY, self._reconcile_tick)
        if not world.faults.active and self._all_settled():
            self.settled = True
            return
        if self.reconciling:
            return  # max_instances = 1

        def done(error: BaseException | None, counts: Any) -> None:
            self.reconciling = False
            if counts:
                world.note("reconcile", f"run: {dict(sorted(counts.items()))}")

        self.reconciling = True
        world.spawn(0.0, "reconcile", self.reconciler.run, done)

    def _all_settled(self) -> bool:
        if self.world.running:
            return False
        for request_id in self.expected:
            found = self.db.lookup((TASKS, request_id))[1]
            if found is None or found["state"] not in ("completed", "failed"):
                return False
        return not any(True for _ in self.db.documents((TASKS + OUTBOX_SUFFIX,)))

    # ---- invariants after every step --------------------------------------------------------

    def _on_refused(self, path: tuple[str, ...], error: Exception) -> None:
        self._violate("6-limits", f"Firestore refuses a write to {'/'.join(path)}: {error}")

    def _on_document_write(
        self,
        path: tuple[str, ...],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        size: int,
    ) -> None:
        if len(path) == 2 and path[0] == TASKS + OUTBOX_SUFFIX and after is not None:
            self.committed_events.add(after["event"]["event_id"])
            return
        if len(path) != 2 or path[0] != TASKS:
            return
        if after is None:
            self._violate("1-terminal", f"record {path[1]} was deleted")
        if size > MAX_RECORD_BYTES:
            self._violate("6-limits", f"record {path[1]} is {size} bytes")
        if before is None:
            return
        old, new = State(before["state"]), State(after["state"])
        if old in TERMINAL_STATES and (new != old or before.get("error") != after.get("error")):
            self._violate("3-monotonic", f"{path[1]}: terminal {old} became {new}")
        if old not in TERMINAL_STATES and new != State.FAILED and _RANK[new] < _RANK[old]:
            self._violate("3-monotonic", f"{path[1]}: {old} moved back to {new}")
        for task_id in [after.get("task_id"), *after.get("duplicate_task_ids", [])]:
            task = self.srp.tasks.get(task_id) if task_id else None
            if task is not None and task.request_id != path[1]:
                self._violate(
                    "2-one-task", f"{path[1]} names task {task_id[:8]} of request {task.request_id}"
                )
        if before.get("task_id") and after.get("task_id") != before.get("task_id"):
            self._violate("2-one-task", f"{path[1]}: task {before['task_id']} was replaced")
        error = after.get("error") or {}
        if (
            new == State.FAILED
            and old != State.FAILED
            and error.get("code") in ("dead_lettered", "request_expired")
            and before.get("task_id")
        ):
            self._violate(
                "7-no-false-failure",
                f"{path[1]}: failed as {error.get('code')} though SRP has its task",
            )

    def _on_post(self, post: Post) -> None:
        """Invariant 2 at the moment SRP creates a second task for a request."""
        if post.task_id is None:
            return
        earlier = [
            p
            for p in self.srp.posts
            if p.request_id == post.request_id and p.task_id and p is not post
        ]
        if not earlier:
            return
        last = earlier[-1]
        waited = post.at - last.at
        if last.answer != "ambiguous" and last.answer != "created":
            return
        wait = self.settings.ambiguous_submit_wait_seconds
        record = self.db.lookup((TASKS, post.request_id))[1] or {}
        if last.answer == "created" and record.get("task_id") == last.task_id:
            self._violate(
                "2-one-task",
                f"{post.request_id}: POSTed again after task {last.task_id[:8]} was attached",
            )
        # The wait runs from the intent recorded before the POST, which reaches SRP at most
        # one client timeout later: POSTs this close together never waited.
        if waited < wait - self.settings.srp_timeout_seconds:
            self._violate(
                "2-one-task",
                f"{post.request_id}: a second SRP task {waited:.1f}s after the POST that created"
                f" {last.task_id[:8]} (answer: {last.answer}); the ambiguity wait is {wait}s",
            )

    def check_retryable(self, error: BaseException) -> None:
        """Invariant 8: a handler raises (asks for a retry) only for what a retry can fix."""
        if _is_transient(error):
            return
        self._violate(
            "8-retry-only-transient",
            f"a handler raised {type(error).__name__}: {str(error)[:200]} (retrying cannot help)",
        )

    def on_publish(self, event_id: str, event_type: str, request_id: str) -> None:
        """Invariant 4, per step: every event published matches a committed transition."""
        if event_id not in self.committed_events:
            self._violate("4-events", f"{event_type} {event_id[:60]} published, never committed")
        self.published.append((event_id, event_type, request_id))

    # ---- invariants at quiescence ---------------------------------------------------------

    def _check_quiescence(self) -> None:
        world = self.world
        records = {doc_id: data for doc_id, data in self.db.documents((TASKS,))}
        for request_id, kind in self.expected.items():
            record = records.get(request_id)
            if record is None:
                self._violate("1-terminal", f"request {request_id} ({kind}) has no record")
            if record["state"] not in ("completed", "failed"):
                self._violate(
                    "1-terminal",
                    f"request {request_id} is stuck in {record['state']} after"
                    f" {world.now_s - FAULT_WINDOW:.0f}s without faults",
                )
            if record["state"] == "failed" and not (record.get("error") or {}).get("message"):
                self._violate("1-terminal", f"request {request_id} failed without a reason")
        for request_id in records:
            if request_id not in self.expected:
                self._violate("1-terminal", f"record {request_id} belongs to no request sent")
        # 2: every SRP task is attached, a recorded duplicate, or counted as unconfirmed.
        unreported: Counter[str] = Counter()
        for task in self.srp.tasks.values():
            record = records.get(task.request_id)
            if record is None:
                self._violate("2-one-task", f"task {task.id} for unknown request {task.request_id}")
            if task.id != record.get("task_id") and task.id not in record.get(
                "duplicate_task_ids", []
            ):
                unreported[task.request_id] += 1
        for request_id, count in unreported.items():
            if count > records[request_id].get("unconfirmed_submissions", 0):
                self._violate(
                    "2-one-task",
                    f"{request_id}: {count} SRP task(s) neither attached nor recorded nor counted",
                )
        # 4: exactly one render.completed per completed request, none for a failed one.
        completed: dict[str, set[str]] = defaultdict(set)
        for event_id, event_type, request_id in self.published:
            if event_type == "render.completed":
                completed[request_id].add(event_id)
        for request_id, record in records.items():
            count = len(completed.get(request_id, ()))
            want = 1 if record["state"] == "completed" else 0
            if count != want:
                self._violate(
                    "4-events",
                    f"{request_id} is {record['state']} with {count} render.completed events",
                )
        pending = [doc_id for doc_id, _ in self.db.documents((TASKS + OUTBOX_SUFFIX,))]
        if pending:
            self._violate("4-events", f"{len(pending)} committed event(s) never published")
        self.stats["requests"] = len(self.expected)
        self.stats["srp_tasks"] = len(self.srp.tasks)
        for record in records.values():
            self.stats[f"state_{record['state']}"] += 1
            self.stats["duplicates"] += len(record.get("duplicate_task_ids", []))


_RANK = {
    State.RECEIVED: 0,
    State.SUBMITTED: 1,
    State.RENDERING: 2,
    State.RENDERED: 3,
    State.COMPLETED: 4,
    State.FAILED: 5,
}


class _Delivery:
    """One message on a push subscription: at-least-once, backoff, ack deadline, dead letter."""

    def __init__(
        self, sim: Simulation, message: PubsubMessage, name: str, handler: Any, dead_letter: Any
    ) -> None:
        self.sim = sim
        self.message = message
        self.name = name
        self.handler = handler
        self.dead_letter = dead_letter
        self.attempts = 0
        self.acked = False
        self.open_attempt = 0

    def start(self, delay: float) -> None:
        self.sim.world.at(delay, self._deliver)

    def _deliver(self) -> None:
        world = self.sim.world
        if self.acked:
            return
        self.attempts += 1
        attempt = self.attempts
        self.open_attempt = attempt
        message = PubsubMessage(
            self.message.message_id,
            self.message.data,
            self.message.attributes,
            self.message.publish_time,
            delivery_attempt=attempt,
        )
        actor = f"{self.name} m{self.message.message_id[-4:]}#{attempt}"
        world.spawn(
            0.0, actor, lambda: self.handler(message), lambda e, _: self._settle(attempt, e)
        )
        world.at(ACK_DEADLINE, lambda: self._deadline(attempt))
        if world.fault("ps_concurrent_delivery"):
            world.note(actor, "Pub/Sub delivers the same message again, concurrently")
            world.spawn(world.rng.uniform(0, 2), actor + "'", lambda: self.handler(message))

    def _deadline(self, attempt: int) -> None:
        if self.open_attempt == attempt and not self.acked:
            self.sim.world.note(None, f"ack deadline of attempt {attempt} expires while it runs")
            self._failed(attempt)

    def _settle(self, attempt: int, error: BaseException | None) -> None:
        if error is not None:
            self.sim.check_retryable(error)
        if self.open_attempt != attempt or self.acked:
            return  # an expired attempt finishing late: Pub/Sub already moved on
        if error is None:
            self.acked = True
            world = self.sim.world
            if world.fault("ps_redeliver_after_ack"):
                world.note(None, "Pub/Sub redelivers an acknowledged message")
                self.acked = False
                self.open_attempt = 0
                self.start(world.rng.uniform(1, 600))
            return
        self._failed(attempt)

    def _failed(self, attempt: int) -> None:
        world = self.sim.world
        self.open_attempt = 0
        if self.dead_letter is not None and self.attempts >= self.sim.max_delivery_attempts:
            self.acked = True
            self.dead_letter(self.message, self.attempts)
            return
        backoff = min(600.0, 10.0 * 2 ** (self.attempts - 1)) * world.rng.uniform(0.8, 1.0)
        self.start(backoff)


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def result(self, timeout: float | None = None) -> str:
        if self.error is not None:
            raise self.error
        return "1"


class _Publisher:
    """The Pub/Sub PublisherClient of outgoing events: production's limits, failures."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"

    def publish(self, topic: str, data: bytes, **attributes: str) -> _Future:
        from google.api_core import exceptions

        world = self.sim.world
        if not world.call(60.0):
            return _Future(exceptions.DeadlineExceeded("simulated: publish timed out"))
        for key, value in attributes.items():
            if len(key.encode()) > 256 or len(value.encode()) > 1024:
                return _Future(exceptions.InvalidArgument(f"attribute {key} is too long"))
        if len(data) > 10 * 1024 * 1024:
            return _Future(exceptions.InvalidArgument("message too large"))
        if world.fault("ps_publish_fails"):
            return _Future(exceptions.ServiceUnavailable("simulated: publish failed"))
        self.sim.on_publish(attributes["event_id"], attributes["type"], attributes["request_id"])
        world.note(None, f"event {attributes['type']} ({json.loads(data).get('state')})")
        return _Future(None)


def _is_transient(error: BaseException) -> bool:
    from google.api_core import exceptions

    from srp_bundle.errors import BundleError

    if isinstance(error, exceptions.GoogleAPICallError | exceptions.RetryError):
        return not isinstance(error, exceptions.InvalidArgument)
    if isinstance(error, BundleError):
        return bool(error.transient)
    # firestore.transactional gives up after 5 ABORTED attempts with a ValueError.
    return isinstance(error, ValueError) and isinstance(error.__cause__, exceptions.Aborted)


def _fake_process_file(path: str, specs: Any, limits: Any, **_: Any) -> ProcessedFile:
    """Media work without pixels: a PNG makes one small file per spec, `CORRUPT` is refused,
    anything else is described as an other file (real media: tests/unit, tests/integration)."""
    with open(path, "rb") as source:
        data = source.read()
    digest = hashlib.sha256(data).hexdigest()
    description: dict[str, Any] = {"bytes": len(data), "sha256": digest}
    if data.startswith(b"CORRUPT"):
        raise CorruptImageError("simulated: not a decodable PNG")
    if not data.startswith(PNG):
        kind = {"kind": "other", "format": "unknown", "content_type": "application/octet-stream"}
        return ProcessedFile({**kind, **description}, ())
    items = []
    for spec in specs:
        encoded = f"{digest}:{spec.size}:{spec.image_format}".encode()
        info = ImageInfo(
            spec.size,
            spec.size,
            spec.image_format,
            len(encoded),
            hashlib.sha256(encoded).hexdigest(),
        )
        items.append(EncodedDerivative(spec, encoded, info))
    image = {"kind": "image", "format": "png", "content_type": "image/png"}
    return ProcessedFile({**image, **description, "width": 4096, "height": 4096}, tuple(items))


def _uuid(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _nest(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"d": value}
    return value


def _status_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("status"))[:24]
    except ValueError:
        return "?"
