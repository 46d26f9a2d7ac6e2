"""Batches on the simulator's Firestore: members count once, in their terminal transaction;
`batch.completed` is decided once whatever the order; no document is hot at 50 members/s."""

from __future__ import annotations

import collections
from datetime import timedelta
from typing import Any

import pytest
from google.api_core import exceptions
from google.cloud.firestore_v1.base_query import FieldFilter

from sim import firestore as simfs
from sim import pubsub as simpubsub
from sim.world import EPOCH, Faults, World
from srp_bundle import batches
from srp_bundle.batches import BatchDeclaration, BatchState, BatchStore, shard_number
from srp_bundle.events import EventPublisher
from srp_bundle.outbox import complete_open_batches, publish_transition
from srp_bundle.task_state import DerivativesReady, State, TaskFailed, TaskRecord
from srp_bundle.task_store import TaskStore

TASKS = "srp_tasks"
TASK = "7f6c1c52-0d36-4a7f-9d1e-1a2b3c4d5e6f"
RENDER = f"render/demo/{TASK}/render.png"
COLLECTION = "2e2d8a5e-6b1c-4d7e-9c4b-6a1d2f3e4b5c"


class Bench:
    """The simulator's Firestore and Pub/Sub, a real TaskStore and EventPublisher over them."""

    def __init__(self) -> None:
        self.world = World(7, Faults())
        self.seconds = 0.0
        self.db = simfs.Server(
            self.world,
            index_exempt=simfs.terraform_index_exempt(TASKS),
            indexes=simfs.terraform_indexes(TASKS),
        )
        self.store = TaskStore(simfs.Client(self.db), TASKS, clock=self.now)
        self.published: list[tuple[str, str]] = []
        client = simpubsub.Publisher(self.world, lambda e, t, r: self.published.append((e, t)))
        self.publisher = EventPublisher(client, "p", "events")
        self.batches = BatchStore(self.store)

    def now(self) -> Any:
        return EPOCH + timedelta(seconds=self.seconds)

    def member(self, request_id: str, batch_id: str, *, retry_of: str | None = None) -> None:
        """A member waiting for its render's last file (SRP said done)."""
        record = TaskRecord(
            request_id=request_id,
            collection_id=COLLECTION,
            state=State.RENDERED,
            task_id=TASK,
            status="done",
            output_files=[RENDER],
            batch_id=batch_id,
            retry_of=retry_of,
        )
        assert self.store.create(record)

    def finish(self, request_id: str, *, failed: bool = False) -> None:
        """The member's terminal transition, its events published (the outbox path)."""
        change: Any = (
            TaskFailed("corrupt_image", "bad")
            if failed
            else DerivativesReady(RENDER, 1, (), {"kind": "other"})
        )
        transition = self.store.apply(request_id, change)
        publish_transition(self.store, self.publisher, request_id, transition.events)

    def declare(self, batch_id: str, total: int) -> batches.DeclarationOutcome:
        outcome = self.batches.declare(BatchDeclaration(batch_id, total), f"{batch_id}{total}" * 4)
        publish_transition(self.store, self.publisher, "", outcome.events)
        return outcome

    def completed_events(self) -> list[str]:
        return [e for e, kind in self.published if kind == "batch.completed"]


@pytest.fixture
def bench() -> Bench:
    return Bench()


def test_a_member_counts_once_however_often_its_end_is_reported(bench: Bench) -> None:
    bench.member("a", "b1")
    bench.finish("a", failed=True)
    bench.finish("a", failed=True)  # a duplicate delivery: the record is final already
    bench.finish("a")  # a late derivative: never revives a failed record

    assert bench.batches.counts("b1") == batches.Counts(failed=1)


@pytest.mark.parametrize("declared_first", [True, False])
def test_batch_completed_once_declared_before_or_after_its_members(
    bench: Bench, declared_first: bool
) -> None:
    if declared_first:
        assert bench.declare("b1", 3).accepted
    for name in ("a", "b", "c"):
        bench.member(name, "b1")
    bench.finish("a")
    bench.finish("b", failed=True)
    assert bench.completed_events() == []
    bench.finish("c")
    if not declared_first:
        assert bench.completed_events() == []  # all final, but the total is not known yet
        assert bench.declare("b1", 3).accepted
    bench.declare("b1", 3)  # declared again: the same total, nothing new

    (event_id,) = bench.completed_events()
    batch = bench.batches.get("b1")
    assert batch is not None and batch.state == BatchState.DONE
    assert (batch.total, batch.completed, batch.failed) == (3, 2, 1)
    assert event_id == batches.batch_event(batch)["event_id"]
    assert complete_open_batches(bench.store, bench.publisher) == 0  # nothing open is done
    assert len(bench.completed_events()) == 1


