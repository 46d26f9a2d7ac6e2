"""Derivatives in Cloud Storage: written once per name, read back on retry; sources downloaded.

Object names in DERIVATIVES_BUCKET are deterministic and bound to the source file and
its generation:

    derivatives/<COLLECTION_NAME>/<TASK_UUID>/<SOURCE_FILE>/g<SOURCE_GENERATION>/<NAME>.<EXT>

e.g. `derivatives/my-collection/6f1c.../render.png/g1712345678901234/512.webp`, or
`.../render.mp4/g.../poster-512.webp` and `.../render.mp4/g.../preview-320.webp`
(NAME is the size for a thumbnail, `<role>-<size>` otherwise; EXT is png, webp, jpg or
avif; SOURCE_FILE is the file's path inside the task folder as one percent-encoded
segment, e.g. `frames%2Fstill.png`).
A name therefore always means the same pixels of the same source, so:
- each object is written with `if_generation_match=0`; when it already exists (412) a
  previous attempt wrote it, and its custom metadata is read back instead: a redelivered
  event writes nothing and reports the same metadata;
- objects are immutable, hence `Cache-Control: public, max-age=31536000, immutable`;
- a newer source generation gets new names; `delete_superseded_derivatives` then removes
  that file's older generations' objects (never newer ones, never another file's, so
  out-of-order events are harmless).
Changing encoder settings does not rename objects: an existing name keeps its first bytes.

Custom metadata on each derivative: `request_id` (when known), `task_id`, `source_bucket`,
`source_object`, `source_generation`, `sha256`, `width`, `height`, `format`, `role`,
and `frames` for animations.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from google.api_core import exceptions as api_exceptions

from srp_bundle.derivatives import EncodedDerivative, ImageInfo
from srp_bundle.errors import DerivativeWriteConflictError, SourceTooLargeError

DERIVATIVES_PREFIX = "derivatives"
CACHE_CONTROL = "public, max-age=31536000, immutable"
DEFAULT_MAX_SOURCE_BYTES = 256 * 1024 * 1024
_WRITE_ATTEMPTS = 3
_GENERATION_FOLDER = re.compile(r"^g(\d+)$")
_METADATA_KEYS = ("sha256", "width", "height", "format")


@dataclass(frozen=True)
class StoredDerivative:
    """A derivative as it exists in the bucket; `written` is False when a retry found it there."""

    path: str
    info: ImageInfo
    object_generation: int
    written: bool
    source: str = ""
    role: str = "thumbnail"

    def as_record(self) -> dict[str, Any]:
        """The design's `derivatives` item, with the file it came from and its role."""
        return {**self.info.as_record(self.path), "source": self.source, "role": self.role}


def derivative_folder(collection_name: str, task_uuid: str) -> str:
    """The folder of every derivative generation of one task, ending with `/`."""
    for label, value in (("collection name", collection_name), ("task uuid", task_uuid)):
        if not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{label} {value!r} cannot be part of an object name")
    return f"{DERIVATIVES_PREFIX}/{collection_name}/{task_uuid}/"


def source_folder(collection_name: str, task_uuid: str, source_object_name: str) -> str:
    """The folder of every derivative generation of one source file, ending with `/`."""
    # The path inside the task's folder, one segment however deep: frames/a.png -> frames%2Fa.png
    _, found, relative = source_object_name.partition(f"/{task_uuid}/")
    file_name = relative if found else source_object_name.rsplit("/", 1)[-1]
    if file_name in ("", ".", ".."):
        raise ValueError(f"source file name {file_name!r} cannot be part of an object name")
    return f"{derivative_folder(collection_name, task_uuid)}{quote(file_name, safe='')}/"


def derivative_object_name(
    collection_name: str,
    task_uuid: str,
    source_generation: int,
    derivative: EncodedDerivative,
    source_object_name: str = "render.png",
) -> str:
    """`derivatives/<COLLECTION_NAME>/<TASK_UUID>/<SOURCE_FILE>/g<generation>/<name>.<ext>`."""
    folder = source_folder(collection_name, task_uuid, source_object_name)
    name = str(derivative.spec.size)
    if derivative.role != "thumbnail":
        name = f"{derivative.role}-{name}"
    return f"{folder}g{source_generation}/{name}.{derivative.file_extension}"


