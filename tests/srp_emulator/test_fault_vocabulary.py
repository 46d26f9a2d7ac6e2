"""Every fake of SRP names its faults from local_stack/srp_faults.py, and the table is true."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from local_stack import fault_run
from local_stack.srp_emulator.faults import FaultConfig, FaultConfigError, FaultInjector
from local_stack.srp_faults import (
    EMULATOR,
    FAKES,
    RATE_SUFFIX,
    SCRIPTED,
    SIMULATOR,
    SRP_FAULTS,
    faults_of,
    rate_setting,
)
from sim.scenario import FAULT_KINDS
from tests.integration.scripted_srp import POST_FAULTS

REPO = Path(__file__).resolve().parents[2]
# Emulator settings shared by a GET and a POST fault (or by none): they name no fault.
SHARED_SETTINGS = {
    "seed",
    "hang_seconds",
    "error_5xx_statuses",
    "retry_after_seconds",
    "slow_seconds",
}


def test_every_entry_names_what_it_does_and_fakes_that_exist() -> None:
    for name, fault in SRP_FAULTS.items():
        assert name == fault.name and name.startswith("srp_"), name
        assert fault.effect and fault.fakes and fault.fakes <= set(FAKES), name


def test_the_emulator_has_a_rate_for_exactly_its_faults() -> None:
    settings = {item.name for item in dataclasses.fields(FaultConfig)}
    rates = {name.removesuffix(RATE_SUFFIX) for name in settings if name.endswith(RATE_SUFFIX)}

    assert rates == faults_of(EMULATOR)
    # A setting of one fault alone starts with the fault's name.
    for setting in settings - {rate_setting(name) for name in rates} - SHARED_SETTINGS:
        assert any(setting.startswith(f"{name}_") for name in rates), setting


def test_the_emulator_draws_only_faults_of_the_vocabulary() -> None:
    source = "".join(
        (REPO / "local_stack/srp_emulator" / name).read_text()
        for name in ("engine.py", "server.py")
    )
    drawn = set(re.findall(r'hits\("(\w+)"\)', source))
    assert drawn and drawn <= faults_of(EMULATOR)
    with pytest.raises(KeyError, match="unknown SRP fault"):
        FaultInjector(FaultConfig()).hits("lost_response")
    with pytest.raises(FaultConfigError, match="unknown fault setting 'lost_response_rate'"):
        FaultConfig.from_dict({"lost_response_rate": 1.0})


def test_the_fault_run_turns_on_every_emulator_fault() -> None:
    rates = {k.removesuffix(RATE_SUFFIX) for k in fault_run.SRP_FAULTS if k.endswith(RATE_SUFFIX)}
    # All but the hangs: a client gives up on them as on srp_create_then_hang, which is there.
    assert rates == faults_of(EMULATOR) - {"srp_get_hang", "srp_post_hang"}
    assert set(fault_run.POST_FAULTS) <= faults_of(EMULATOR)


def test_the_simulator_injects_exactly_its_faults() -> None:
    kinds = {kind for kind in FAULT_KINDS if kind.startswith("srp_")}
    drawn = set(re.findall(r'fault\("(\w+)"\)', (REPO / "sim/srp.py").read_text()))

    assert kinds == faults_of(SIMULATOR)
    assert drawn <= faults_of(SIMULATOR)
    # Every fault kind the simulator's SRP draws is one of them (none under another prefix).
    assert drawn <= kinds


def test_the_scripted_srp_scripts_exactly_its_faults() -> None:
    assert set(POST_FAULTS) == faults_of(SCRIPTED)
