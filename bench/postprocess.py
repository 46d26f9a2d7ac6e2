"""postprocess_render: ms and peak memory per 2048x2048 render, ours vs Pillow vs sharp.

A wrapper around bench/postprocess_worker.py (each implementation in its own process,
interleaved rounds). sharp comes from npm: `npm ci` runs in bench/node when its
node_modules is missing; without npm the sharp rows are skipped with a note.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable

from bench import postprocess_worker as images
from bench.common import Row, Section


def ensure_sharp(log: Callable[[str], None]) -> str | None:
    """Install sharp in bench/node if needed; a reason when it is unavailable, else None."""
    if (images.NODE_DIR / "node_modules" / "sharp").is_dir():
        return None
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "sharp skipped: node/npm is not installed"
    log("  installing sharp (npm ci in bench/node)...")
    lock = images.NODE_DIR / "package-lock.json"
    result = subprocess.run(
        ["npm", "ci" if lock.exists() else "install", "--no-audit", "--no-fund"],
        cwd=images.NODE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return f"sharp skipped: npm failed in bench/node: {result.stderr.strip()[-300:]}"
    return None


def run(*, rounds: int, runs: int, log: Callable[[str], None]) -> Section:
    """Run the image benchmark and turn it into rows (ratios against ours' baselines)."""
    section = Section("postprocess_render")
    reason = ensure_sharp(log)
    if reason:
        section.notes.append(reason)
    # In a fresh, small process: a child's peak RSS counts its parent's pages until exec,
    # and this harness holds the Google clients.
    completed = subprocess.run(
        [sys.executable, images.__file__, "--rounds", str(rounds), "--runs", str(runs), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    section.notes += result["notes"]
    medians, peaks = result["medians"], result["peaks"]
    ours = medians[images.OURS]
    for baseline, target in (
        (images.SHARP, 1.0),
        (images.SHARP_PER_OUTPUT, None),
        (images.PILLOW, None),
    ):
        if baseline in medians:
            section.rows.append(
                Row(
                    "postprocess_render",
                    "ms per 2048x2048 render",
                    ours,
                    medians[baseline],
                    "ms",
                    baseline,
                    target,
                )
            )
            section.rows.append(
                Row(
                    "postprocess_render",
                    "peak RSS",
                    peaks[images.OURS],
                    peaks[baseline],
                    "MB",
                    baseline,
                )
            )
    sequential = "ours, encoders one after another"
    section.rows.append(
        Row(
            "postprocess_render",
            "ms per render, 1 encoder thread",
            medians[sequential],
            ours,
            "ms",
            "ours with 2 encoders",
        )
    )
    section.notes.append(
        f"postprocess_render: {images.DEFAULT_SPECS}, {rounds} round(s) x {runs} run(s), "
        f"median; memory floor python+pyvips {result['python_floor']:.0f} MB, "
        f"node {result['node_floor']:.0f} MB"
    )
    log(f"  ours {ours:.0f} ms; " + ", ".join(f"{k} {v:.0f} ms" for k, v in medians.items()))
    return section
