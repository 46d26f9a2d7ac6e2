"""The local stack: the real pipeline end to end, and nothing left running afterwards."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from urllib.parse import urlparse

import pytest

from local_stack.processes import REPO_ROOT, ProcessStartError, port_is_open
from local_stack.srp_emulator import SAMPLE_COLLECTION_UID, SEED_EXAMPLE_INPUT
from local_stack.stack import LocalStack, StackConfig

pytestmark = pytest.mark.integration


def _endpoints(stack: LocalStack) -> list[tuple[str, int]]:
    described = stack.describe()
    urls = [described["srp"], described["gcs"], *described["functions"].values()]
    hosts = [described["pubsub"], described["firestore"]]
    return [(urlparse(url).hostname or "", urlparse(url).port or 0) for url in urls] + [
        (host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1])) for host in hosts
    ]


def test_the_seed_example_is_rendered_end_to_end_and_nothing_outlives_the_stack(
    unique_name: Callable[[str], str],
) -> None:
    config = StackConfig(
        project_id=unique_name("stack"), tasks_collection=unique_name("tasks"), render_size=256
    )
    with LocalStack(config) as stack:
        # A producer callback on this machine: the stack allows loopback http for it.
        request_id = stack.publish_request(
            SAMPLE_COLLECTION_UID,
            SEED_EXAMPLE_INPUT,
            callback_urls=["http://127.0.0.1:9/producer"],
        )
        record = stack.wait_for_states([request_id], timeout=120)[request_id]
        events = stack.wait_for_events("render.completed", [request_id])
        processes = stack.processes
        endpoints = _endpoints(stack)
        render = stack.download(config.renders_bucket, record["render_path"])

    assert record["state"] == "completed", record.get("error")
    assert render.startswith(b"\x89PNG")
    assert len(record["derivatives"]) == 3
    completed = [e for e in events if e["type"] == "render.completed"]
    assert [e["data"]["request_id"] for e in completed] == [request_id]
    assert processes and not [p.name for p in processes if p.is_running()]
    assert not [endpoint for endpoint in endpoints if port_is_open(*endpoint)]


def test_a_function_that_cannot_start_stops_everything_started_before_it(
    unique_name: Callable[[str], str],
) -> None:
    config = StackConfig(
        project_id=unique_name("stack"),
        render_size=256,
        functions=["record_dead_letter", "submit_task"],
        # Too short a secret: submit_task refuses to import, naming the variable.
        function_env={"WEBHOOK_SECRET": "short"},
    )
    stack = LocalStack(config)
    with pytest.raises(ProcessStartError, match="WEBHOOK_SECRET"):
        stack.start()
    assert stack.srp is not None and stack.processes
    assert not [p.name for p in stack.processes if p.is_running()]


def test_up_prints_the_environment_and_ctrl_c_stops_every_process() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PUBSUB_EMULATOR_HOST", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "local_stack", "up", "--render-size", "256"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if "the stack is up" in line:
                break
        printed = "".join(lines)
        assert "the stack is up" in printed, printed
        ports = [int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", printed)]
        assert "export WEBHOOK_SECRET=" in printed and "export SRP_API_KEY=" in printed
        assert all(port_is_open("127.0.0.1", port) for port in ports)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 130
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert len(set(ports)) >= 8  # emulators, SRP and the functions
    assert not [port for port in set(ports) if port_is_open("127.0.0.1", port)]
