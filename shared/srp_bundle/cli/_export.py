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
import json
import shutil
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from srp_bundle.cli._backend import Backend, guarded, member_pages
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
    """Write the manifest and, if asked, the contact sheet, a page of records at a time."""
    manifest_format = args.format or (
        "json" if args.output is not None and args.output.suffix.lower() == ".json" else "csv"
    )
    backend = Backend(args)
    pages = member_pages(
        backend.store, collection_id=args.collection_id, batch=args.batch, state=State.COMPLETED
    )
    renders_bucket_name = backend.settings.renders_bucket_name
    derivatives_bucket_name = backend.settings.derivatives_bucket_name
    renders_bucket = backend.bucket("RENDERS_BUCKET") if args.hash_renders else None
    sheet = None
    if args.contact_sheet is not None:
        sheet = ContactSheet(args.contact_sheet, backend.bucket("DERIVATIVES_BUCKET"))
    output = (
        sys.stdout if args.output is None else args.output.open("w", encoding="utf-8", newline="")
    )
    manifest = ManifestWriter(output, manifest_format)
    exported = 0
    try:
        for page in pages:
            hashes = _hash_renders(renders_bucket, page) if renders_bucket is not None else {}
            for record in page:
                manifest.write(
                    _manifest_entry(record, renders_bucket_name, derivatives_bucket_name, hashes)
                )
                if sheet is not None:
                    sheet.add(record)
            exported += len(page)
        manifest.close()
    finally:
        if output is not sys.stdout:
            output.close()
    if args.output is not None:
        print(f"manifest: {args.output} ({exported} completed renders)", file=sys.stderr)
    missing = 0
    if sheet is not None:
        missing = sheet.close()
        print(f"contact sheet: {args.contact_sheet} ({exported - missing} thumbnails)")
    return 1 if missing else 0


class ManifestWriter:
    """The manifest as CSV lines or one JSON document, written entry by entry."""

    def __init__(self, output: TextIO, manifest_format: str) -> None:
        self.output = output
        self.format = manifest_format
        self.entries = 0
        if manifest_format == "json":
            generated = json.dumps(utc_now().isoformat())
            output.write(f'{{\n  "generated_at": {generated},\n  "renders": [')
        else:
            self.csv = csv.DictWriter(output, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            self.csv.writeheader()

    def write(self, entry: dict[str, Any]) -> None:
        """One completed render."""
        if self.format == "json":
            text = json.dumps(entry, indent=2, sort_keys=True, default=json_default)
            separator = "," if self.entries else ""
            self.output.write(separator + "\n" + textwrap.indent(text, "    "))
        else:
            _write_csv_entry(self.csv, entry)
        self.entries += 1

    def close(self) -> None:
        """End the document."""
        if self.format == "json":
            self.output.write("\n  ]\n}\n" if self.entries else "]\n}\n")


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


def _write_csv_entry(writer: csv.DictWriter[str], entry: dict[str, Any]) -> None:
    """One line per file: the render, each derivative, each other file of the folder."""
    common = {k: entry[k] for k in ("request_id", "task_id", "collection_id")}
    writer.writerow({**common, "kind": "render", **entry["render"]})
    for derivative in entry["derivatives"]:
        writer.writerow({**common, "kind": "derivative", **derivative})
    for other in entry["other_files"]:
        writer.writerow({**common, "kind": "file", "format": other.get("content_type"), **other})


def _hash_renders(renders_bucket: Any, records: list[TaskRecord]) -> dict[str, str]:
    """sha256 of each record's render (one page of records)."""
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


def write_contact_sheet(path: Path, records: Iterable[TaskRecord], derivatives_bucket: Any) -> int:
    """Write the page, its stills and previews; return how many pictured records lack a still."""
    sheet = ContactSheet(path, derivatives_bucket)
    for record in records:
        sheet.add(record)
    return sheet.close()


class ContactSheet:
    """The HTML page, written figure by figure (flat memory for any number of renders)."""

    def __init__(self, path: Path, derivatives_bucket: Any) -> None:
        self.path = path
        self.bucket = derivatives_bucket
        self.folder = path.with_name(f"{path.stem}_files")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.figures = 0
        self.missing = 0
        # The figures go to a side file first: the page's title counts them.
        self.body = self.path.with_name(f".{self.path.name}.figures").open("w", encoding="utf-8")

    def _fetch(self, derivative: dict[str, Any], name: str) -> str:
        extension = Path(derivative["path"]).suffix or ".img"
        local = self.folder / f"{name}{extension}"
        blob = self.bucket.blob(derivative["path"])
        guarded("the derivatives bucket", functools.partial(blob.download_to_filename, str(local)))
        return quote(f"{self.folder.name}/{local.name}")

    def add(self, record: TaskRecord) -> None:
        """One render's figure (or count it missing: a picture kind without a still)."""
        kinds = sorted({str(f.get("kind")) for f in record.files}) or ["image"]
        caption = [record.request_id, f"task {record.task_id}", " + ".join(kinds)]
        caption += [f"{k}: {v}" for k, v in sorted((record.metadata or {}).items())]
        still, moving = thumbnail(record), preview(record)
        pictures = []
        if still is not None:
            source = self._fetch(still, record.request_id)
            pictures.append(
                f'<a href="{source}"><img class="still" src="{source}" loading="lazy" '
                f'width="{int(still.get("width") or 0)}" '
                f'height="{int(still.get("height") or 0)}" '
                f'alt="{html.escape(record.request_id)}"></a>'
            )
        elif any(f.get("kind") in ("image", "video", "audio") for f in record.files) or (
            not record.files
        ):
            self.missing += 1
            return
        if moving is not None:
            source = self._fetch(moving, f"{record.request_id}-preview")
            pictures.append(
                f'<img class="preview" src="{source}" loading="lazy" '
                f'width="{int(moving.get("width") or 0)}" '
                f'height="{int(moving.get("height") or 0)}" '
                f'alt="preview of {html.escape(record.request_id)}">'
            )
        if not pictures:
            pictures.append(f'<div class="card">{_describe_files(record)}</div>')
        self.body.write(
            f'<figure data-request="{html.escape(record.request_id)}" '
            f'data-kinds="{html.escape(" ".join(kinds))}">{"".join(pictures)}'
            f"<figcaption>{'<br>'.join(html.escape(str(line)) for line in caption)}"
            "</figcaption></figure>\n"
        )
        self.figures += 1

    def close(self) -> int:
        """Write the page around the figures; return how many records lacked a still."""
        self.body.close()
        side = Path(self.body.name)
        title = html.escape(f"Contact sheet: {self.figures} renders")
        head, tail = _PAGE.split("{figures}")
        with self.path.open("w", encoding="utf-8") as page, side.open(encoding="utf-8") as body:
            page.write(head.format(title=title))
            shutil.copyfileobj(body, page)
            page.write(tail)
        side.unlink()
        return self.missing


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
