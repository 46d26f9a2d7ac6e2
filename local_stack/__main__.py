"""`python -m local_stack up|demo`: the whole pipeline on this machine.

`up` starts the stack and keeps it running until Ctrl-C, printing the endpoints and the
environment variables that point the CLI or tests at it. `demo` starts it, publishes a
handful of render requests for the sample collection, shows their progress, prints a
summary and copies the renders and derivatives to ./local-output/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from local_stack.emulators import EmulatorSetupError
from local_stack.processes import ProcessStartError
from local_stack.srp_emulator import MEDIA_SAMPLES, SAMPLE_COLLECTION_UID, SEED_EXAMPLE_INPUT
from local_stack.stack import LocalStack, StackConfig, StackError

STATE_ORDER = ("received", "submitted", "rendering", "rendered", "completed", "failed")

# The seed's example input first, then variations over the sample collection's traits.
DEMO_INPUTS: tuple[dict[str, str], ...] = (
    SEED_EXAMPLE_INPUT,
    {"bg": "Plain.png", "pants": "baggy", "pants_color": "#ff8800", "shoe": "2"},
    {"bg": "Stripes.png", "pants": "shorts", "shoe": "5", "shoe_color": "#00aaff"},
    {"bg": "Checker.png", "pants": "jeans", "pants_color": "#222222", "platform": "common"},
    {"bg": "RareFlare3.png", "pants": "stepper", "pants_color": "#00ff88", "platform": "rare"},
)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack and keep it running (Ctrl-C stops it)")
    demo = commands.add_parser("demo", help="start the stack, render a few requests, stop")
    for command in (up, demo):
        command.add_argument("--project", default="srp-local", help="GOOGLE_CLOUD_PROJECT")
        command.add_argument("--render-size", type=int, default=2048, help="SRP render pixels")
        command.add_argument(
            "--verbose", action="store_true", help="stream every child process's output"
        )
    demo.add_argument("--count", type=int, default=len(DEMO_INPUTS), help="requests to publish")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for all")
    demo.add_argument("--output", type=Path, default=Path("local-output"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `up` or `demo`; every process is stopped on exit, Ctrl-C, SIGTERM or failure."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["LOCAL_STACK_VERBOSE"] = "1"
    signal.signal(signal.SIGTERM, _interrupt)
    config = StackConfig(project_id=args.project, render_size=args.render_size)
    stack = LocalStack(config)
    try:
        print("starting the local stack ...", flush=True)
        stack.start()
        if args.command == "up":
            return _serve(stack)
        return _demo(stack, count=args.count, timeout=args.timeout, output=args.output)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (EmulatorSetupError, ProcessStartError, StackError, TimeoutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        print("stopping the local stack ...", flush=True)
        stack.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _print_endpoints(stack: LocalStack) -> None:
    described = stack.describe()
    print("\nendpoints:")
    for name in ("firestore", "pubsub", "gcs", "srp"):
        print(f"  {name:<20} {described[name]}")
    for name, url in described["functions"].items():
        print(f"  {name:<20} {url}")
    print("topics:")
    for name, topic in described["topics"].items():
        print(f"  {name:<20} {topic}")
    print(f"buckets: {', '.join(described['buckets'])}")
    print("\nenvironment (paste into a shell to point the CLI or tests at this stack):")
    for name, value in sorted(stack.env.items()):
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()


def _serve(stack: LocalStack) -> int:
    _print_endpoints(stack)
    print("\nthe stack is up; Ctrl-C stops it", flush=True)
    while True:
        dead = [process for process in stack.processes if not process.is_running()]
        if dead:
            for process in dead:
                tail = "\n".join(list(process.output)[-20:])
                name = getattr(process, "name", "srp-emulator")
                print(f"error: {name} exited; its last output:\n{tail}", file=sys.stderr)
            return 1
        time.sleep(1.0)


def _demo(stack: LocalStack, *, count: int, timeout: float, output: Path) -> int:
    _print_endpoints(stack)
    inputs = [DEMO_INPUTS[number % len(DEMO_INPUTS)] for number in range(count)]
    # The requests are one batch: declared first, with its total, like `submit --batch`.
    batch_id = f"demo-{uuid.uuid4().hex[:8]}"
    total = count + len(MEDIA_SAMPLES)
    stack.publish_raw(json.dumps({"batch": {"batch_id": batch_id, "total": total}}).encode())
    request_ids = [
        stack.publish_request(
            SAMPLE_COLLECTION_UID,
            input_data,
            metadata={"token_id": str(number + 1)},
            batch_id=batch_id,
        )
        for number, input_data in enumerate(inputs)
    ]
    # One render of every other kind: a video (with a still), a sound, a 3D model.
    request_ids += [
        stack.publish_request(
            collection_uid, input_data, metadata={"token_id": f"{kind}-1"}, batch_id=batch_id
        )
        for kind, (collection_uid, input_data) in MEDIA_SAMPLES.items()
    ]
    print(
        f"\npublished {len(request_ids)} render requests as batch {batch_id}; progress:",
        flush=True,
    )
    started = time.monotonic()
    last_line = ""

    def show(current: dict[str, dict[str, Any] | None]) -> None:
        nonlocal last_line
        states = Counter((record or {}).get("state", "published") for record in current.values())
        line = "  ".join(
            f"{state} {states[state]}" for state in ("published", *STATE_ORDER) if states[state]
        )
        if line != last_line:
            print(f"  [{time.monotonic() - started:6.1f}s] {line}", flush=True)
            last_line = line

    records = stack.wait_for_states(request_ids, timeout=timeout, on_progress=show)
    _print_summary(request_ids, records)
    copied = _copy_outputs(stack, records.values(), output)
    print(f"\ncopied {copied} files to {output.resolve()}")
    sheet = _write_contact_sheet(stack, records.values(), output)
    print(f"contact sheet (posters, thumbnails, playing previews): {sheet.resolve()}")
    done = _batch_done(stack, batch_id, timeout=30.0)
    print(done or f"batch {batch_id}: no batch.completed yet", flush=True)
    events = Counter(event["type"] for event in stack.events())
    print("events: " + ", ".join(f"{kind} {number}" for kind, number in sorted(events.items())))
    finished = all(record.get("state") == "completed" for record in records.values())
    return 0 if finished and done else 1


def _batch_done(stack: LocalStack, batch_id: str, *, timeout: float) -> str | None:
    """The batch's done line, from its `batch.completed` event (waiting up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        for event in stack.events():  # every event seen so far
            data = event["data"]
            if event["type"] == "batch.completed" and data.get("batch_id") == batch_id:
                return (
                    f"batch {batch_id}: done, total {data['total']}, "
                    f"completed {data['completed']}, failed {data['failed']}"
                )
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def _print_summary(request_ids: Sequence[str], records: dict[str, dict[str, Any]]) -> None:
    rows = [("request", "task", "state", "output files (kind)", "derivative paths (role)")]
    for request_id in request_ids:
        record = records[request_id]
        derivatives = [
            f"{item['path']} ({item.get('role', 'thumbnail')})"
            for item in record.get("derivatives") or []
        ]
        files = [
            f"{str(item['path']).rsplit('/', 1)[-1]} ({item.get('kind')})"
            for item in record.get("files") or []
        ] or [record.get("render_path") or "-"]
        error = record.get("error") or {}
        rows.append(
            (
                request_id,
                record.get("task_id") or "-",
                record.get("state", "?") + (f" ({error.get('message')})" if error else ""),
                ", ".join(files),
                derivatives[0] if derivatives else "-",
            )
        )
        rows.extend(("", "", "", "", path) for path in derivatives[1:])
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    print()
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[4]
        )


def _copy_outputs(stack: LocalStack, records: Any, output: Path) -> int:
    copied = 0
    for record in records:
        outputs = [item["path"] for item in record.get("files") or []]
        paths = [
            (stack.config.renders_bucket, path) for path in outputs or [record.get("render_path")]
        ]
        paths += [
            (stack.config.derivatives_bucket, item["path"])
            for item in record.get("derivatives") or []
        ]
        for bucket, path in paths:
            if not path:
                continue
            target = output / bucket / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stack.download(bucket, path))
            copied += 1
    return copied


def _write_contact_sheet(stack: LocalStack, records: Any, output: Path) -> Path:
    """The CLI's contact sheet of the completed demo renders, next to the copied files."""
    from srp_bundle.cli._export import write_contact_sheet
    from srp_bundle.task_state import TaskRecord

    completed = [
        TaskRecord.from_document(record)
        for record in records
        if record and record.get("state") == "completed"
    ]
    sheet = output / "contact-sheet.html"
    output.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(sheet, completed, stack.bucket(stack.config.derivatives_bucket))
    return sheet


if __name__ == "__main__":
    sys.exit(main())
