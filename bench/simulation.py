"""The simulator's speed: request lifecycles per second, and simulated time per wall second.

`.venv/bin/python -m bench.simulation [--seeds N]`. Both figures are measured in the same
run: the rate is lifecycles over wall time, the ratio is simulated seconds over wall seconds
(the wall clock is the baseline). Seeds are the CI test's, with every fault kind its seed draws.
"""

from __future__ import annotations

import argparse
import time

from sim.scenario import Simulation


def measure(seeds: int, requests: int = 8, start: int = 0) -> dict[str, float]:
    """Run `seeds` seeds; return lifecycles, wall seconds, simulated seconds, violations."""
    lifecycles = violations = 0
    simulated = 0.0
    started = time.perf_counter()
    for seed in range(start, start + seeds):
        result = Simulation(seed, requests).run()
        lifecycles += result.requests
        simulated += result.simulated_seconds
        violations += result.violation is not None
    wall = time.perf_counter() - started
    return {
        "lifecycles": lifecycles,
        "wall_seconds": wall,
        "simulated_seconds": simulated,
        "violations": violations,
    }


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    figures = measure(args.seeds, args.requests)
    rate = figures["lifecycles"] / figures["wall_seconds"]
    ratio = figures["simulated_seconds"] / figures["wall_seconds"]
    print(
        f"{args.seeds} seeds x {args.requests} requests: {figures['lifecycles']:.0f} lifecycles in"
        f" {figures['wall_seconds']:.1f} s wall = {rate:.0f} lifecycles/s (target 1,000);"
        f" simulated/wall time = {ratio:,.0f}x; violations: {figures['violations']:.0f}"
    )


if __name__ == "__main__":
    main()
