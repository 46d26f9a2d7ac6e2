"""Structured logs: one JSON object per line with Cloud Logging's fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from srp_bundle import log


@pytest.fixture
def captured():
    root = logging.getLogger("srp_bundle")
    saved = list(root.handlers)
    root.handlers.clear()
    log.configure("DEBUG")
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.handlers[:] = saved


def test_lines_carry_severity_message_and_bound_correlation_fields(captured) -> None:
    logger = log.get_logger("test")
    with log.bind(request_id="req-1", event_id="ev-9"):
        logger.warning("submitted %s", "ok", extra=log.log_fields(task_id="t-1"))
    logger.info("outside")

    inside, outside = captured()
    assert inside["severity"] == "WARNING"
    assert inside["message"] == "submitted ok"
    assert (inside["request_id"], inside["event_id"], inside["task_id"]) == ("req-1", "ev-9", "t-1")
    assert "request_id" not in outside


def test_exceptions_are_kept_in_the_same_line(captured) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log.get_logger("test").exception("failed")
    (entry,) = captured()
    assert entry["severity"] == "ERROR" and "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize(
    ("header", "trace_id"),
    [
        ("105445aa7843bc8bf206b12000100000/1;o=1", "105445aa7843bc8bf206b12000100000"),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
    ],
)
def test_trace_field_from_both_trace_headers(header: str, trace_id: str) -> None:
    assert log.trace_field("proj", header) == {
        "logging.googleapis.com/trace": f"projects/proj/traces/{trace_id}"
    }
    assert log.trace_field("proj", None) == {}