def test_a_conflicting_declaration_is_refused_with_a_reason_and_changes_nothing(
    bench: Bench,
) -> None:
    bench.declare("b1", 2)
    before = bench.batches.get("b1")

    outcome = bench.declare("b1", 5)

    assert not outcome.accepted
    assert outcome.reason is not None and "total 2" in outcome.reason and "5" in outcome.reason
    assert bench.batches.get("b1") == before
    assert [r["total"] for r in bench.batches.refusals("b1")] == [5]


def test_members_beyond_total_are_counted_and_never_reopen_the_batch(bench: Bench) -> None:
    bench.declare("b1", 2)
    for name in ("a", "b", "c"):
        bench.member(name, "b1")
    bench.finish("a")
    bench.finish("b")
    bench.finish("c", failed=True)  # the third of a batch of two

    assert len(bench.completed_events()) == 1
    batch = bench.batches.get("b1")
    assert batch is not None and (batch.completed, batch.failed) == (2, 0)
    assert bench.batches.counts("b1").finished == 3  # status shows it: beyond_total 1


def test_retries_count_apart_and_resolve_a_failure(bench: Bench) -> None:
    bench.declare("b1", 1)
    bench.member("a", "b1")
    bench.finish("a", failed=True)
    bench.member("a-retry1", "b1", retry_of="a")
    bench.finish("a-retry1")

    counts = bench.batches.counts("b1")
    assert counts == batches.Counts(failed=1, retries_completed=1)
    assert counts.unresolved_failures == 0
    assert len(bench.completed_events()) == 1  # done when the first attempt failed


def test_a_lost_done_check_is_made_by_reconcile(bench: Bench) -> None:
    bench.declare("b1", 1)
    bench.member("a", "b1")
    bench.store.apply("a", TaskFailed("x", "y"))  # committed, then the invocation died

    assert bench.completed_events() == []
    assert complete_open_batches(bench.store, bench.publisher) == 1
    assert len(bench.completed_events()) == 1


def test_the_simulator_refuses_queries_production_cannot_serve(bench: Bench) -> None:
    records = bench.store.records
    on_exempt = records.where(filter=FieldFilter("metadata.batch", "==", "b1"))
    without_index = (
        records.where(filter=FieldFilter("batch_id", "==", "b1"))
        .where(filter=FieldFilter("request_id", ">", "a"))
        .order_by("request_id")
    )
    served = (
        records.where(filter=FieldFilter("batch_id", "==", "b1"))
        .where(filter=FieldFilter("state", "==", "failed"))
        .where(filter=FieldFilter("request_id", ">", "a"))
        .order_by("request_id")
    )

    with pytest.raises(exceptions.FailedPrecondition, match="exempts"):
        list(on_exempt.stream())
    with pytest.raises(exceptions.FailedPrecondition, match="composite index"):
        list(without_index.stream())
    assert list(served.stream()) == []


def test_members_finishing_at_50_per_second_keep_every_document_cool(bench: Bench) -> None:
    """10,000 members finish over 200 s: no document takes more than 10 writes in any 10 s
    (Firestore's sustained limit is 1 write/s per document), read off the write counter."""
    members = 10_000
    writes: dict[str, list[float]] = collections.defaultdict(list)
    bench.declare("drop", members)
    for index in range(members):
        bench.member(f"item-{index:05d}", "drop")

    def count(path: tuple[str, ...], before: Any, after: Any, size: int) -> None:
        if path[0] == TASKS + batches.BATCHES_SUFFIX:
            writes["/".join(path)].append(bench.seconds)

    bench.db.on_write.append(count)
    for index in range(members):
        bench.seconds = index / 50
        bench.finish(f"item-{index:05d}", failed=index % 7 == 0)

    def most_in(window: float, times: list[float]) -> int:
        start, most = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return most

    shards = {p: t for p, t in writes.items() if "/shards/" in p}
    assert len(shards) == batches.SHARD_COUNT
    assert sum(len(t) for t in shards.values()) == members  # each member once
    assert max(most_in(10.0, t) for t in shards.values()) <= 10
    assert max(len(t) for t in shards.values()) / 200 <= 0.5  # sustained rate per shard
    assert len(writes[f"{TASKS}_batches/drop"]) == 1  # the batch record: done, once
    assert len(bench.completed_events()) == 1
    batch = bench.batches.get("drop")
    assert batch is not None
    assert (batch.completed, batch.failed) == (members - 1429, 1429)


def test_shards_are_chosen_by_request_id() -> None:
    assert shard_number("item-1") == shard_number("item-1")
    spread = collections.Counter(shard_number(f"r{i}") for i in range(51_200))
    assert len(spread) == batches.SHARD_COUNT and max(spread.values()) < 2 * 100
