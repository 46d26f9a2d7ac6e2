"""The deterministic simulator (sim/): CI's fixed seeds, exact replay, and its fakes' semantics."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import firestore as real_firestore

from local_stack.terraform_exemptions import terraform_index_exemptions
from sim import firestore
from sim.ci import CI_SEEDS, NOT_YET_FIXED, REQUESTS_PER_SEED, ci_faults
from sim.mutants import MUTANTS, hunt
from sim.scenario import FAULT_KINDS, Simulation, swarm
from sim.world import Faults, World


def test_every_invariant_holds_on_the_ci_seeds() -> None:
    lifecycles = 0
    for seed in CI_SEEDS:
        result = Simulation(seed, REQUESTS_PER_SEED, faults=ci_faults(seed)).run()
        lifecycles += result.requests
        assert result.violation is None, (
            f"seed {seed}: {result.violation}\n{result.trace[-6000:]}\n"
            f"replay: python -m sim --seed {seed}"
            + (f" --without {','.join(sorted(NOT_YET_FIXED))}" if NOT_YET_FIXED else "")
        )
    assert lifecycles >= len(CI_SEEDS) * REQUESTS_PER_SEED * 0.9


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_each_planted_bug_is_caught_within_the_ci_seeds(name: str) -> None:
    try:
        found = hunt(MUTANTS[name], CI_SEEDS, ci_faults, REQUESTS_PER_SEED)
    except RuntimeError as error:
        pytest.skip(str(error))
    assert found is not None, f"the simulator misses the planted bug {name}"


def test_a_seed_replays_exactly() -> None:
    first = Simulation(7, REQUESTS_PER_SEED, faults=ci_faults(7), trace_limit=10**6)
    second = Simulation(7, REQUESTS_PER_SEED, faults=ci_faults(7), trace_limit=10**6)
    first.run()
    second.run()
    assert len(first.world.trace) > 100
    assert first.world.trace == second.world.trace


def test_each_seed_draws_its_own_subset_of_fault_kinds() -> None:
    subsets = {tuple(sorted(swarm(seed))) for seed in range(20)}
    assert len(subsets) == 20
    assert all(set(s) < set(FAULT_KINDS) for s in subsets)


def _server() -> tuple[World, firestore.Server, firestore.Client]:
    world = World(1, Faults({}))
    server = firestore.Server(world)
    return world, server, firestore.Client(server)


def test_a_conflicting_commit_aborts_and_the_real_decorator_retries_it() -> None:
    _, server, client = _server()
    reference = client.collection("c").document("d")
    server.commit({}, [("set", reference.path, {"n": 0})])
    calls = []

    @real_firestore.transactional
    def increment(transaction: firestore.Transaction) -> None:
        value = reference.get(transaction=transaction).get("n")
        calls.append(value)
        if len(calls) == 1:  # another writer commits between our read and our commit
            server.commit({}, [("set", reference.path, {"n": 10})])
        transaction.set(reference, {"n": value + 1})

    increment(client.transaction())
    assert calls == [0, 10]
    assert reference.get().to_dict() == {"n": 11}


def test_create_refuses_an_existing_document() -> None:
    _, server, client = _server()
    reference = client.collection("c").document("d")
    server.commit({}, [("create", reference.path, {"n": 0})])
    with pytest.raises(exceptions.Conflict):
        server.commit({}, [("create", reference.path, {"n": 1})])
    assert reference.get().to_dict() == {"n": 0}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"a": [[1]]}, "array"),
        ({"__meta__": 1}, "field name"),
        ({"fine": {"nested": [1, {"a": "b"}]}}, None),
        ({"big": "x" * 1_100_000}, "bytes"),
    ],
)
def test_production_data_limits_are_refused(data: dict[str, object], reason: str | None) -> None:
    _, server, client = _server()
    reference = client.collection("c").document("d")
    if reason is None:
        server.commit({}, [("set", reference.path, data)])
        return
    with pytest.raises(exceptions.InvalidArgument, match=reason):
        server.commit({}, [("set", reference.path, data)])
    assert not reference.get().exists


def test_maps_nested_deeper_than_twenty_are_refused() -> None:
    _, server, _ = _server()
    value: dict[str, object] = {"leaf": 1}
    for _ in range(21):
        value = {"d": value}
    with pytest.raises(exceptions.InvalidArgument, match="nested"):
        server.commit({}, [("set", ("c", "d"), value)])


def test_a_commit_whose_answer_is_lost_is_applied() -> None:
    world = World(1, Faults({"fs_commit_answer_lost": 1.0}))
    server = firestore.Server(world)
    with pytest.raises(exceptions.DeadlineExceeded):
        server.commit({}, [("set", ("c", "d"), {"n": 1})])
    assert server.lookup(("c", "d"))[1] == {"n": 1}


def test_a_commit_that_fails_before_applying_changes_nothing() -> None:
    world = World(1, Faults({"fs_commit_fails": 1.0}))
    server = firestore.Server(world)
    with pytest.raises(exceptions.ServiceUnavailable):
        server.commit({}, [("set", ("c", "d"), {"n": 1})])
    assert server.lookup(("c", "d"))[1] is None


def test_the_shrinker_keeps_the_invariant_and_drops_what_it_does_not_need() -> None:
    from sim.shrink import shrink

    calls = []

    def run(seed: int, requests: int, faults: dict[str, float]) -> str | None:
        calls.append((requests, sorted(faults)))
        # A stand-in run: breaks invariant 2 whenever fault "a" is on and there are 3+ requests.
        return "2-one-task" if faults.get("a") and requests >= 3 else None

    shrunk = shrink(5, 16, {"a": 0.1, "b": 0.2, "c": 0.3}, run=run)
    assert shrunk is not None
    assert (shrunk.requests, shrunk.invariant) == (3, "2-one-task")
    assert shrunk.faults == {"a": 0.1, "b": 0.0, "c": 0.0}
    assert shrunk.command() == "python -m sim --seed 5 --requests 3 --only a=0.1,b=0,c=0"


def test_the_simulated_firestore_exempts_what_terraform_and_the_local_stack_exempt() -> None:
    # Every `google_firestore_field` with `index_config {}` in firestore.tf, one per
    # for_each entry of local.unindexed_fields; tasks_collection as the simulator names it.
    declared = {
        "srp_tasks.input_data_json",
        "events.payload",
        "srp_tasks.metadata",
        "srp_tasks_outbox.event",
        "events.request",
        "events.received",
    }
    local_stack = {
        f"{item['collection']}.{item['field']}"
        for item in terraform_index_exemptions({"tasks_collection": "srp_tasks"})
    }
    simulated = Simulation(0, 1).db.index_exempt

    assert local_stack == declared
    assert simulated == declared
