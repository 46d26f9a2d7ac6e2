"""Post-processing benchmark: ms and peak memory per 2048x2048 RGBA render, ours vs baselines.

Every implementation makes the same derivatives (default `512:webp,256:webp,1024:png`)
from the same PNG bytes, with the same encoder settings (srp_bundle.derivatives):
- ours: `srp_bundle.derivatives.make_derivatives` (pyvips, decode once, parallel encoders);
- Pillow: the straightforward implementation (decode once, thumbnail and save per spec);
- sharp: npm `sharp` in node, decoding once (raw pixels) and decoding per output (as
  Firebase's resize-images extension does), timed in-process by bench/node/bench_sharp.mjs.

Each implementation runs in its own subprocess (peak memory is that process's ru_maxrss,
interpreter included), in interleaved rounds so a noisy neighbour hurts all alike.

    .venv/bin/python bench/postprocess_worker.py [--rounds 3] [--runs 4] [--specs ...]

sharp needs `npm install` in bench/node first; without it its rows are skipped.
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
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
NODE_DIR = BENCH_DIR / "node"
DEFAULT_SPECS = "512:webp,256:webp,1024:png"


def make_render(size: int) -> bytes:
    """A deterministic render-like RGBA PNG: a shaded, grainy sphere on transparency."""
    import pyvips

    xy = pyvips.Image.xyz(size, size)
    x, y = xy[0], xy[1]
    centre = size / 2
    radius = ((x - centre) ** 2 + (y - centre) ** 2) ** 0.5
    alpha = (size * 0.4 + 8 - radius) * (255 / 16)
    shade = 1 - radius / (size * 1.2)
    # libvips' trigonometry works in degrees.
    red = (128 + 100 * (x * (360 * 3.3 / size)).sin()) * shade
    green = (128 + 100 * (y * (360 * 2.1 / size)).cos()) * shade
    blue = (128 + 60 * ((x + y) * (360 * 1.7 / size)).sin()) * shade
    grain = pyvips.Image.gaussnoise(size, size, sigma=2, mean=0, seed=7)
    rgba = (red.bandjoin([green, blue]) + grain).bandjoin(alpha)
    image = rgba.cast("uchar").copy(interpretation="srgb")
    return bytes(image.pngsave_buffer(compression=6, filter="all"))


def encoder_settings() -> dict[str, Any]:
    """The encoder settings of srp_bundle.derivatives, handed to every baseline."""
    from srp_bundle import derivatives

    return {
        "webp_quality": derivatives.WEBP_QUALITY,
        "jpeg_quality": derivatives.JPEG_QUALITY,
        "avif_quality": derivatives.AVIF_QUALITY,
        "png_compression": derivatives.PNG_COMPRESSION,
        "png_filter": derivatives.PNG_FILTER,
        "effort": derivatives.ENCODER_EFFORT,
    }


# --- workers: each runs in its own process and prints {"ms": [...], "bytes": {...}} ---


def _ours(parallel_encoders: int) -> Callable[[bytes, str], dict[str, int]]:
    def run(png: bytes, specs_text: str) -> dict[str, int]:
        from srp_bundle.derivatives import make_derivatives
        from srp_bundle.settings import parse_derivative_specs

        result = make_derivatives(
            png, parse_derivative_specs(specs_text), parallel_encoders=parallel_encoders
        )
        return {f"{d.spec.size}:{d.spec.image_format}": d.info.bytes for d in result.derivatives}

    return run


def _pillow(png: bytes, specs_text: str) -> dict[str, int]:
    from PIL import Image

    from srp_bundle.settings import parse_derivative_specs

    settings = encoder_settings()
    source = Image.open(BytesIO(png))
    source.load()
    sizes: dict[str, int] = {}
    for spec in parse_derivative_specs(specs_text):
        image = source.copy()
        image.thumbnail((spec.size, spec.size), Image.Resampling.LANCZOS)  # never upscales
        out = BytesIO()
        if spec.image_format == "webp":
            image.save(out, "WEBP", quality=settings["webp_quality"], method=settings["effort"])
        elif spec.image_format == "png":
            image.save(out, "PNG", compress_level=settings["png_compression"])
        elif spec.image_format == "jpeg":
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(image, mask=image.getchannel("A") if "A" in image.getbands() else None)
            flat.save(out, "JPEG", quality=settings["jpeg_quality"])
        else:
            image.save(out, "AVIF", quality=settings["avif_quality"], speed=10 - settings["effort"])
        sizes[f"{spec.size}:{spec.image_format}"] = out.tell()
    return sizes


def _idle(png: bytes, specs_text: str) -> dict[str, int]:
    import pyvips  # noqa: F401  (the interpreter and libvips loaded, no work: the memory floor)

    return {}


PYTHON_WORKERS: dict[str, Callable[[bytes, str], dict[str, int]]] = {
    "ours": _ours(parallel_encoders=2),
    "ours-sequential": _ours(parallel_encoders=1),
    "pillow": _pillow,
    "python-idle": _idle,
}


def run_worker(name: str, image_path: str, specs_text: str, runs: int) -> None:
    """Worker process: one warm-up, then `runs` timed runs; print the JSON line."""
    work = PYTHON_WORKERS[name]
    png = Path(image_path).read_bytes()
    times: list[float] = []
    sizes: dict[str, int] = {}
    for attempt in range(runs + 1):
        start = time.perf_counter()
        sizes = work(png, specs_text)
        if attempt:
            times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"ms": times, "bytes": sizes}))


# --- the driver ---


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """Run one worker process; its JSON result and its peak RSS in MB."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=BENCH_DIR.parent)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv} exited with {process.returncode}")
    return json.loads(output.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


OURS = "ours (pyvips, decode once, 2 encoders)"
PILLOW = "Pillow (straightforward)"
SHARP = "sharp (decode once)"
SHARP_PER_OUTPUT = "sharp (decode per output, as Firebase)"


def run_benchmark(size: int, specs: str, rounds: int, runs: int) -> dict[str, Any]:
    """Measure every implementation in interleaved rounds; medians, minimums, peaks, floors."""
    sharp_ready = (NODE_DIR / "node_modules" / "sharp").is_dir()
    node_env = {**os.environ, "BENCH_ENCODER_SETTINGS": json.dumps(encoder_settings())}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-postprocess-") as workdir:
        image_path = os.path.join(workdir, "render.png")
        png = make_render(size)
        Path(image_path).write_bytes(png)

        def python(name: str) -> list[str]:
            return [
                sys.executable, __file__, "--worker", name, "--image", image_path,
                "--specs", specs, "--runs", str(runs),
            ]  # fmt: skip

        def node(mode: str) -> list[str]:
            script = str(NODE_DIR / "bench_sharp.mjs")
            return ["node", script, image_path, specs, str(runs), mode]

        rows: dict[str, tuple[list[str], dict[str, str] | None]] = {
            OURS: (python("ours"), None),
            "ours, encoders one after another": (python("ours-sequential"), None),
            PILLOW: (python("pillow"), None),
        }
        if sharp_ready:
            rows[SHARP] = (node("once"), node_env)
            rows[SHARP_PER_OUTPUT] = (node("per-output"), node_env)
        else:
            notes.append("sharp rows skipped: bench/node/node_modules/sharp is missing")

        times: dict[str, list[float]] = {name: [] for name in rows}
        peaks: dict[str, float] = dict.fromkeys(rows, 0.0)
        sizes: dict[str, dict[str, int]] = {}
        for _ in range(rounds):
            for name, (argv, env) in rows.items():
                result, peak = measure(argv, env)
                times[name].extend(result["ms"])
                peaks[name] = max(peaks[name], peak)
                sizes[name] = result["bytes"]
        _, python_floor = measure(python("python-idle"))
        node_floor = measure(["node", "-e", "console.log('{}')"])[1] if sharp_ready else 0.0
    return {
        "png_bytes": len(png),
        "times": times,
        "medians": {name: statistics.median(values) for name, values in times.items()},
        "peaks": peaks,
        "sizes": sizes,
        "python_floor": python_floor,
        "node_floor": node_floor,
        "notes": notes,
    }


def main() -> None:
    """Measure every implementation in interleaved rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--specs", default=DEFAULT_SPECS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=4, help="timed runs per round and process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.image, args.specs, args.runs)
        return

    import pyvips

    result = run_benchmark(args.size, args.specs, args.rounds, args.runs)
    if args.json:
        print(json.dumps(result))
        return
    for note in result["notes"]:
        print(note)
    times, medians, peaks, sizes = (
        result["times"], result["medians"], result["peaks"], result["sizes"]
    )  # fmt: skip
    ours = medians[OURS]
    print(
        f"\n{args.size}x{args.size} RGBA render, {result['png_bytes'] / 1e6:.1f} MB PNG -> "
        f"{args.specs}; {os.cpu_count()} cores, libvips {pyvips.version(0)}.{pyvips.version(1)}."
        f"{pyvips.version(2)}; {args.rounds} rounds x {args.runs} runs, median"
    )
    header = (
        f"{'implementation':42} {'median ms':>9} {'min ms':>7} {'x ours':>7} {'peak RSS MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for name in times:
        print(
            f"{name:42} {medians[name]:9.0f} {min(times[name]):7.0f} "
            f"{medians[name] / ours:7.2f} {peaks[name]:11.0f}"
        )
    print(
        f"memory floor: python + pyvips {result['python_floor']:.0f} MB, "
        f"node {result['node_floor']:.0f} MB"
    )
    print("output bytes: " + "; ".join(f"{name}: {sizes[name]}" for name in times))
    for baseline in (SHARP, PILLOW):
        if baseline in medians:
            print(f"ours / {baseline}: {ours / medians[baseline]:.2f}")


if __name__ == "__main__":
    main()
