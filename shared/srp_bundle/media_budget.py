"""What one output file may cost: one deadline shared by every tool run, and child limits.

A `MediaBudget` starts when post-processing of a file starts. Every ffprobe/ffmpeg run
for that file gets only the time that is left (`child_limits`), and libvips work is killed
when the deadline passes (`bound_vips`), so the whole file never takes longer than
MEDIA_TIMEOUT_SECONDS, however many runs it needs (probe, poster attempts, preview).
Settings check that this budget plus a margin fits inside the function's own timeout.

Each child process also runs under kernel limits set between fork and exec: RLIMIT_AS
(address space, MEDIA_MEMORY_BYTES) and RLIMIT_CPU (the time left, times the threads it
may use), so a child the parent can no longer kill still stops on its own.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from srp_bundle.errors import MediaTimeoutError

# Threads each ffmpeg/ffprobe run may use (decoder, filters, encoder): the functions have
# one or two vCPUs, and every thread costs frame buffers and a malloc arena.
TOOL_THREADS = 2
DEFAULT_MEDIA_MEMORY_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class ChildLimits:
    """The wall-clock timeout and kernel limits of one child process."""

    timeout_seconds: float
    cpu_seconds: int
    memory_bytes: int

    def apply_in_child(self) -> None:
        """Set RLIMIT_AS and RLIMIT_CPU; runs in the child between fork and exec."""
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        # Soft equal to hard: the kernel sends SIGKILL, which ffmpeg cannot catch.
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))


class MediaBudget:
    """One deadline for all the work on one output file, and the limits of its children."""

    def __init__(
        self,
        seconds: float,
        *,
        memory_bytes: int = DEFAULT_MEDIA_MEMORY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The deadline is `seconds` from now, by `clock`."""
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self._clock = clock
        self._deadline = clock() + seconds

    def remaining(self, what: str) -> float:
        """Seconds left for `what`; MediaTimeoutError once the budget is spent."""
        left = self._deadline - self._clock()
        if left <= 0:
            raise MediaTimeoutError(
                f"the file's budget of {self.seconds:g} s was spent before {what} finished"
            )
        return left

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._clock() >= self._deadline

    def child_limits(self, what: str) -> ChildLimits:
        """The limits of the next child process: at most the time left."""
        left = self.remaining(what)
        return ChildLimits(
            timeout_seconds=left,
            cpu_seconds=math.ceil(left * TOOL_THREADS) + 1,
            memory_bytes=self.memory_bytes,
        )

    def bound_vips(self, image: Any) -> Any:
        """Have libvips stop computing `image` once the deadline passes (it fails, killed)."""
        image.set_progress(True)

        def on_eval(evaluated: Any, _progress: Any) -> None:
            if self.expired():
                evaluated.set_kill(True)

        image.signal_connect("eval", on_eval)
        return image
