"""The deterministic simulator (sim/): CI's fixed seeds, exact replay, and its fakes' semantics."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import firestore as real_firestore

from sim import firestore
from sim.scenario import FAULT_KINDS, Simulation, swarm
from sim.world import Faults, World

# CI's seed budget: about a minute on one core (docs/simulation.md has the long runs).
CI_SEEDS = range(0, 1500)
REQUESTS_PER_SEED = 8
# Fault kinds whose holes (issue 14) are still open on this branch: they are left out of the
# CI seeds until the fixes are merged, and removed from this set as they land.
NOT_YET_FIXED: frozenset[str] = frozenset(
    {
        "srp_create_then_error",  # hole 1
        "fs_commit_fails",  # hole 2
        "fs_commit_answer_lost",  # hole 2
        "fs_read_fails",  # hole 2
        "slow_io",  # holes 2 and 3
        "input_no_request_id",  # hole 5
        "input_hostile",  # holes 6 and 7
        "srp_odd_collection_name",  # hole 8
        "srp_cb_crossed",  # hole 9
        "srp_cb_odd_status",  # holes 10 and 11
        "srp_never_finishes",  # a render SRP never finishes stays active forever
        # A callback of a POST still in flight attaches its task before the POST's answer:
        # the earlier lost POST is no longer counted in unconfirmed_submissions (seed 13).
        # Hole 2's fix (the intent counted before the POST) covers it.
        "srp_create_then_hang",
    }
)


def _faults(seed: int) -> dict[str, float]:
    return {k: p for k, p in swarm(seed).items() if k not in NOT_YET_FIXED}


def test_every_invariant_holds_on_the_ci_seeds() -> None:
    lifecycles = 0
    for seed in CI_SEEDS:
        result = Simulation(seed, REQUESTS_PER_SEED, faults=_faults(seed)).run()
        lifecycles += result.requests
        assert result.violation is None, (
            f"seed {seed}: {result.violation}\n{result.trace[-6000:]}\n"
            f"replay: python -m sim --seed {seed} --without {','.join(sorted(NOT_YET_FIXED))}"
        )
    assert lifecycles >= len(CI_SEEDS) * REQUESTS_PER_SEED * 0.9


def test_a_seed_replays_exactly() -> None:
    first = Simulation(7, REQUESTS_PER_SEED, faults=_faults(7), trace_limit=10**6)
    second = Simulation(7, REQUESTS_PER_SEED, faults=_faults(7), trace_limit=10**6)
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
