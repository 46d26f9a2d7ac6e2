"""Violations the simulator found in code where issue 14's holes were closed, by seed."""

from __future__ import annotations

import pytest

from sim.scenario import Simulation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_render_srp_never_finishes_fails_once_the_request_is_too_old(seed: int) -> None:
    # Before the fix each of these seeds ended with "1-terminal: request ... is stuck in
    # rendering after 259200s without faults": reconcile polled the task forever.
    result = Simulation(seed, 8, faults={"srp_never_finishes": 0.3}).run()
    assert result.violation is None, f"{result.violation}\n{result.trace[-4000:]}"
    assert result.stats["state_failed"] >= 1
