"""The JSON pre-check on untrusted bytes: refusing hostile input costs what parsing good input does.

Both sides run in this process, back to back: the time to refuse 64 KiB of `"\\` pairs (an
unterminated string of escaped quotes, under every size limit) against the time to parse
a valid 64 KiB body, through the same functions the handlers call. For scale, the string
stripping regex the pre-check used before is timed on a quarter of that input (it took
tens of seconds on the whole of it).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable

from bench.common import SAMPLE_COLLECTION_ID, Row, Section, median
from srp_bundle.errors import InvalidMessageError
from srp_bundle.json_limits import parse_json
from srp_bundle.render_requests import (
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_DEPTH,
    parse_render_request,
    request_id_hint,
)

HOSTILE = b'"\\' * (MAX_MESSAGE_BYTES // 2)
_OLD_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _valid_body(size: int) -> bytes:
    """A valid render request of about `size` bytes (many short traits)."""
    input_data: dict[str, str] = {}
    body = b""
    while len(body) < size - 40:
        input_data[f"trait_{len(input_data)}"] = "x" * 16
        body = json.dumps(
            {"collection_id": SAMPLE_COLLECTION_ID, "input_data": input_data}
        ).encode()
    return body


def _seconds(work: Callable[[], object], repeats: int) -> float:
    """Median seconds of one call of `work` (exceptions are part of the work)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with contextlib.suppress(InvalidMessageError):
            work()
        times.append(time.perf_counter() - started)
    return median(times)


def run(*, repeats: int, log: Callable[[str], None]) -> Section:
    """Time the refusals against the parses."""
    section = Section("json")
    valid = _valid_body(MAX_MESSAGE_BYTES)
    limits = {"max_bytes": MAX_MESSAGE_BYTES, "max_depth": MAX_MESSAGE_DEPTH}
    log(f"  {len(HOSTILE)} hostile bytes against a valid body of {len(valid)} bytes")

    refuse = _seconds(lambda: parse_json(HOSTILE, what="message data", **limits), repeats)
    parse = _seconds(lambda: parse_json(valid, what="message data", **limits), repeats)
    section.rows.append(
        Row(
            "json",
            'refuse 64 KiB of "\\ pairs (parse_json)',
            refuse * 1000,
            parse * 1000,
            "ms",
            "parse a valid 64 KiB body",
            target=2.0,
        )
    )

    def submit_refusal() -> None:
        try:
            parse_render_request(HOSTILE, "m")
        except InvalidMessageError:
            request_id_hint(HOSTILE, "m")  # submit_task's failure path reads it again

    refused = _seconds(submit_refusal, repeats)
    accepted = _seconds(lambda: parse_render_request(valid, "m"), repeats)
    section.rows.append(
        Row(
            "json",
            "submit_task: refuse it, then read its request id",
            refused * 1000,
            accepted * 1000,
            "ms",
            "validate a valid 64 KiB request",
            target=2.0,
        )
    )

    quarter = HOSTILE[: len(HOSTILE) // 4].decode()
    old = _seconds(lambda: _OLD_STRING.sub("", quarter), 1)
    ours = _seconds(lambda: parse_json(quarter.encode(), what="m", **limits), repeats)
    section.rows.append(
        Row(
            "json",
            "16 KiB of them: our check",
            ours * 1000,
            old * 1000,
            "ms",
            "the old string-stripping regex",
        )
    )
    return section
