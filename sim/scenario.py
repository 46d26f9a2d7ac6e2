"""One simulated run: the real use cases wired to the simulated world, the producers, phases.

A run is a seed plus a scenario size. Phase 1 (safety): producers publish render requests
while the run's fault kinds are injected; invariants 3-7 are checked after every step.
Phase 2 (liveness): faults stop; the world runs until every request is settled (or the
time limit), then invariants 1-7 are checked at quiescence.

The parts live beside it: the fault kinds in sim/faults.py, Pub/Sub in sim/pubsub.py, the
invariant checks in sim/invariants.py, the media fake in sim/media.py. This module is about
330 lines: the wiring and each producer and schedule of a run share the run's state (world,
services, expected requests); split further, they would only pass it around.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from local_stack.invariants import is_settled
from sim import firestore
from sim.faults import FAULT_KINDS, request_data, schedule_outage, swarm
from sim.invariants import TASKS, Invariants
from sim.media import fake_process_file
from sim.pubsub import Publisher, PushDelivery, dead_letter_message
from sim.srp import Srp
from sim.storage import Storage
from sim.world import Faults, InvariantViolation, World
from srp_bundle import dead_letters
from srp_bundle.effects import Effects
from srp_bundle.render_requests import request_id_hint
from srp_bundle.settings import Settings, parse_derivative_specs
from srp_bundle.task_store import OUTBOX_SUFFIX
from srp_bundle.trigger_events import PubsubMessage, StorageObject
from srp_bundle.wiring import Services

__all__ = ["FAULT_KINDS", "RunResult", "Simulation", "swarm"]

RENDERS_BUCKET = "sim-renders"
DERIVATIVES_BUCKET = "sim-derivatives"
# Eventarc retries a failing storage event for 24 hours, then drops it.
EVENTARC_RETRY_SECONDS = 24 * 3600.0
# Terraform's submit_delivery.max_delivery_attempts: its default and its minimum.
DELIVERY_ATTEMPT_CHOICES = (20, 5)
RECONCILE_EVERY = 600.0
PUBLISH_WINDOW = 1800.0
FAULT_WINDOW = 4 * 3600.0
LIVENESS_LIMIT = 3 * 24 * 3600.0


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


class Simulation:
    """The simulated world, the bundle's real use cases, producers and schedules, checked."""

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
        self.db = firestore.Server(
            world,
            index_exempt=firestore.terraform_index_exempt(TASKS),
            indexes=firestore.terraform_indexes(TASKS),
        )
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
            publisher_client=lambda _: Publisher(world, self.on_publish),
        )
        functions = Services(self.settings, effects, process_file=fake_process_file)
        self.store = functions.store
        self.srp_client = functions.srp
        self.publisher = functions.publisher
        self.submitter = functions.submitter
        self.ingestor = functions.ingestor
        self.postprocessor = functions.postprocessor
        # reconcile_tasks is its own function: its own services, as in production.
        self.reconciler = Services(
            self.settings, effects, process_file=fake_process_file
        ).reconciler
        self.expected: dict[str, str] = {}  # request id -> how it was produced
        self.invariants = Invariants(
            world, self.db, self.srp, self.settings, self.expected, self._violate
        )
        self.srp_writing = False
        self.message_seq = 0
        self.reconciling = False
        self.settled = False
        self.stats: Counter[str] = Counter()
        self.violation: InvariantViolation | None = None
        self.db.on_write.append(self.invariants.on_document_write)
        self.db.on_refused = self.invariants.on_refused
        self.storage.on_write.append(self._on_object_write)
        self.srp.on_post.append(self.invariants.on_post)
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
            schedule_outage(world, self.srp, PUBLISH_WINDOW)
            world.run_until(FAULT_WINDOW)
            world.faults.active = False
            world.note("world", "faults stop: from now on everything must converge")
            world.run_until(FAULT_WINDOW + LIVENESS_LIMIT, stop=lambda: self.settled)
            self.invariants.check_quiescence(world.now_s - FAULT_WINDOW, self.stats)
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
        data, kind = request_data(world, index)
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
        PushDelivery(
            self.world,
            message,
            "submit",
            self._submit_one,
            on_error=self.check_retryable,
            dead_letter=self._dead_letter,
            max_attempts=self.max_delivery_attempts,
        ).start(self.world.rng.uniform(0.01, 1.0))

    def _submit_one(self, message: PubsubMessage) -> None:
        result = self.submitter.submit(message)
        self.world.note(None, f"submit -> {result.outcome}")

    def _dead_letter(self, message: PubsubMessage, attempts: int) -> None:
        world = self.world
        forwarded = dead_letter_message(message, self._message_id(), attempts, world.now())
        world.note(None, f"message {message.message_id} dead-lettered as {forwarded.message_id}")

        def handle(m: PubsubMessage) -> None:
            record = dead_letters.record_dead_letter(self.store, self.publisher, m)
            world.note(None, f"dead letter -> {record.state if record else None}")

        PushDelivery(world, forwarded, "dead_letter", handle, on_error=self.check_retryable).start(
            1.0
        )

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
            self.invariants.on_derivative_write(name)
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
            if found is None or not is_settled(found):
                return False
        return not any(True for _ in self.db.documents((TASKS + OUTBOX_SUFFIX,)))

    # ---- the checks' entry points, for the fakes ---------------------------------------------

    def check_retryable(self, error: BaseException) -> None:
        """Invariant 8: a handler raises (asks for a retry) only for what a retry can fix."""
        self.invariants.check_retryable(error)

    def on_publish(self, event_id: str, event_type: str, request_id: str) -> None:
        """Invariant 4, per step: every event published matches a committed transition."""
        self.invariants.on_publish(event_id, event_type, request_id)


def _status_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("status"))[:24]
    except ValueError:
        return "?"
