"""`python -m sim`: run seeds, replay one, shrink a failure. See docs/simulation.md."""

from __future__ import annotations

import argparse
import sys
import time

from sim.scenario import FAULT_KINDS, Simulation, swarm
from sim.shrink import shrink


def main(argv: list[str] | None = None) -> int:
    """Run the seeds asked for; exit 1 on the first invariant violation."""
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="replay exactly this seed and print its trace")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--requests", type=int, default=8, help="render requests per seed")
    parser.add_argument("--trace", action="store_true", help="print the trace even on success")
    parser.add_argument(
        "--full-trace", action="store_true", help="every trace line, not the last 60"
    )
    parser.add_argument(
        "--without", default="", help="fault kinds never injected (comma-separated)"
    )
    parser.add_argument(
        "--only", default="", help="inject only these fault kinds: KIND[=PROBABILITY],..."
    )
    parser.add_argument("--keep-going", action="store_true", help="list every failing seed")
    parser.add_argument(
        "--shrink", action="store_true", help="with --seed: reduce requests and fault kinds"
    )
    args = parser.parse_args(argv)
    without = {k for k in args.without.split(",") if k}
    only = {k.partition("=")[0]: k.partition("=")[2] for k in args.only.split(",") if k}
    unknown = (without | set(only)) - set(FAULT_KINDS) - {"none"}
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")

    def simulation(seed: int) -> Simulation:
        kinds = {k: p for k, p in swarm(seed).items() if k not in without}
        if only:
            kinds = {k: float(only[k] or FAULT_KINDS[k]) for k in only if k != "none"}
        return Simulation(seed, args.requests, faults=kinds)

    if args.seed is not None and args.shrink:
        shrunk = shrink(args.seed, args.requests, simulation(args.seed).fault_kinds)
        if shrunk is None:
            print(f"seed {args.seed} breaks no invariant: nothing to shrink")
            return 0
        needed = sorted(k for k, p in shrunk.faults.items() if p > 0)
        print(
            f"invariant {shrunk.invariant} still breaks with {shrunk.requests} request(s) and"
            f" {len(needed)} fault kind(s) ({shrunk.runs} runs): {', '.join(needed)}\n"
            f"  {shrunk.command()}"
        )
        return 1
    if args.seed is not None:
        sim = simulation(args.seed)
        result = sim.run()
        if result.violation is not None or args.trace:
            print(sim.world.format_trace(None if args.full_trace else 60))
        _print_result(result)
        return 1 if result.violation else 0

    started, cpu_started = time.perf_counter(), time.process_time()
    lifecycles = failures = 0
    for seed in range(args.start, args.start + args.seeds):
        sim = simulation(seed)
        result = sim.run()
        lifecycles += result.requests
        if result.violation is not None:
            failures += 1
            replay = f"python -m sim --seed {seed} --requests {args.requests}"
            if args.without:
                replay += f" --without {args.without}"
            if args.only:
                replay += f" --only {args.only}"
            if args.keep_going:
                print(f"seed {seed}: {result.violation}  (replay: {replay})", flush=True)
                continue
            print(sim.world.format_trace(None if args.full_trace else 60))
            _print_result(result)
            print(f"replay: {replay}")
            return 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    print(
        f"{args.seeds} seeds, {lifecycles} request lifecycles, {failures} violations;"
        f" {elapsed:.1f} s wall ({lifecycles / elapsed:.0f} lifecycles/s),"
        f" {cpu:.1f} s CPU ({lifecycles / cpu:.0f} lifecycles per CPU second)"
    )
    return 1 if failures else 0


def _print_result(result) -> None:  # type: ignore[no-untyped-def]
    status = f"VIOLATION {result.violation}" if result.violation else "ok"
    print(
        f"seed {result.seed}: {status}; {result.requests} requests, {result.steps} steps,"
        f" {result.simulated_seconds / 3600:.1f} simulated hours;"
        f" faults: {', '.join(result.faults)}"
    )


if __name__ == "__main__":
    sys.exit(main())
