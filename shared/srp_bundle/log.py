"""Structured logging: one JSON object per line on stdout, in the shape Cloud Logging parses.

Correlation fields (`request_id`, `task_id`, `event_id`, the trace) are bound once per
invocation with `bind()` and appear on every line logged while handling it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "srp_log_context", default=_NO_FIELDS
)
_TRACE_FIELD = "logging.googleapis.com/trace"
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as a Cloud Logging structured entry."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        entry.update(_context.get())
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(level: str | None = None) -> None:
    """Send this process's logs to stdout as JSON lines (idempotent)."""
    root = logging.getLogger("srp_bundle")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A logger under the bundle's root, writing JSON once `configure()` ran."""
    return logging.getLogger(name if name.startswith("srp_bundle") else f"srp_bundle.{name}")


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add correlation fields to every log line written inside the block."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def trace_field(project_id: str, trace_header: str | None) -> dict[str, str]:
    """The Cloud Logging trace field for an `X-Cloud-Trace-Context` or `traceparent` header."""
    if not trace_header:
        return {}
    if trace_header.count("-") == 3:  # W3C traceparent: version-traceid-spanid-flags
        trace_id = trace_header.split("-")[1]
    else:
        trace_id = trace_header.split("/", 1)[0]
    if not trace_id:
        return {}
    return {_TRACE_FIELD: f"projects/{project_id}/traces/{trace_id}"}


def log_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a log call that adds structured fields to one line."""
    return {"fields": fields}
