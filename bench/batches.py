"""Reads and writes of `status --batch` for a 10,000-member batch, against streaming the
members (what the CLI did before batches had counters), in the same run.

`.venv/bin/python -m bench.batches [--members N]`. Runs the real TaskStore, BatchStore and
the CLI's `read_status` on the simulator's Firestore, which counts billed operations as
production bills them: one read per document read or returned (a query with no result
costs one), one per 1,000 entries an aggregation reads, one write per document written.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from bench.common import Row, Section
from sim import firestore as simfs
from sim.world import EPOCH, Faults, World
from srp_bundle.batches import BatchDeclaration, BatchStore
from srp_bundle.cli._inspect import read_status
from srp_bundle.task_state import DerivativesReady, State, TaskFailed, TaskRecord
from srp_bundle.task_store import TaskStore

TASKS = "srp_tasks"
TASK = "7f6c1c52-0d36-4a7f-9d1e-1a2b3c4d5e6f"
RENDER = f"render/demo/{TASK}/render.png"


class Counted:
    """The simulator's Firestore with its read and write counters."""

    def __init__(self) -> None:
        self.db = simfs.Server(
            World(1, Faults()),
            index_exempt=simfs.terraform_index_exempt(TASKS),
            indexes=simfs.terraform_indexes(TASKS),
        )
        self.writes = 0
        self.db.on_write.append(lambda *_: self._count_write())
        self.store = TaskStore(simfs.Client(self.db), TASKS, clock=lambda: EPOCH)

    def _count_write(self) -> None:
        self.writes += 1

    def cost(self, work: Callable[[], Any]) -> tuple[int, int]:
        """(reads, writes) `work` costs."""
        reads, writes = self.db.reads, self.writes
        work()
        return self.db.reads - reads, self.writes - writes


def build(members: int, batch_id: str = "drop") -> tuple[Counted, dict[str, float]]:
    """A declared batch of `members`, every 10th failed, all final; what finishing cost."""
    world = Counted()
    store = world.store
    BatchStore(store).declare(BatchDeclaration(batch_id, members), "0" * 64)
    finishing = [0, 0]
    for index in range(members):
        request_id = f"item-{index:06d}"
        record = TaskRecord(
            request_id=request_id,
            collection_id="2e2d8a5e-6b1c-4d7e-9c4b-6a1d2f3e4b5c",
            state=State.RENDERED,
            task_id=TASK,
            output_files=[RENDER],
            batch_id=batch_id,
            created_at=EPOCH + timedelta(seconds=index),
        )
        store.create(record)
        change: Any = (
            TaskFailed("corrupt_image", "bad")
            if index % 10 == 0
            else DerivativesReady(RENDER, 1, (), {"kind": "other"})
        )
        reads, writes = world.cost(functools.partial(store.apply, request_id, change))
        check_reads, _ = world.cost(lambda: BatchStore(store).complete_if_done(batch_id))
        finishing[0] += reads + check_reads
        finishing[1] += writes
    return world, {"reads": finishing[0] / members, "writes": finishing[1] / members}


def run(members: int = 10_000, log: Callable[[str], None] = print) -> Section:
    """The section: status --batch against streaming the members."""
    log(f"  {members} members on the simulator's Firestore...")
    world, per_member = build(members)
    args = argparse.Namespace(batch="drop", collection_id=None, max_failed=50)
    ours = world.cost(lambda: read_status(world.store, args, with_failures=True))
    watch = world.cost(lambda: read_status(world.store, args, with_failures=False))
    query = world.store.records.where(filter=FieldFilter("batch_id", "==", "drop"))
    streamed = world.cost(lambda: list(query.stream()))
    section = Section("batches")
    section.rows.append(
        Row(
            "batches",
            f"reads per `status --batch`, {members:,} members (50 failures listed)",
            ours[0],
            streamed[0],
            "reads",
            "streaming every member",
            target=0.02,
        )
    )
    section.rows.append(
        Row(
            "batches",
            "reads per `status --batch --watch` poll (counts only)",
            watch[0],
            streamed[0],
            "reads",
            "streaming every member",
            target=0.01,
        )
    )
    section.notes.append(
        "status --batch: the batch record, one aggregation over the counter shards and the "
        "refused declarations (3 reads whatever the size), plus one per failure listed and "
        "one per look-up of its retry (--max-failed, 50): constant in the batch's size"
    )
    section.notes.append(
        f"writes per status call: {ours[1]} (streaming: {streamed[1]}); per member finishing: "
        f"{per_member['writes']:.2f} writes (record, event log, outbox, one counter shard) and "
        f"{per_member['reads']:.2f} reads (its transaction, then the done check: the batch "
        "record and one aggregation)"
    )
    return section


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    args = parser.parse_args()
    section = run(args.members)
    for row in section.rows:
        print(
            f"{row.measure}: {row.ours:.0f} vs {row.baseline:.0f} {row.unit} "
            f"({row.baseline_name}) = {row.ours / (row.baseline or 1):.4f}x"
        )
    for note in section.notes:
        print(note)


if __name__ == "__main__":
    main()
