"""The fault kinds a run injects: the catalogue, each seed's swarm, and the producer's bad input.

Every other fault is injected where its effect is, by the fake that owns it
(`world.fault(kind)` in sim/firestore.py, sim/srp.py, sim/storage.py, sim/pubsub.py).
"""

from __future__ import annotations

import json
import random
from typing import Any

from sim.world import World

# Every fault kind the simulator can inject, with its probability per opportunity.
FAULT_KINDS: dict[str, float] = {
    "slow_io": 0.003,
    "fs_commit_fails": 0.03,
    "fs_commit_answer_lost": 0.03,
    "fs_read_fails": 0.02,
    "gcs_fails": 0.03,
    "ps_redeliver_after_ack": 0.05,
    "ps_concurrent_delivery": 0.05,
    "ps_duplicate_publish": 0.1,
    "ps_publish_fails": 0.03,
    "srp_connect_refused": 0.05,
    "srp_outage": 1.0,  # once per run: SRP answers 503 to everything for 1 to 4 hours
    "srp_post_error": 0.08,
    "srp_post_429": 0.08,
    "srp_post_hang": 0.05,
    "srp_create_then_error": 0.08,
    "srp_create_then_hang": 0.08,
    "srp_lost_answer": 0.08,
    "srp_get_error": 0.05,
    "srp_get_429": 0.03,
    "srp_get_hang": 0.02,
    "srp_get_lags": 0.2,
    "srp_render_fails": 0.1,
    "srp_never_finishes": 0.02,
    "srp_cb_duplicate": 0.15,
    "srp_cb_delay": 0.1,
    "srp_cb_drop": 0.15,
    "srp_cb_wrong_status": 0.05,
    "srp_cb_odd_status": 0.02,
    "srp_cb_crossed": 0.02,
    "srp_odd_collection_name": 0.02,
    "gcs_duplicate_finalize": 0.2,
    "srp_rewrites_render": 0.1,
    "srp_corrupt_render": 0.05,
    "srp_sibling_files": 0.1,
    "input_invalid": 0.05,
    "input_hostile": 0.05,
    "input_nan": 0.03,
    "input_no_request_id": 0.15,
    "srp_get_omits_callbacks": 0.1,
}


def swarm(seed: int, kinds: dict[str, float] | None = None) -> dict[str, float]:
    """The fault kinds one seed runs with: a random subset, drawn from its own stream."""
    rng = random.Random(f"swarm-{seed}")
    kinds = FAULT_KINDS if kinds is None else kinds
    enabled = {}
    for kind, p in kinds.items():
        if rng.random() < 0.6:
            enabled[kind] = p * rng.choice((0.5, 1.0, 2.0))
    return enabled


def schedule_outage(world: World, srp: Any, publish_window: float) -> None:
    """`srp_outage`: SRP answers 503 to everything for 1 to 4 hours, once, somewhere early."""
    if world.fault("srp_outage"):
        start = world.rng.uniform(0, publish_window)
        srp.outage = (start, start + world.rng.uniform(3600, 4 * 3600))
        world.note("world", f"SRP will be down from {start:.0f}s to {srp.outage[1]:.0f}s")


def request_data(world: World, index: int) -> tuple[bytes, str]:
    """Producer `index`'s message body, with the input faults applied, and what kind it is."""
    body: dict[str, Any] = {
        "collection_id": str(_uuid(world.rng)),
        "input_data": {"bg": f"bg{index}.png", "n": index},
        "request_id": f"req-{index}",
    }
    if world.fault("input_no_request_id"):
        del body["request_id"]
    if world.rng.random() < 0.05:
        body["input_data"]["sim_rejected"] = True  # SRP answers 400: a permanent failure
    data = json.dumps(body).encode()
    kind = "valid"
    if world.fault("input_invalid"):
        data, kind = world.rng.choice(
            (
                (b"not json", "not JSON"),
                (json.dumps({**body, "inputdata": {}}).encode(), "unknown field"),
                (json.dumps({**body, "collection_id": "nope"}).encode(), "bad collection id"),
            )
        )
    elif world.fault("input_hostile"):
        hostile = world.rng.choice(
            (
                {"grid": [[1, 2], [3, 4]]},
                {"__meta__": 1},
                {"deep": _nest(25)},
                {"blob": "x" * 70_000},
            )
        )
        body["input_data"].update(hostile)
        data, kind = json.dumps(body).encode(), f"hostile input {next(iter(hostile))}"

        if len(data) > 64 * 1024:
            kind = "too large"
    if kind == "valid" and world.fault("input_nan"):
        data = data.replace(b'"n": ', b'"n": NaN, "m": ')  # JSON that Python accepts
        kind = "input with NaN"
    return data, kind


def _uuid(rng: random.Random) -> str:
    import uuid

    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _nest(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"d": value}
    return value
