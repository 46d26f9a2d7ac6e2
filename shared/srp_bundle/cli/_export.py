"""`export`: a manifest of completed renders, and an HTML contact sheet of their thumbnails.

The contact sheet is self-contained: stills (thumbnail, poster or waveform) and looping
previews are downloaded into `<name>_files/` next to the HTML and referenced relatively,
so the page opens offline and can be zipped. A preview is an animated WebP: it plays in
any browser's `<img>`, no script needed. Renders with no picture at all (a 3D model, an
archive) get a card describing their files.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import html
import io
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from srp_bundle.cli._backend import Backend, guarded, select_records
from srp_bundle.cli._console import Progress
from srp_bundle.cli._inspect import json_default
from srp_bundle.task_state import State, TaskRecord, utc_now

CSV_COLUMNS = (
    "request_id",
    "task_id",
    "collection_id",
    "kind",
    "bucket",
    "path",
    "format",
    "width",
    "height",
    "bytes",
    "sha256",
)
_BROWSER_FORMATS = ("webp", "png", "jpeg", "avif")


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `export`."""
    parser = commands.add_parser(
        "export",
        parents=parents,
        help="manifest (CSV/JSON) of completed renders, and an HTML contact sheet",
        description=(
            "Write a manifest of the completed renders of a collection and/or batch: "
            "request_id, task_id, the render path and every derivative and other file with "
            "its sha256. --contact-sheet writes an HTML page of thumbnails that opens offline."
        ),
    )
    parser.add_argument("--collection-id", help="SRP collection UUID")
    parser.add_argument("--batch", help="the label given to `submit --batch`")
    parser.add_argument("--output", "-o", type=Path, help="manifest file (default: stdout)")
    parser.add_argument("--format", choices=("csv", "json"), help="default: by extension, else csv")
    parser.add_argument("--contact-sheet", type=Path, help="also write this HTML contact sheet")
    parser.add_argument(
        "--hash-renders",
        action="store_true",
        help="download each render to add its sha256 (records hold the derivatives' only)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the manifest and, if asked, the contact sheet."""
    manifest_format = args.format or (
        "json" if args.output is not None and args.output.suffix.lower() == ".json" else "csv"
    )
    backend = Backend(args)
    records = [
        record
        for record in select_records(
            backend.store, collection_id=args.collection_id, batch=args.batch
        )
        if record.state == State.COMPLETED
    ]
    renders_bucket_name = backend.settings.renders_bucket_name
    derivatives_bucket_name = backend.settings.derivatives_bucket_name
    render_hashes: dict[str, str] = {}
    if args.hash_renders:
        renders_bucket = backend.bucket("RENDERS_BUCKET")
        render_hashes = _hash_renders(renders_bucket, records)

    entries = [
        _manifest_entry(r, renders_bucket_name, derivatives_bucket_name, render_hashes)
        for r in records
    ]
    text = _as_json(entries) if manifest_format == "json" else _as_csv(entries)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"manifest: {args.output} ({len(entries)} completed renders)", file=sys.stderr)

    missing = 0
    if args.contact_sheet is not None:
        derivatives_bucket = backend.bucket("DERIVATIVES_BUCKET")
        missing = write_contact_sheet(args.contact_sheet, records, derivatives_bucket)
        print(f"contact sheet: {args.contact_sheet} ({len(records) - missing} thumbnails)")
    return 1 if missing else 0


def _render_path(record: TaskRecord) -> str | None:
    return record.render_path or next(iter(record.output_files), None)


def _manifest_entry(
    record: TaskRecord,
    renders_bucket_name: str | None,
    derivatives_bucket_name: str | None,
    render_hashes: dict[str, str],
) -> dict[str, Any]:
    render_path = _render_path(record)
    return {
        "request_id": record.request_id,
        "task_id": record.task_id,
        "collection_id": record.collection_id,
        "metadata": record.metadata,
        "render": {
            "bucket": renders_bucket_name,
            "path": render_path,
            "sha256": render_hashes.get(render_path or ""),
        },
        "derivatives": [{"bucket": derivatives_bucket_name, **d} for d in record.derivatives],
        "other_files": [{"bucket": renders_bucket_name, **f} for f in record.other_files],
    }


def _as_json(entries: list[dict[str, Any]]) -> str:
    document = {"generated_at": utc_now().isoformat(), "renders": entries}
    return json.dumps(document, indent=2, sort_keys=True, default=json_default) + "\n"


