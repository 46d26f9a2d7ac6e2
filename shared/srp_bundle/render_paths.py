"""SRP's output layout, `render/<COLLECTION_NAME>/<TASK_UUID>/<file>`, read strictly.

Paths come from SRP (callbacks) or are built from what SRP says (a task's collection
name): neither is trusted. Every segment must match one plain ASCII grammar, so
percent-encoded dots, NUL, newlines, backslashes and look-alike slashes never pass,
and a task's files must sit in that task's own folder.
"""

from __future__ import annotations

import re

from srp_bundle.errors import InvalidMessageError

RENDER_ROOT = "render"
RENDER_FILE_NAME = "render.png"
MAX_PATH_LENGTH = 512
# Folders below the task's own folder a file may sit in (SRP writes render.png directly).
MAX_SUBFOLDERS = 4
# Starts with a letter, digit or underscore, so never "", ".", ".." nor a hidden name.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def is_safe_segment(segment: str) -> bool:
    """Whether `segment` is one plain path segment (ASCII letters, digits, `._-`)."""
    return _SEGMENT.fullmatch(segment) is not None


def task_folder(collection_name: str, task_id: str) -> str:
    """`render/<collection_name>/<task_id>/`; raise `InvalidMessageError` for unsafe names."""
    for what, segment in (("collection name", collection_name), ("task id", task_id)):
        if not is_safe_segment(segment):
            raise InvalidMessageError(f"{what} {segment[:80]!r} is not a safe path segment")
    return f"{RENDER_ROOT}/{collection_name}/{task_id}/"


def render_path(collection_name: str, task_id: str) -> str:
    """Where SRP's documented layout puts a task's render."""
    return task_folder(collection_name, task_id) + RENDER_FILE_NAME


def check_output_files(output_files: tuple[str, ...] | None, task_id: str) -> tuple[str, ...]:
    """Every path must be strictly relative, in the task's own folder; one folder for all."""
    folders: set[str] = set()
    for index, path in enumerate(output_files or ()):
        where = f"output_files[{index}]"
        parts = path.split("/")
        if (
            len(path) > MAX_PATH_LENGTH
            or not 4 <= len(parts) <= 4 + MAX_SUBFOLDERS
            or parts[0] != RENDER_ROOT
            or not all(is_safe_segment(part) for part in parts[1:])
        ):
            raise InvalidMessageError(
                f"{where} must be a relative path render/<collection>/<task>/<file> of "
                f"letters, digits and ._- only, got {path[:120]!r}"
            )
        if parts[2].lower() != task_id.lower():
            raise InvalidMessageError(
                f"{where} is not in the folder of task {task_id[:64]!r}: {path[:120]!r}"
            )
        folders.add(parts[1])
    if len(folders) > 1:
        raise InvalidMessageError("output_files name more than one collection folder")
    return tuple(output_files or ())