def download_render_to_file(
    renders_bucket: Any,
    name: str,
    generation: int,
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
) -> bool:
    """Write exactly this generation of a render to `path`; False if it no longer exists.

    Raises SourceTooLargeError above `max_bytes`, before downloading anything.
    """
    blob = renders_bucket.get_blob(name, generation=generation)
    if blob is None:
        return False
    if blob.size is not None and int(blob.size) > max_bytes:
        raise SourceTooLargeError(f"{name} is {blob.size} bytes, above the limit of {max_bytes}")
    try:
        blob.download_to_filename(os.fspath(path), if_generation_match=generation)
    except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
        return False
    if os.path.getsize(path) > max_bytes:
        raise SourceTooLargeError(f"{name} grew above the limit of {max_bytes} bytes")
    return True


def store_derivatives(
    derivatives_bucket: Any,
    derivatives: Sequence[EncodedDerivative],
    *,
    collection_name: str,
    task_id: str,
    source_bucket_name: str,
    source_object_name: str,
    source_generation: int,
    request_id: str | None = None,
    cache_control: str = CACHE_CONTROL,
) -> list[StoredDerivative]:
    """Write each derivative once; on a retry, report what the first attempt wrote.

    `task_id` is SRP's task UUID: it names the derivative folder and is kept in metadata.
    """
    context = {
        "task_id": task_id,
        "source_bucket": source_bucket_name,
        "source_object": source_object_name,
        "source_generation": str(source_generation),
    }
    if request_id:
        context["request_id"] = request_id
    stored = []
    for derivative in derivatives:
        name = derivative_object_name(
            collection_name, task_id, source_generation, derivative, source_object_name
        )
        metadata = {
            **context,
            "sha256": derivative.info.sha256,
            "width": str(derivative.info.width),
            "height": str(derivative.info.height),
            "format": derivative.info.format,
            "role": derivative.role,
        }
        if derivative.info.frames is not None:
            metadata["frames"] = str(derivative.info.frames)
        written = _write_once(derivatives_bucket, name, derivative, metadata, cache_control)
        stored.append(
            StoredDerivative(
                written.path,
                written.info,
                written.object_generation,
                written.written,
                source=source_object_name,
                role=derivative.role,
            )
        )
    return stored


def _write_once(
    bucket: Any,
    name: str,
    derivative: EncodedDerivative,
    metadata: dict[str, str],
    cache_control: str,
) -> StoredDerivative:
    expected_generation = 0  # 0: only if no live object has this name
    for _ in range(_WRITE_ATTEMPTS):
        blob = bucket.blob(name)
        blob.cache_control = cache_control
        blob.metadata = metadata
        try:
            blob.upload_from_string(
                derivative.data,
                content_type=derivative.content_type,
                if_generation_match=expected_generation,
            )
            return StoredDerivative(name, derivative.info, int(blob.generation), written=True)
        except api_exceptions.PreconditionFailed:
            pass
        existing = bucket.get_blob(name)
        if existing is None:
            expected_generation = 0  # deleted in between: write it ourselves
            continue
        info = _info_from_metadata(existing)
        if info is not None:
            return StoredDerivative(name, info, int(existing.generation), written=False)
        # Not written by us (no metadata of ours): replace exactly that version, no other.
        expected_generation = int(existing.generation)
    raise DerivativeWriteConflictError(f"{name} kept changing while being written")


def _info_from_metadata(blob: Any) -> ImageInfo | None:
    metadata = blob.metadata or {}
    if not all(metadata.get(key) for key in _METADATA_KEYS) or blob.size is None:
        return None
    try:
        return ImageInfo(
            width=int(metadata["width"]),
            height=int(metadata["height"]),
            format=metadata["format"],
            bytes=int(blob.size),
            sha256=metadata["sha256"],
            frames=int(metadata["frames"]) if metadata.get("frames") else None,
        )
    except ValueError:
        return None


def delete_superseded_derivatives(
    derivatives_bucket: Any,
    collection_name: str,
    task_uuid: str,
    source_generation: int,
    source_object_name: str = "render.png",
) -> list[str]:
    """Delete derivatives of older generations of this source file; return their names.

    Newer generations are never touched, so a late event for an old render is harmless.
    """
    folder = source_folder(collection_name, task_uuid, source_object_name)
    deleted = []
    for blob in derivatives_bucket.list_blobs(prefix=folder):
        generation_folder = blob.name[len(folder) :].split("/", 1)[0]
        match = _GENERATION_FOLDER.match(generation_folder)
        if match is None or int(match.group(1)) >= source_generation:
            continue
        try:
            blob.delete(if_generation_match=blob.generation)
        except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
            continue  # already gone, or replaced: not ours to delete any more
        deleted.append(blob.name)
    return deleted
