"""The simulated world's core: a virtual clock, a seeded scheduler of greenlets, the trace.

Every handler invocation (a Pub/Sub delivery, an HTTP callback, a storage event, a reconcile
run) runs the real use case in its own greenlet. Each simulated I/O call (`World.io`) parks
that greenlet until its virtual latency has passed and lets the scheduler run whatever is
due first, so handlers interleave at exactly the points where production ones can. One
greenlet runs at a time and every choice comes from the run's seeded random streams: the
same seed replays the same schedule, step by step.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import greenlet

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class InvariantViolation(Exception):
    """An invariant does not hold: the run stops here."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"invariant {invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


@dataclass
class Faults:
    """Which fault kinds this run may inject, and how often (probability per opportunity)."""

    enabled: dict[str, float] = field(default_factory=dict)
    active: bool = True

    def __call__(self, rng: random.Random, kind: str) -> bool:
        """Whether to inject `kind` now (never once faults have stopped)."""
        if not self.active:
            return False
        p = self.enabled.get(kind)
        return p is not None and rng.random() < p


class World:
    """Virtual time, the event queue, the seeded random stream, and the trace."""

    def __init__(self, seed: int, faults: Faults, *, trace_limit: int = 20000) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults
        self.now_s = 0.0
        self._queue: list[tuple[float, int, Callable[[], Any]]] = []
        self._seq = 0
        self.trace: list[tuple[float, str, str]] = []
        self.trace_limit = trace_limit
        self.main = greenlet.getcurrent()
        self.running = 0
        self.steps = 0
        self.after_step: Callable[[], None] | None = None
        self.actor = "world"

    # ---- time ---------------------------------------------------------------------------

    def now(self) -> datetime:
        """The virtual now, timezone-aware UTC."""
        return EPOCH + timedelta(seconds=self.now_s)

    def fault(self, kind: str) -> bool:
        """Whether to inject `kind` at this opportunity."""
        return self.faults(self.rng, kind)

    # ---- scheduling -----------------------------------------------------------------------

    def at(self, delay: float, action: Callable[[], Any]) -> None:
        """Run `action` (in the scheduler) `delay` virtual seconds from now."""
        self._seq += 1
        heapq.heappush(self._queue, (self.now_s + max(0.0, delay), self._seq, action))

    def spawn(
        self,
        delay: float,
        actor: str,
        body: Callable[[], Any],
        done: Callable[[BaseException | None, Any], None] | None = None,
    ) -> None:
        """Start `body` in its own greenlet after `delay`; `done(error, result)` when it ends."""

        def start() -> None:
            def run() -> None:
                self.running += 1
                try:
                    result = body()
                except InvariantViolation:
                    raise
                except Exception as error:  # a handler failure: its caller decides (retry...)
                    self.running -= 1
                    self.note(actor, f"ends with {type(error).__name__}: {_short(error)}")
                    if done is not None:
                        done(error, None)
                    return
                self.running -= 1
                if done is not None:
                    done(None, result)

            child = greenlet.greenlet(run, parent=self.main)
            child.actor = actor  # type: ignore[attr-defined]
            self._enter(child)

        self.at(delay, start)

    def _enter(self, child: greenlet.greenlet, *args: Any) -> None:
        previous = self.actor
        self.actor = child.actor  # type: ignore[attr-defined]
        try:
            child.switch(*args)
        finally:
            self.actor = previous

    def io(self, latency: float) -> None:
        """Park the calling handler for `latency` virtual seconds (a simulated network call)."""
        current = greenlet.getcurrent()
        if current is self.main:
            return  # set-up and invariant checks read the world directly
        self.at(latency, lambda: self._enter(current))
        self.main.switch()

    def sleep(self, seconds: float) -> None:
        """A handler's sleep, in virtual time."""
        self.io(seconds)

    def latency(self) -> float:
        """A typical network round trip, with a rare long stall when that fault is on."""
        if self.fault("slow_io"):
            return self.rng.uniform(1.0, 120.0)
        return self.rng.uniform(0.002, 0.05)

    def call(self, deadline: float) -> bool:
        """Wait one round trip; False when no answer came within `deadline` (time is spent).

        A stalled call never answers late: the client gives up at its deadline, whatever
        the server did (each fake decides that: applied, created, or nothing).
        """
        latency = self.latency()
        if latency <= deadline:
            self.io(latency)
            return True
        self.io(deadline)
        return False

    def run_until(self, end_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Run due actions in time order until `end_s` (or until `stop()` says so)."""
        queue = self._queue
        while queue and queue[0][0] <= end_s:
            when, _, action = heapq.heappop(queue)
            self.now_s = when
            action()
            self.steps += 1
            if self.after_step is not None:
                self.after_step()
            if stop is not None and stop():
                return
        if not queue or queue[0][0] > end_s:
            self.now_s = max(self.now_s, end_s)

    def pending(self) -> int:
        """How many actions wait in the queue."""
        return len(self._queue)

    # ---- trace ----------------------------------------------------------------------------

    def note(self, actor: str | None, text: str) -> None:
        """One line of the trace: what happened, who did it, when."""
        if len(self.trace) < self.trace_limit:
            self.trace.append((self.now_s, actor or self.actor, text))

    def format_trace(self, last: int | None = None) -> str:
        """The trace as readable lines: `+seconds  actor  what`."""
        lines = self.trace if last is None else self.trace[-last:]
        return "\n".join(f"{t:>11.3f}s  {actor:<22} {text}" for t, actor, text in lines)


def _short(error: BaseException) -> str:
    text = str(error).replace("\n", " ")
    return text if len(text) <= 160 else text[:157] + "..."
