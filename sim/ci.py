"""CI's seed budget and fault set (tests/sim/test_simulation.py, `python -m sim.mutants`)."""

from __future__ import annotations

from sim.scenario import swarm

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
        "input_hostile",  # hole 7
        "input_nan",  # hole 6
        "srp_odd_collection_name",  # hole 8
        "srp_cb_crossed",  # hole 9
        "srp_cb_odd_status",  # holes 10 and 11
        # A callback of a POST still in flight attaches its task before the POST's answer:
        # the earlier lost POST is no longer counted in unconfirmed_submissions (seed 13).
        # Hole 2's fix (the intent counted before the POST) covers it.
        "srp_create_then_hang",
    }
)


def ci_faults(seed: int) -> dict[str, float]:
    """The fault kinds seed `seed` runs with in CI."""
    return {k: p for k, p in swarm(seed).items() if k not in NOT_YET_FIXED}
