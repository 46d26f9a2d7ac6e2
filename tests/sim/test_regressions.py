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


def test_a_crossed_callback_never_adopts_a_task_srp_does_not_show_as_this_requests() -> None:
    # Seed 56046 of the long run: a byte-identical request published twice without a
    # request_id; SRP's crossed callback named the twin's task, whose POST answer was lost,
    # and with no callbacks echoed in SRP's answer every other check passed. Before the fix
    # this seed ended with "2-one-task: 10000008 names task ... of request 10000009".
    faults = {
        "srp_cb_crossed": 0.3,
        "srp_get_omits_callbacks": 0.5,
        "input_no_request_id": 1.0,
        "ps_duplicate_publish": 0.5,
        "srp_lost_answer": 0.5,
    }
    result = Simulation(31, 8, faults=faults).run()
    assert result.violation is None, f"{result.violation}\n{result.trace[-4000:]}"


def test_a_slow_duplicate_run_never_rewrites_derivatives_a_newer_generation_removed() -> None:
    # Seed 794 of the CI seeds once the webhook lists render folders: a duplicate finalize
    # of generation 1 was still processing when generation 2 completed the request and its
    # clean-up deleted generation 1's derivatives; the slow run then wrote them again.
    # Without the re-check in RenderPostprocessor._record this seed ends with
    # "5-derivatives: derivatives/.../g1700000000001608/512.webp written twice".
    from sim.ci import REQUESTS_PER_SEED, ci_faults

    result = Simulation(794, REQUESTS_PER_SEED, faults=ci_faults(794)).run()
    assert result.violation is None, f"{result.violation}\n{result.trace[-4000:]}"
