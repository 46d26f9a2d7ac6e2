"""The emulator as a process: start-up line, CLI settings, prompt stop, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from local_stack.emulators import GcsEmulator
from local_stack.processes import ProcessStartError
from local_stack.srp_emulator import SrpEmulatorProcess


def emulator(gcs_emulator: GcsEmulator, **options: object) -> SrpEmulatorProcess:
    """An emulator of its own for this test (the session one is shared)."""
    return SrpEmulatorProcess(
        renders_bucket="srp-emulator-process-tests",
        env={**gcs_emulator.env, "GOOGLE_CLOUD_PROJECT": "srp-emulator-tests"},
        render_size=64,
        **options,  # type: ignore[arg-type]
    )


def test_sigterm_stops_the_process_cleanly(gcs_emulator: GcsEmulator) -> None:
    with emulator(gcs_emulator) as srp:
        assert srp.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{srp.url}/_emulator/health").json() == {"status": "ok"}
        assert srp.pid is not None
        os.kill(srp.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while srp.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)

        assert not srp.is_running()


def test_the_process_is_stopped_when_the_block_raises(gcs_emulator: GcsEmulator) -> None:
    srp = emulator(gcs_emulator)

    with pytest.raises(RuntimeError, match="test failure"), srp:
        assert srp.is_running()
        raise RuntimeError("test failure")

    assert not srp.is_running()


def test_fault_flags_and_the_control_token_come_from_the_command_line(
    gcs_emulator: GcsEmulator,
) -> None:
    with emulator(
        gcs_emulator,
        faults={"srp_get_429_rate": 1.0},
        seed=7,
        control_token="control-secret",
        extra_args=["--fault", "retry_after_seconds=9", "--fault", "error_5xx_statuses=502,504"],
    ) as srp:
        refused = httpx.get(f"{srp.url}/_emulator/faults")
        faults = srp.control.faults()
        throttled = httpx.get(
            f"{srp.url}/api/v1/tasks",
            params={"id": "x"},
            headers={"Authorization": "Bearer test-api-key"},
        )

    assert refused.status_code == 401
    assert faults["srp_get_429_rate"] == 1.0
    assert faults["retry_after_seconds"] == 9
    assert faults["error_5xx_statuses"] == [502, 504]
    assert faults["seed"] == 7
    assert throttled.headers["Retry-After"] == "9"


def test_a_bad_collections_file_stops_start_up_with_the_reason(
    gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    broken = tmp_path / "collections.json"
    broken.write_text("{not json")

    with pytest.raises(ProcessStartError, match="cannot read collections file"):
        emulator(gcs_emulator, collections=broken).start()


def test_an_unknown_fault_setting_stops_start_up_with_its_name() -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "local_stack.srp_emulator",
            "--api-key", "k", "--renders-bucket", "b", "--fault", "gremlins_rate=1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip

    assert result.returncode == 2
    assert "unknown fault setting 'gremlins_rate'" in result.stderr
