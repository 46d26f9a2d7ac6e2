"""postprocess_render on video: poster + preview of a 10 s 1080p H.264 render vs bare ffmpeg.

A wrapper around bench/media_worker.py, run in a fresh, small process (a child's peak RSS
counts its parent's pages until exec, and this harness holds the Google clients).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from bench import media_worker as video
from bench.common import Row, Section


def run(*, rounds: int, log: Callable[[str], None]) -> Section:
    """Run the video benchmark and turn it into rows."""
    section = Section("postprocess_render (video)")
    log(f"  {rounds} rounds, ours and bare ffmpeg alternating...")
    completed = subprocess.run(
        [sys.executable, video.__file__, "--rounds", str(rounds), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    medians, peaks = result["medians"], result["peaks"]
    measure = "ms per 10 s 1080p H.264 render: poster (3 sizes) + 3 s preview"
    section.rows.append(
        Row("postprocess_render", measure, medians[video.OURS], medians[video.BARE], "ms",
            video.BARE, 1.1)
    )  # fmt: skip
    section.rows.append(
        Row("postprocess_render", "peak RSS (worker or ffmpeg child)", peaks[video.OURS],
            peaks[video.BARE], "MB", video.BARE)
    )  # fmt: skip
    section.notes.append(
        "video: ours = ffprobe + poster frame (dark-frame check) + libvips posters + "
        "ffmpeg preview + sha256; bare = the two ffmpeg command lines making the same files"
    )
    return section
