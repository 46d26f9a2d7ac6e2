"""Fault injection: which failures to simulate, how often, drawn from one seeded RNG."""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from local_stack.srp_faults import RATE_SUFFIX, rate_setting


class FaultConfigError(ValueError):
    """A fault setting is unknown or out of range; the message names it."""


@dataclass
class FaultConfig:
    """Every fault knob; `<fault>_rate` is the probability (0..1) that the SRP fault of that
    name (local_stack/srp_faults.py) hits."""

    seed: int = 0
    # API faults (GET and POST of /api/v1/tasks and of the asset routes), drawn in this order.
    # Before anything is done:
    srp_get_hang_rate: float = 0.0  # no answer at all, connection closed after hang_seconds
    srp_post_hang_rate: float = 0.0
    hang_seconds: float = 30.0
    srp_get_error_rate: float = 0.0  # one of error_5xx_statuses
    srp_post_error_rate: float = 0.0
    error_5xx_statuses: list[int] = field(default_factory=lambda: [500, 502, 503])
    srp_get_429_rate: float = 0.0
    srp_post_429_rate: float = 0.0
    retry_after_seconds: int = 1
    # POST only, after the task is created (it renders and gets its callbacks): the connection
    # is dropped, the answer is a 5xx from the proxy in front, or it comes only after
    # srp_create_then_hang_seconds (past the client's timeout).
    srp_lost_answer_rate: float = 0.0
    srp_create_then_error_rate: float = 0.0
    srp_create_then_error_statuses: list[int] = field(default_factory=lambda: [502, 503, 504])
    srp_create_then_hang_rate: float = 0.0
    srp_create_then_hang_seconds: float = 30.0
    # The request is handled, the answer is delayed by slow_seconds:
    srp_get_slow_rate: float = 0.0
    srp_post_slow_rate: float = 0.0
    slow_seconds: float = 2.0
    # Render faults, drawn once per task:
    srp_render_fails_rate: float = 0.0
    srp_render_fails_reason: str = "render failed: injected fault"
    srp_cb_out_of_order_rate: float = 0.0  # the in_progress callback comes after the final one
    srp_early_done_rate: float = 0.0  # `done` is announced, the file uploaded after the callback
    srp_early_done_upload_delay: float = 0.5
    srp_late_done_rate: float = 0.0  # the file is uploaded, the `done` callback sent much later
    srp_late_done_delay: float = 3.0
    # Callback faults, drawn once per status change:
    srp_cb_duplicate_rate: float = 0.0
    srp_cb_drop_rate: float = 0.0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FaultConfig:
        """Build from JSON-ish values; unspecified knobs keep their defaults."""
        if not isinstance(values, dict):
            raise FaultConfigError("faults must be a JSON object")
        known = {item.name: item for item in dataclasses.fields(cls)}
        config = cls()
        for name, raw in values.items():
            if name not in known:
                raise FaultConfigError(f"unknown fault setting '{name}'")
            setattr(config, name, _coerce(name, raw, getattr(config, name)))
        return config

    def with_overrides(self, assignments: list[str]) -> FaultConfig:
        """Apply `name=value` strings (the --fault CLI flag) on top of this config."""
        values = self.to_dict()
        for assignment in assignments:
            name, separator, text = assignment.partition("=")
            if not separator:
                raise FaultConfigError(f"--fault expects name=value, got '{assignment}'")
            current = values.get(name.strip())
            if isinstance(current, list):
                values[name.strip()] = [item.strip() for item in text.split(",") if item.strip()]
            else:
                values[name.strip()] = text.strip()
        return FaultConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy of every knob."""
        return dataclasses.asdict(self)


def _coerce(name: str, raw: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            raise TypeError
        if isinstance(default, int) and not isinstance(default, bool):
            value: Any = int(raw)
        elif isinstance(default, float):
            value = float(raw)
        elif isinstance(default, str):
            value = str(raw)
        else:
            value = [int(status) for status in raw]
            if not value or not all(500 <= status <= 599 for status in value):
                raise ValueError
    except (TypeError, ValueError) as error:
        raise FaultConfigError(f"invalid value {raw!r} for fault setting '{name}'") from error
    if name.endswith(RATE_SUFFIX) and not 0.0 <= value <= 1.0:
        raise FaultConfigError(f"'{name}' must be between 0 and 1, got {value}")
    if isinstance(value, int | float) and value < 0:
        raise FaultConfigError(f"'{name}' must not be negative, got {value}")
    return value


class FaultInjector:
    """Thread-safe fault decisions from a seeded RNG, so a run can be replayed."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        """Replace the settings and restart the RNG from the config's seed."""
        with self._lock:
            self.config = config
            self._random = random.Random(config.seed)

    def hits(self, fault: str) -> bool:
        """Whether the SRP fault `fault` (its `<fault>_rate` knob) happens this time."""
        with self._lock:
            rate = float(getattr(self.config, rate_setting(fault)))
            # Draw even for rate 0 or 1 so enabling one fault doesn't shift the others' sequence.
            return self._random.random() < rate

    def for_task(self, sequence: int) -> TaskFaults:
        """The fault draws of one task (its render, its callbacks), from their own RNG.

        Seeded by the config's seed and the task's number, so which tasks fail, arrive out
        of order or lose callbacks replays exactly, however requests and renders interleave.
        """
        with self._lock:
            return TaskFaults(self.config, random.Random(f"{self.config.seed}/{sequence}"))

    def choose(self, options: list[int]) -> int:
        """Pick one of the options with the seeded RNG."""
        with self._lock:
            return self._random.choice(options)


class TaskFaults:
    """Fault decisions for one task; used by its render worker, then its callback thread."""

    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self.config = config
        self._random = rng
        self._lock = threading.Lock()

    def hits(self, fault: str) -> bool:
        """Whether the SRP fault `fault` (its `<fault>_rate` knob) happens this time."""
        with self._lock:
            return self._random.random() < float(getattr(self.config, rate_setting(fault)))