def _as_csv(entries: list[dict[str, Any]]) -> str:
    """One line per file: the render, each derivative, each other file of the folder."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for entry in entries:
        common = {k: entry[k] for k in ("request_id", "task_id", "collection_id")}
        writer.writerow({**common, "kind": "render", **entry["render"]})
        for derivative in entry["derivatives"]:
            writer.writerow({**common, "kind": "derivative", **derivative})
        for other in entry["other_files"]:
            writer.writerow(
                {**common, "kind": "file", "format": other.get("content_type"), **other}
            )
    return buffer.getvalue()


def _hash_renders(renders_bucket: Any, records: list[TaskRecord]) -> dict[str, str]:
    hashes: dict[str, str] = {}
    progress = Progress("hash renders", len(records))
    for record in records:
        path = _render_path(record)
        if path:
            data = guarded("the renders bucket", renders_bucket.blob(path).download_as_bytes)
            hashes[path] = hashlib.sha256(data).hexdigest()
        progress.advance()
    progress.finish()
    return hashes


_STILL_ROLES = ("poster", "thumbnail", "waveform")


def thumbnail(record: TaskRecord) -> dict[str, Any] | None:
    """The smallest still a browser can show (a poster first, then a thumbnail), or None."""
    for role in _STILL_ROLES:
        candidates = [
            d
            for d in record.derivatives
            if d.get("format") in _BROWSER_FORMATS and d.get("role", "thumbnail") == role
        ]
        if candidates:
            return min(candidates, key=lambda d: int(d.get("width") or 0))
    return None


def preview(record: TaskRecord) -> dict[str, Any] | None:
    """The render's looping preview (an animated WebP), or None."""
    return next((d for d in record.derivatives if d.get("role") == "preview"), None)


def write_contact_sheet(path: Path, records: list[TaskRecord], derivatives_bucket: Any) -> int:
    """Write the page, its stills and previews; return how many pictured records lack a still."""
    folder = path.with_name(f"{path.stem}_files")
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    missing = 0
    progress = Progress("thumbnails", len(records))

    def fetch(derivative: dict[str, Any], name: str) -> str:
        extension = Path(derivative["path"]).suffix or ".img"
        local = folder / f"{name}{extension}"
        blob = derivatives_bucket.blob(derivative["path"])
        guarded("the derivatives bucket", functools.partial(blob.download_to_filename, str(local)))
        return quote(f"{folder.name}/{local.name}")

    for record in records:
        progress.advance()
        kinds = sorted({str(f.get("kind")) for f in record.files}) or ["image"]
        caption = [record.request_id, f"task {record.task_id}", " + ".join(kinds)]
        caption += [f"{k}: {v}" for k, v in sorted((record.metadata or {}).items())]
        still, moving = thumbnail(record), preview(record)
        pictures = []
        if still is not None:
            source = fetch(still, record.request_id)
            pictures.append(
                f'<a href="{source}"><img class="still" src="{source}" loading="lazy" '
                f'width="{int(still.get("width") or 0)}" '
                f'height="{int(still.get("height") or 0)}" '
                f'alt="{html.escape(record.request_id)}"></a>'
            )
        elif any(f.get("kind") in ("image", "video", "audio") for f in record.files) or (
            not record.files
        ):
            missing += 1
            continue
        if moving is not None:
            source = fetch(moving, f"{record.request_id}-preview")
            pictures.append(
                f'<img class="preview" src="{source}" loading="lazy" '
                f'width="{int(moving.get("width") or 0)}" '
                f'height="{int(moving.get("height") or 0)}" '
                f'alt="preview of {html.escape(record.request_id)}">'
            )
        if not pictures:
            pictures.append(f'<div class="card">{_describe_files(record)}</div>')
        figures.append(
            f'<figure data-request="{html.escape(record.request_id)}" '
            f'data-kinds="{html.escape(" ".join(kinds))}">{"".join(pictures)}'
            f"<figcaption>{'<br>'.join(html.escape(str(line)) for line in caption)}"
            "</figcaption></figure>"
        )
    progress.finish()
    title = f"Contact sheet: {len(figures)} renders"
    path.write_text(_PAGE.format(title=html.escape(title), figures="\n".join(figures)))
    return missing


def _describe_files(record: TaskRecord) -> str:
    """One line per file: name, kind and what its description counts (meshes, ...)."""
    lines = []
    for file in record.files:
        name = str(file.get("path", "")).rsplit("/", 1)[-1]
        counts = ", ".join(
            f"{file[key]} {key}" for key in ("meshes", "nodes", "materials") if key in file
        )
        details = f"{file.get('format')}" + (f": {counts}" if counts else "")
        lines.append(f"{html.escape(name)} ({html.escape(details)})")
    return "<br>".join(lines)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; background: #fafafa; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; padding: .5rem; background: #fff; border: 1px solid #ddd; }}
img {{ width: 100%; height: auto; display: block; image-rendering: auto; }}
img.preview {{ margin-top: .25rem; }}
.card {{ font-size: .8rem; padding: 1rem .5rem; background: #eef; min-height: 4rem; }}
figcaption {{ font-size: .75rem; word-break: break-all; margin-top: .25rem; }}
</style>
</head>
<body>
<h1>{title}</h1>
<main>
{figures}
</main>
</body>
</html>
"""
