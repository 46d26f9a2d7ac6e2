"""Terminal output of the CLI: a small progress bar on stderr, and a rate limiter."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

_BAR_WIDTH = 24
# On a terminal the bar is redrawn at most this often; elsewhere a line is written this often.
_TTY_REDRAW_SECONDS = 0.1
_LOG_LINE_SECONDS = 5.0


class Progress:
    """A one-line progress bar: redrawn in place on a terminal, periodic lines otherwise."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        show_rate: bool = True,
        format_amount: Callable[[float], str] | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.note = ""
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started_at = clock()
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.show_rate = show_rate
        # How counts and rates are written (e.g. `human_bytes`); plain numbers by default.
        self.format_amount = format_amount
        self._last_output_at = -1e9
        self._last_state: tuple[int, int, str] | None = None
        self._width = 0

    def advance(self, count: int = 1, note: str | None = None) -> None:
        """Count `count` more items done."""
        self.update(self.done + count, note=note)

    def update(self, done: int, *, total: int | None = None, note: str | None = None) -> None:
        """Set the number of items done (and optionally the total and a note)."""
        self.done = done
        if total is not None:
            self.total = total
        if note is not None:
            self.note = note
        interval = _TTY_REDRAW_SECONDS if self.interactive else _LOG_LINE_SECONDS
        if self.clock() - self._last_output_at >= interval:
            self._write()

    def finish(self, note: str | None = None) -> None:
        """Write the final state and end the line."""
        if note is not None:
            self.note = note
        if self.interactive or self._last_state != (self.done, self.total, self.note):
            self._write()
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def render(self) -> str:
        """The bar as text, e.g. `submit [######------]  50/100  50%  12.0/s  eta 4s  note`."""
        total = max(self.total, 0)
        fraction = min(self.done / total, 1.0) if total else 1.0
        filled = round(fraction * _BAR_WIDTH)
        elapsed = max(self.clock() - self.started_at, 1e-9)
        rate = self.done / elapsed
        amount = self.format_amount
        parts = [
            f"{self.label} [{'#' * filled}{'-' * (_BAR_WIDTH - filled)}]",
            f"{amount(self.done)}/{amount(total)}" if amount else f"{self.done}/{total}",
            f"{fraction:4.0%}",
        ]
        if self.show_rate:
            parts.append(f"{amount(rate)}/s" if amount else f"{rate:.1f}/s")
        if self.show_rate and 0 < self.done < total and rate > 0:
            parts.append(f"eta {_duration((total - self.done) / rate)}")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)

    def _write(self) -> None:
        line = self.render()
        self._last_output_at = self.clock()
        self._last_state = (self.done, self.total, self.note)
        if self.interactive:
            padding = " " * max(self._width - len(line), 0)
            self.stream.write(f"\r{line}{padding}")
            self._width = len(line)
        else:
            self.stream.write(f"{line}\n")
        self.stream.flush()


class RateLimiter:
    """Spaces calls at most `per_second` apart (no limit when None)."""

    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next_at = 0.0

    def wait(self) -> None:
        """Block until the next call is allowed."""
        if not self.interval:
            return
        now = self.clock()
        if self._next_at > now:
            self.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self.interval


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def human_bytes(count: float) -> str:
    """`812 B`, `12.3 KiB`, `4.0 MiB`, `1.0 GiB`."""
    if abs(count) < 1024:
        return f"{count:.0f} B"
    for exponent, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(count) >= 1024**exponent or unit == "KiB":
            break
    return f"{count / 1024**exponent:.1f} {unit}"
