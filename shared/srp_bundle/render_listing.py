"""Which files a finished task has: SRP's own answer, else the task's render folder.

A callback body can be replayed or sent by whoever holds a request's token, so the list a
request completes on never comes from it: it comes from SRP's `GET /api/v1/tasks?id=`
when that answer lists `output_files`, else from listing `render/<COLLECTION_NAME>/
<TASK_UUID>/` in RENDERS_BUCKET (the collection name as SRP's answer gives it, checked
by the render path grammar). A callback that lists files the trusted list lacks is
logged with the difference and changes nothing about the list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from srp_bundle.errors import InvalidMessageError
from srp_bundle.log import get_logger, log_fields
from srp_bundle.render_paths import check_output_files, task_folder
from srp_bundle.srp_models import SrpTask

logger = get_logger(__name__)
# At most this many files per task are listed (the record stays well under 1 MiB).
MAX_OUTPUT_FILES = 200


class _Bucket(Protocol):
    def list_blobs(self, prefix: str = ..., max_results: int | None = ...) -> Iterable[Any]: ...


class _StorageClient(Protocol):
    def bucket(self, name: str) -> Any: ...


class RenderFolder:
    """Lists a task's render folder in the renders bucket."""

    def __init__(
        self,
        storage_client: Callable[[], _StorageClient],
        bucket_name: str,
        path_pattern: re.Pattern[str],
    ) -> None:
        """`storage_client` makes the client on first need; `path_pattern` is
        RENDER_PATH_PATTERN: only files post-processing handles count."""
        self.storage_client = storage_client
        self.bucket_name = bucket_name
        self.path_pattern = path_pattern

    def files(self, collection_name: str, task_id: str) -> tuple[str, ...]:
        """The files in `render/<collection_name>/<task_id>/`, in name order (may be empty)."""
        try:
            prefix = task_folder(collection_name, task_id)
        except InvalidMessageError as error:
            logger.warning("not listing the render folder: %s", error)
            return ()
        bucket: _Bucket = self.storage_client().bucket(self.bucket_name)
        names = [blob.name for blob in bucket.list_blobs(prefix=prefix, max_results=1000)]
        kept = sorted(name for name in names if self._is_output_file(name, task_id))
        if len(kept) > MAX_OUTPUT_FILES:
            logger.error(
                "render folder %s holds %d files; only the first %d are listed",
                prefix,
                len(kept),
                MAX_OUTPUT_FILES,
                extra=log_fields(task_id=task_id),
            )
        return tuple(kept[:MAX_OUTPUT_FILES])

    def _is_output_file(self, name: str, task_id: str) -> bool:
        match = self.path_pattern.match(name)
        if match is None or match.group("task_id").lower() != task_id.lower():
            return False
        try:
            check_output_files((name,), task_id)
        except InvalidMessageError:
            return False
        return True


def trusted_output_files(
    task: SrpTask, folder: RenderFolder | None, collection_name: str | None = None
) -> tuple[str, ...]:
    """The files SRP's answer lists, else those in the task's folder; () without either.

    `collection_name` stands in for SRP's when its answer was not read (the folder is
    still the task's own, and the bucket still decides which files there are).
    """
    if task.output_files:
        try:
            return check_output_files(task.output_files[:MAX_OUTPUT_FILES], task.id)
        except InvalidMessageError as error:
            logger.warning("SRP's answer lists unusable files: %s", error)
    name = task.collection.name if task.collection and task.collection.name else collection_name
    if folder is None or not name:
        return ()
    return folder.files(name, task.id)


def warn_if_untrusted(
    claimed: Iterable[str] | None, trusted: Iterable[str], task_id: str
) -> list[str]:
    """Log the files a callback lists that the trusted list lacks; return them."""
    known = set(trusted)
    extra = sorted(set(claimed or ()) - known)
    if extra:
        logger.warning(
            "callback lists %d file(s) SRP does not; not trusted: %s",
            len(extra),
            ", ".join(extra[:20]),
            extra=log_fields(task_id=task_id, untrusted_files=extra[:20]),
        )
    return extra
