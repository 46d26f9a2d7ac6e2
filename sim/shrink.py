"""Shrink a failing run: fewer requests, fewer fault kinds, the same invariant broken.

A seed's schedule is a function of (seed, requests, fault kinds). The shrinker keeps the seed
and greedily drops what it can while the run still breaks the same invariant: first the
number of requests (halving, then one by one), then each fault kind in turn (set to
probability 0). What is left is a small configuration whose trace shows only what the
failure needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim.scenario import Simulation


@dataclass(frozen=True)
class Shrunk:
    """The smallest failing configuration found."""

    seed: int
    requests: int
    faults: dict[str, float]
    invariant: str
    runs: int

    def command(self) -> str:
        """The command that replays it."""
        only = ",".join(f"{k}={p:g}" for k, p in sorted(self.faults.items()))
        # Kinds at 0 stay in the command: they keep the seed's random stream aligned.
        return (
            f"python -m sim --seed {self.seed} --requests {self.requests} --only {only or 'none'}"
        )


def shrink(
    seed: int,
    requests: int,
    faults: dict[str, float],
    run: Callable[[int, int, dict[str, float]], str | None] | None = None,
) -> Shrunk | None:
    """Greedy reduction of a failing (seed, requests, faults); None if it does not fail."""
    run = run or _invariant_broken
    target = run(seed, requests, faults)
    if target is None:
        return None
    runs = 1

    def still_fails(n: int, kinds: dict[str, float]) -> bool:
        nonlocal runs
        runs += 1
        return run(seed, n, kinds) == target

    while requests > 1 and still_fails(requests // 2, faults):
        requests //= 2
    while requests > 1 and still_fails(requests - 1, faults):
        requests -= 1
    for kind in sorted(faults):
        # Probability 0, not removal: the kind still draws from the seed's stream, so every
        # other random choice of the run stays where it was.
        fewer = {**faults, kind: 0.0}
        if still_fails(requests, fewer):
            faults = fewer
    return Shrunk(seed, requests, faults, target, runs)


def _invariant_broken(seed: int, requests: int, faults: dict[str, float]) -> str | None:
    violation = Simulation(seed, requests, faults=faults).run().violation
    return None if violation is None else violation.invariant
