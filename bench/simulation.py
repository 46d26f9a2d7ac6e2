"""The simulator's speed: request lifecycles per CPU second, and simulated time per CPU second.

`.venv/bin/python -m bench.simulation [--seeds N]`. Both figures are measured in the same
run: the rate is lifecycles over the process's CPU time (one core, whatever else the machine
runs), the ratio is simulated seconds over those CPU seconds (the real clock is the
baseline). Seeds 0.. with every fault kind each seed draws.
"""

from __future__ import annotations

import argparse
import time

from sim.scenario import Simulation


def measure(seeds: int, requests: int = 8, start: int = 0) -> dict[str, float]:
    """Run `seeds` seeds; return lifecycles, wall seconds, simulated seconds, violations."""
    lifecycles = violations = 0
    simulated = 0.0
    started, cpu_started = time.perf_counter(), time.process_time()
    for seed in range(start, start + seeds):
        result = Simulation(seed, requests).run()
        lifecycles += result.requests
        simulated += result.simulated_seconds
        violations += result.violation is not None
    wall = time.perf_counter() - started
    return {
        "lifecycles": lifecycles,
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - cpu_started,
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
    rate = figures["lifecycles"] / figures["cpu_seconds"]
    ratio = figures["simulated_seconds"] / figures["cpu_seconds"]
    print(
        f"{args.seeds} seeds x {args.requests} requests: {figures['lifecycles']:.0f} lifecycles,"
        f" {figures['cpu_seconds']:.1f} s CPU ({figures['wall_seconds']:.1f} s wall) ="
        f" {rate:.0f} lifecycles per CPU second (target 1,000); simulated time / CPU time ="
        f" {ratio:,.0f}x; violations: {figures['violations']:.0f}"
    )


if __name__ == "__main__":
    main()
