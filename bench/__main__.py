"""The benchmark harness: `.venv/bin/python -m bench [--quick] [--only SECTION ...]`.

Every figure is set against a baseline measured in the same run (the machines are shared
and noisy; absolute times are only indicative). Sections: json (refusing hostile JSON
against parsing valid JSON of the same size), cold (cold start per function),
webhook (ingest_webhook throughput and latency), postprocess (derivatives vs Pillow and
sharp), media (video poster + preview vs bare ffmpeg), submit (submit_task overhead
beyond the SRP round trip), e2e (whole local stack: publish -> completed, and billable
operations per request), faults (every fault mode at once: counts of the exactly-once
audit), assets (peak memory of a 1 GiB asset upload, CLI and SRP emulator, against a small
one), batches (reads of `status --batch` for 10,000 members against streaming them, on the
simulator's counted Firestore). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime

from bench.common import Emulators, Section

SECTIONS = (
    "json",
    "cold",
    "webhook",
    "postprocess",
    "media",
    "submit",
    "e2e",
    "faults",
    "assets",
    "batches",
)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(message, file=sys.stderr, flush=True)


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit in ("ms", "req/s", "MB"):
        return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def table(sections: list[Section], *, markdown: bool) -> str:
    """The result table (plain text or Markdown) followed by the notes."""
    header = ["section", "measure", "ours", "baseline", "ratio", "target", "", "baseline is"]
    lines = []
    for section in sections:
        for row in section.rows:
            target = ""
            if row.target is not None:
                target = f"{'>=' if row.higher_is_better else '<='}{row.target:g}x"
            lines.append(
                [
                    row.section,
                    row.measure,
                    _figure(row.ours, row.unit),
                    _figure(row.baseline, row.unit),
                    f"{row.ratio:.2f}x" if row.ratio is not None else "",
                    target,
                    row.verdict,
                    row.baseline_name,
                ]
            )
    notes = [note for section in sections for note in section.notes]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        out += [""] + [f"- {note}" for note in notes]
        return "\n".join(out)
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=True))]
    out.append("-" * len(out[0]))
    out += [
        "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))
        for cells in lines
    ]
    out += [""] + [f"* {note}" for note in notes]
    return "\n".join(line.rstrip() for line in out)


def main() -> None:
    """Run the chosen sections and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 3 minutes)")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run"
    )
    parser.add_argument("--skip", nargs="+", choices=SECTIONS, default=[], help="sections to skip")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--burst", type=int, help="requests in the e2e burst (default 1000, --quick 100)"
    )
    parser.add_argument(
        "--fault-requests", type=int, help="requests in the fault run (default 1000, --quick 50)"
    )
    args = parser.parse_args()
    chosen = [name for name in args.only if name not in args.skip]
    quick = args.quick
    started = time.monotonic()
    sections: list[Section] = []
    if "json" in chosen:
        from bench import untrusted_json

        log("JSON pre-check on hostile input...")
        sections.append(untrusted_json.run(repeats=5 if quick else 20, log=log))
    emulators = Emulators()
    try:
        if "cold" in chosen:
            from bench import cold_start

            log("cold start...")
            sections.append(cold_start.run(emulators, repeats=3 if quick else 5, log=log))
        if "webhook" in chosen:
            from bench import webhook

            log("ingest_webhook throughput...")
            sections.append(
                webhook.run(
                    emulators, requests=150 if quick else 400, rounds=1 if quick else 2, log=log
                )
            )
        if "submit" in chosen:
            from bench import submit

            log("submit_task overhead...")
            sections.append(submit.run(emulators, messages=30 if quick else 100, log=log))
    finally:
        emulators.stop()
    if "postprocess" in chosen:
        from bench import postprocess

        log("postprocess_render...")
        sections.append(postprocess.run(rounds=1 if quick else 3, runs=2 if quick else 3, log=log))
    if "media" in chosen:
        from bench import media

        log("postprocess_render on video...")
        sections.append(media.run(rounds=2 if quick else 5, log=log))
    if "e2e" in chosen:
        from bench import end_to_end

        log("end to end (whole local stack)...")
        burst = args.burst or (100 if quick else 1000)
        sections.append(end_to_end.run(burst=burst, log=log))
    if "faults" in chosen:
        from bench import fault_run

        log("every fault mode at once (whole local stack)...")
        count = args.fault_requests or (50 if quick else 1000)
        sections.append(fault_run.run(requests=count, log=log))
    if "assets" in chosen:
        from bench import assets_upload

        log("asset upload memory...")
        sections.append(
            assets_upload.run(
                size_mb=256 if quick else 1024, baseline_mb=32, log=log, from_folder=not quick
            )
        )
    if "batches" in chosen:
        from bench import batches

        log("batch status reads...")
        sections.append(batches.run(members=2_000 if quick else 10_000, log=log))
    elapsed = time.monotonic() - started
    print(
        f"bench {'--quick ' if quick else ''}on {platform.node()}: {os.cpu_count()} cores, "
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s\n"
    )
    print(table(sections, markdown=args.markdown))


if __name__ == "__main__":
    main()
