"""CI's seed budget and fault set (tests/sim/test_simulation.py, `python -m sim.mutants`)."""

from __future__ import annotations

from sim.scenario import swarm

# CI's seed budget: about a minute on one core (docs/simulation.md has the long runs).
CI_SEEDS = range(0, 1500)
REQUESTS_PER_SEED = 8
# Fault kinds left out of the CI seeds while a hole they find is open (issue 14's holes are
# all closed on main: none is left out).
NOT_YET_FIXED: frozenset[str] = frozenset()


def ci_faults(seed: int) -> dict[str, float]:
    """The fault kinds seed `seed` runs with in CI."""
    return {k: p for k, p in swarm(seed).items() if k not in NOT_YET_FIXED}
