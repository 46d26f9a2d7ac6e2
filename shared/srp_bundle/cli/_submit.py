"""`submit`: publish render requests from a JSONL or CSV file, resumably.

Every row gets a request id: its own `request_id`, else `<prefix>-<line>` (the prefix is the
file's stem unless `--id-prefix` says otherwise). The same file therefore always produces
the same ids, and a second run skips every id that already has a record.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srp_bundle.batches import BatchStore, check_batch_id
from srp_bundle.cli._backend import (
    RENDER_REQUESTS_TOPIC,
    Backend,
    BackendUnavailableError,
    UsageError,
    existing_request_ids,
)
from srp_bundle.cli._console import Progress, RateLimiter
from srp_bundle.errors import InvalidMessageError
from srp_bundle.json_limits import parse_json_text
from srp_bundle.render_requests import MAX_MESSAGE_DEPTH, parse_render_request
from srp_bundle.srp_models import encode_json

PUBLISH_TIMEOUT_SECONDS = 60.0
_MAX_REPORTED_ERRORS = 20
_IN_FLIGHT = 100
_ROW_KEYS = {"input_data", "request_id", "priority", "metadata"}
_NOT_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._~-]+")


class InputFileError(UsageError):
    """The input file has rows that cannot become render requests; nothing was published."""


@dataclass(frozen=True)
class Row:
    """One render request read from the input file."""

    line: int
    request_id: str
    body: dict[str, Any]


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `submit`."""
    parser = commands.add_parser(
        "submit",
        parents=parents,
        help="publish render requests from a JSONL or CSV file",
        description=(
            "Publish one render request per row of FILE to the render-requests topic. "
            "A JSONL line is the input_data object (an optional request_id key is the "
            "request id), or {input_data, request_id?, priority?, metadata?}. A CSV has a "
            "header; each column is an input_data field, an empty cell is left out, an "
            "optional request_id column is the request id. Rows without a request id get "
            "<file stem>-<line number>, so re-running the same file is idempotent: ids "
            "that already have a record are skipped."
        ),
    )
    parser.add_argument("file", type=Path, help="JSONL (.jsonl, .ndjson) or CSV (.csv) file")
    parser.add_argument("--collection-id", required=True, help="SRP collection UUID")
    parser.add_argument(
        "--batch",
        help="batch id: every row gets it as batch_id, and the batch is declared with "
        "total = the rows of FILE (status --batch)",
    )
    parser.add_argument("--priority", type=int, help="priority for rows that set none")
    parser.add_argument("--id-prefix", help="prefix of generated request ids (default: stem)")
    parser.add_argument("--format", choices=("jsonl", "csv"), help="default: by extension")
    parser.add_argument("--rate", type=positive_float, help="publish at most N per second")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and count, publish nothing"
    )
    parser.set_defaults(handler=run)


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def check_collection_id(value: str) -> str:
    """The collection id flag, which must be a UUID."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise UsageError(f"--collection-id must be a UUID, got {value!r}") from None
    return value


def run(args: argparse.Namespace) -> int:
    """Validate the whole file, skip recorded ids, publish the rest, print a summary."""
    check_collection_id(args.collection_id)
    if args.batch:
        try:
            check_batch_id(args.batch, "--batch")
        except InvalidMessageError as refused:
            raise UsageError(str(refused)) from None
    rows = read_rows(
        args.file,
        collection_id=args.collection_id,
        batch=args.batch,
        priority=args.priority,
        id_prefix=args.id_prefix,
        file_format=args.format,
    )
    backend = Backend(args)
    topic_path = None if args.dry_run else backend.topic_path(RENDER_REQUESTS_TOPIC)
    recorded = existing_request_ids(backend.store, [row.request_id for row in rows])
    to_publish = [row for row in rows if row.request_id not in recorded]
    skipped = len(rows) - len(to_publish)
    if args.dry_run:
        print(
            f"dry run: {len(rows)} rows valid; would publish {len(to_publish)}, "
            f"skip {skipped} already recorded"
        )
        for row in to_publish[:10]:
            print(f"  {row.request_id}")
        if len(to_publish) > 10:
            print(f"  ... and {len(to_publish) - 10} more")
        return 0

    assert topic_path is not None
    if args.batch:
        declare_batch(backend, topic_path, args.batch, len(rows))
    if not to_publish:
        print(f"submitted {args.file}: nothing to publish, {skipped} skipped (already recorded)")
        return 0
    published, failures = publish_rows(backend.publisher, topic_path, to_publish, args.rate)
    batch_note = f" (batch {args.batch})" if args.batch else ""
    print(
        f"submitted {args.file}{batch_note}: {published} published, "
        f"{skipped} skipped (already recorded), {len(failures)} failed"
    )
    for row, error in failures[:_MAX_REPORTED_ERRORS]:
        print(f"  line {row.line} {row.request_id}: {error}", file=sys.stderr)
    if failures:
        print("re-run the same command to publish the rest", file=sys.stderr)
    return 1 if failures else 0


def declare_batch(backend: Backend, topic_path: str, batch_id: str, total: int) -> None:
    """Publish the batch's declaration (total = the file's rows); refuse a conflicting one
    here, before anything is published, with the total already declared."""
    declared = BatchStore(backend.store).get(batch_id)
    if declared is not None and declared.total == total:
        return  # declared already (a re-run of the same file)
    if declared is not None:
        raise UsageError(
            f"batch {batch_id!r} is declared with total {declared.total}, and this file has "
            f"{total} rows: use another --batch for another set of items"
        )
    data = encode_json({"batch": {"batch_id": batch_id, "total": total}})
    try:
        backend.publisher.publish(topic_path, data).result(timeout=PUBLISH_TIMEOUT_SECONDS)
    except Exception as error:
        raise BackendUnavailableError(f"cannot declare batch {batch_id!r}: {error}") from error


def publish_rows(
    publisher: Any, topic_path: str, rows: list[Row], rate: float | None
) -> tuple[int, list[tuple[Row, str]]]:
    """Publish rows with at most `_IN_FLIGHT` unconfirmed; return (published, failures)."""
    progress = Progress("submit", len(rows))
    limiter = RateLimiter(rate)
    pending: deque[tuple[Row, Future[str]]] = deque()
    published = 0
    failures: list[tuple[Row, str]] = []

    def settle(row: Row, future: Future[str]) -> None:
        nonlocal published
        try:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
            published += 1
        except Exception as error:  # any failure is reported per row; the run goes on
            failures.append((row, str(error).splitlines()[0] if str(error) else repr(error)))
        progress.advance(note=f"failed {len(failures)}" if failures else "")

    for row in rows:
        limiter.wait()
        data = encode_json(row.body)
        pending.append((row, publisher.publish(topic_path, data, request_id=row.request_id)))
        if len(pending) >= _IN_FLIGHT:
            settle(*pending.popleft())
    while pending:
        settle(*pending.popleft())
    progress.finish()
    return published, failures


# ---- reading the input file ---------------------------------------------------------


def read_rows(
    path: Path,
    *,
    collection_id: str,
    batch: str | None = None,
    priority: int | None = None,
    id_prefix: str | None = None,
    file_format: str | None = None,
) -> list[Row]:
    """Every row of the file as a validated render request; raise naming each bad line."""
    file_format = file_format or _format_of(path)
    prefix = id_prefix if id_prefix is not None else _NOT_ID_CHARACTERS.sub("-", path.stem)[:100]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(f"cannot read {path}: {error}") from None
    raw_rows = _csv_rows(path, text) if file_format == "csv" else _jsonl_rows(path, text)

    rows: list[Row] = []
    errors: list[str] = []
    first_line_of: dict[str, int] = {}
    for line, fields_or_error in raw_rows:
        if isinstance(fields_or_error, str):
            errors.append(f"{path}:{line}: {fields_or_error}")
            continue
        body = {"collection_id": collection_id, **fields_or_error}
        body.setdefault("request_id", f"{prefix}-{line}")
        if priority is not None:
            body.setdefault("priority", priority)
        if batch:
            body["batch_id"] = batch
        try:
            request = parse_render_request(json.dumps(body).encode(), message_id="")
        except InvalidMessageError as error:
            errors.append(f"{path}:{line}: {error}")
            continue
        if request.request_id in first_line_of:
            errors.append(
                f"{path}:{line}: request_id {request.request_id!r} is already used on line "
                f"{first_line_of[request.request_id]}"
            )
            continue
        first_line_of[request.request_id] = line
        rows.append(Row(line, request.request_id, body))
    if errors:
        shown = "\n  ".join(errors[:_MAX_REPORTED_ERRORS])
        more = len(errors) - _MAX_REPORTED_ERRORS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise InputFileError(
            f"{len(errors)} bad row(s) in {path}, nothing published:\n  {shown}{tail}"
        )
    if not rows:
        raise InputFileError(f"{path} has no rows")
    return rows


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise InputFileError(f"cannot tell the format of {path}: name it .jsonl or .csv, or --format")


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any] | str]]:
    rows: list[tuple[int, dict[str, Any] | str]] = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            # The same linear-time depth check as the functions: a hostile file (an asset
            # pack's manifest, a generated batch) can neither hang nor crash the CLI.
            value = parse_json_text(content, what="row", max_depth=MAX_MESSAGE_DEPTH)
        except InvalidMessageError as error:
            rows.append((line, str(error)))
            continue
        if not isinstance(value, dict):
            rows.append((line, f"expected a JSON object, got {type(value).__name__}"))
            continue
        if isinstance(value.get("input_data"), dict):
            unknown = sorted(set(value) - _ROW_KEYS)
            if unknown:
                rows.append((line, f"unknown key(s) beside input_data: {', '.join(unknown)}"))
                continue
            rows.append((line, value))
            continue
        fields = dict(value)
        request_id = fields.pop("request_id", None)
        row: dict[str, Any] = {"input_data": fields}
        if request_id is not None:
            row["request_id"] = request_id
        rows.append((line, row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as error:
        return [(1, f"bad CSV header: {error}")]
    header = [name.strip() for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates or "" in header:
        problem = f"duplicate column(s) {', '.join(duplicates)}" if duplicates else "empty name"
        return [(1, f"bad CSV header: {problem}")]
    if not set(header) - {"request_id"}:
        return [(1, "the CSV header names no input_data column")]
    rows: list[tuple[int, dict[str, Any] | str]] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            rows.append((reader.line_num, f"bad CSV: {error}"))
            break
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            rows.append((line, f"{len(cells)} values for {len(header)} columns"))
            continue
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=False)}
        request_id = values.pop("request_id", "")
        row: dict[str, Any] = {"input_data": {k: v for k, v in values.items() if v}}
        if request_id:
            row["request_id"] = request_id
        rows.append((line, row))
    return rows
