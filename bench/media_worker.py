"""Video post-processing: poster + preview of a 10 s 1080p H.264 render, ours vs bare ffmpeg.

Run by bench/media.py in a fresh process (`python bench/media_worker.py --rounds 3 --json`).
Each round times, in alternating order and each in its own worker process:

- ours: `render_outputs.process_output_file` on the MP4 with the default specs
  (ffprobe, poster frame with the dark-frame check, 512/256 WebP + 1024 PNG posters by
  libvips, the 3 s looping WebP preview, sha256 of the source);
- bare ffmpeg: the two command lines that make the same files from the same frame time:
  one decode of the poster frame scaled three ways, and the same preview command.

Peak memory is the worker's own `ru_maxrss` and that of the ffmpeg/ffprobe children it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OURS = "ours (probe, poster, preview)"
BARE = "bare ffmpeg command lines"
SECONDS, WIDTH, HEIGHT = 10, 1920, 1080
POSTER_AT = SECONDS * 0.10  # the time ours picks for a render that opens bright

_WORKER = r"""
import json, resource, subprocess, sys, time
mode, path, folder = sys.argv[1:4]
if mode == "ours":
    from srp_bundle.render_outputs import Limits, process_output_file
    from srp_bundle.settings import DEFAULT_DERIVATIVE_SPECS, parse_derivative_specs
    from srp_bundle.derivatives import _vips
    _vips()  # imported and configured before timing, as in a warm function instance
    specs = parse_derivative_specs(DEFAULT_DERIVATIVE_SPECS)
    started = time.perf_counter()
    result = process_output_file(path, specs, Limits(50_000_000, 600, 300.0))
    elapsed = time.perf_counter() - started
    outputs = sum(d.info.bytes for d in result.derivatives)
else:
    commands = json.loads(sys.argv[4])
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    outputs = 0
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": elapsed, "self_kb": own, "children_kb": children}))
"""


def make_source(folder: Path) -> Path:
    """The 10 s 1080p H.264 render both sides process."""
    path = folder / "render.mp4"
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=s={WIDTH}x{HEIGHT}:r=30:d={SECONDS}",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def bare_commands(source: Path, folder: Path) -> list[list[str]]:
    """The plain ffmpeg command lines for the same outputs as ours."""
    fit = "force_original_aspect_ratio=decrease"
    poster = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-ss", f"{POSTER_AT:.3f}", "-i", str(source),
        "-filter_complex",
        f"split=3[a][b][c];[a]scale=512:512:{fit}[o1];[b]scale=256:256:{fit}[o2];"
        f"[c]scale=1024:1024:{fit}[o3]",
        "-map", "[o1]", "-frames:v", "1", "-c:v", "libwebp", "-quality", "80",
        str(folder / "512.webp"),
        "-map", "[o2]", "-frames:v", "1", "-c:v", "libwebp", "-quality", "80",
        str(folder / "256.webp"),
        "-map", "[o3]", "-frames:v", "1", "-c:v", "png", str(folder / "1024.png"),
    ]  # fmt: skip
    preview = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-ss", f"{POSTER_AT:.3f}", "-t", "3", "-i", str(source), "-an",
        "-vf", f"fps=10,scale=w='min(320,iw)':h='min(320,ih)':{fit},"
        "scale=trunc(iw/2)*2:trunc(ih/2)*2",
        "-loop", "0", "-c:v", "libwebp_anim", "-quality", "60", str(folder / "preview.webp"),
    ]  # fmt: skip
    return [poster, preview]


def run_worker(mode: str, source: Path, folder: Path) -> dict[str, float]:
    """One timed run in a fresh interpreter."""
    commands = json.dumps(bare_commands(source, folder))
    completed = subprocess.run(
        [sys.executable, "-c", _WORKER, mode, str(source), str(folder), commands],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "shared")},
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Time both sides, interleaved; print a table or one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {OURS: [], BARE: []}
    peaks: dict[str, list[float]] = {OURS: [], BARE: []}
    with tempfile.TemporaryDirectory(prefix="bench-media-") as scratch:
        folder = Path(scratch)
        source = make_source(folder)
        for round_number in range(args.rounds):
            order = [("ours", OURS), ("bare", BARE)]
            if round_number % 2:
                order.reverse()
            for mode, name in order:
                result = run_worker(mode, source, folder)
                times[name].append(result["seconds"] * 1000)
                peaks[name].append(max(result["self_kb"], result["children_kb"]) / 1024)
    medians = {name: statistics.median(values) for name, values in times.items()}
    peak = {name: max(values) for name, values in peaks.items()}
    if args.json:
        print(json.dumps({"medians": medians, "peaks": peak, "rounds": args.rounds}))
        return
    for name in times:
        print(f"{name:<32} {medians[name]:8.0f} ms  peak {peak[name]:6.0f} MB")
    print(f"ratio {medians[OURS] / medians[BARE]:.2f}x")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
