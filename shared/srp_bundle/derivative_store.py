"""Derivatives in Cloud Storage: written once per name, read back on retry; other files described.

Object names in DERIVATIVES_BUCKET are deterministic and bound to the source generation:

    derivatives/<COLLECTION_NAME>/<TASK_UUID>/g<SOURCE_GENERATION>/<SIZE>.<EXT>

e.g. `derivatives/my-collection/6f1c.../g1712345678901234/512.webp` (EXT is png, webp, jpg
or avif). A name therefore always means the same pixels of the same source, so:
- each object is written with `if_generation_match=0`; when it already exists (412) a
  previous attempt wrote it, and its custom metadata is read back instead: a redelivered
  event writes nothing and reports the same metadata;
- objects are immutable, hence `Cache-Control: public, max-age=31536000, immutable`;
- a newer source generation gets new names; `delete_superseded_derivatives` then removes
  the older generations' objects (never newer ones, so out-of-order events are harmless).
Changing encoder settings does not rename objects: an existing name keeps its first bytes.

Custom metadata on each derivative: `request_id` (when known), `task_id`, `source_bucket`,
`source_object`, `source_generation`, `sha256`, `width`, `height`, `format`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as api_exceptions

from srp_bundle.derivatives import EncodedDerivative, ImageInfo
from srp_bundle.errors import DerivativeWriteConflictError, SourceTooLargeError

DERIVATIVES_PREFIX = "derivatives"
CACHE_CONTROL = "public, max-age=31536000, immutable"
DEFAULT_MAX_SOURCE_BYTES = 256 * 1024 * 1024
_WRITE_ATTEMPTS = 3
_GENERATION_FOLDER = re.compile(r"^g(\d+)$")
_METADATA_KEYS = ("sha256", "width", "height", "format")
# Render outputs that the standard library's table does not know.
_CONTENT_TYPES_BY_EXTENSION = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".usdz": "model/vnd.usdz+zip",
    ".exr": "image/x-exr",
}


@dataclass(frozen=True)
class StoredDerivative:
    """A derivative as it exists in the bucket; `written` is False when a retry found it there."""

    path: str
    info: ImageInfo
    object_generation: int
    written: bool

    def as_record(self) -> dict[str, Any]:
        """The design's `derivatives` item: `{path, width, height, format, bytes, sha256}`."""
        return self.info.as_record(self.path)


@dataclass(frozen=True)
class FileRecord:
    """A file in a task's render folder: video, 3D, audio, or another image.

    `sha256` is None for a file larger than the hashing cap; `generation` is the object's.
    """

    path: str
    bytes: int
    sha256: str | None
    content_type: str
    generation: int | None = None

    def as_record(self) -> dict[str, Any]:
        """`{path, bytes, sha256, content_type}` for the task record."""
        return {
            "path": self.path,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "generation": self.generation,
        }


def derivative_folder(collection_name: str, task_uuid: str) -> str:
    """The folder of every derivative generation of one task, ending with `/`."""
    for label, value in (("collection name", collection_name), ("task uuid", task_uuid)):
        if not value or "/" in value or value in (".", ".."):
            raise ValueError(f"{label} {value!r} cannot be part of an object name")
    return f"{DERIVATIVES_PREFIX}/{collection_name}/{task_uuid}/"


def derivative_object_name(
    collection_name: str, task_uuid: str, source_generation: int, derivative: EncodedDerivative
) -> str:
    """`derivatives/<COLLECTION_NAME>/<TASK_UUID>/g<generation>/<size>.<ext>`."""
    folder = derivative_folder(collection_name, task_uuid)
    return f"{folder}g{source_generation}/{derivative.spec.size}.{derivative.file_extension}"


def download_render(
    renders_bucket: Any, name: str, generation: int, *, max_bytes: int = DEFAULT_MAX_SOURCE_BYTES
) -> bytes | None:
    """The bytes of exactly this generation of a render, or None if it no longer exists.

    None means the object was replaced or deleted since the event: a newer event follows.
    Raises SourceTooLargeError above `max_bytes`, before downloading anything.
    """
    blob = renders_bucket.get_blob(name, generation=generation)
    if blob is None:
        return None
    if blob.size is not None and int(blob.size) > max_bytes:
        raise SourceTooLargeError(f"{name} is {blob.size} bytes, above the limit of {max_bytes}")
    try:
        data: bytes = blob.download_as_bytes(if_generation_match=generation)
    except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
        return None
    return data


def store_derivatives(
    derivatives_bucket: Any,
    derivatives: Sequence[EncodedDerivative],
    *,
    collection_name: str,
    task_uuid: str,
    source_bucket_name: str,
    source_object_name: str,
    source_generation: int,
    task_id: str,
    request_id: str | None = None,
    cache_control: str = CACHE_CONTROL,
) -> list[StoredDerivative]:
    """Write each derivative once; on a retry, report what the first attempt wrote."""
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
        name = derivative_object_name(collection_name, task_uuid, source_generation, derivative)
        metadata = {
            **context,
            "sha256": derivative.info.sha256,
            "width": str(derivative.info.width),
            "height": str(derivative.info.height),
            "format": derivative.info.format,
        }
        stored.append(_write_once(derivatives_bucket, name, derivative, metadata, cache_control))
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
        )
    except ValueError:
        return None


def delete_superseded_derivatives(
    derivatives_bucket: Any, collection_name: str, task_uuid: str, source_generation: int
) -> list[str]:
    """Delete derivatives of older source generations of this task; return their names.

    Newer generations are never touched, so a late event for an old render is harmless.
    """
    folder = derivative_folder(collection_name, task_uuid)
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


def describe_render_folder(
    renders_bucket: Any,
    folder: str,
    *,
    exclude: Iterable[str] = (),
    max_files: int = 1000,
    max_hash_bytes: int = DEFAULT_MAX_SOURCE_BYTES,
    known: Iterable[Mapping[str, Any]] = (),
) -> list[FileRecord]:
    """Describe every object under a task's render folder except `exclude`, sorted by path.

    A file described in `known` for the same object generation is not read again; any other
    file up to `max_hash_bytes` is read once, streamed, for its sha256; a larger one is
    described without it (hashing it would outlast the function's deadline on every retry).
    The content type is the declared one, else guessed from the name.
    """
    prefix = folder if folder.endswith("/") else f"{folder}/"
    skipped = set(exclude)
    already = {
        (entry.get("path"), entry.get("generation")): entry
        for entry in known
        if entry.get("generation") is not None
    }
    records = []
    for blob in renders_bucket.list_blobs(prefix=prefix, max_results=max_files):
        if blob.name in skipped or blob.name.endswith("/"):
            continue
        guessed = _guess_content_type(blob.name)
        declared = blob.content_type if blob.content_type != "application/octet-stream" else None
        content_type = declared or guessed or "application/octet-stream"
        seen = already.get((blob.name, blob.generation))
        if seen is not None:
            records.append(
                FileRecord(blob.name, seen["bytes"], seen["sha256"], content_type, blob.generation)
            )
            continue
        if blob.size is not None and blob.size > max_hash_bytes:
            records.append(FileRecord(blob.name, blob.size, None, content_type, blob.generation))
            continue
        digest = _HashingSink()
        try:
            blob.download_to_file(digest, if_generation_match=blob.generation)
        except (api_exceptions.NotFound, api_exceptions.PreconditionFailed):
            continue  # replaced or deleted while listing: its own event will describe it
        records.append(
            FileRecord(blob.name, digest.size, digest.hexdigest(), content_type, blob.generation)
        )
    return sorted(records, key=lambda record: record.path)


def _guess_content_type(name: str) -> str | None:
    extension = name[name.rfind(".") :].lower() if "." in name.rsplit("/", 1)[-1] else ""
    return _CONTENT_TYPES_BY_EXTENSION.get(extension) or mimetypes.guess_type(name)[0]


class _HashingSink:
    """A write-only file object that keeps only the sha256 and the length of what it got."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self._digest.update(chunk)
        self.size += len(chunk)
        return len(chunk)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
