"""The renders bucket, through the real google-cloud-storage client (emulator aware)."""

from __future__ import annotations

import contextlib
import os

from google.api_core.exceptions import Conflict, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

_LOCAL_PROJECT = "local-project"


class GcsRenderStore:
    """Writes renders into one bucket; creates the bucket on start-up if it is missing."""

    def __init__(self, renders_bucket_name: str, *, create_bucket: bool = True) -> None:
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or _LOCAL_PROJECT
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            # The emulator needs no credentials, and looking for real ones would only fail.
            self._client = storage.Client(project=project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        else:
            self._client = storage.Client(project=project)
        self.renders_bucket_name = renders_bucket_name
        self._bucket = self._client.bucket(renders_bucket_name)
        if create_bucket:
            self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        try:
            self._client.get_bucket(self.renders_bucket_name)
        except NotFound:
            # Conflict: someone else created it meanwhile, which is just as good.
            with contextlib.suppress(Conflict):
                self._client.create_bucket(self.renders_bucket_name)

    def upload(self, path: str, data: bytes) -> None:
        """Write a render; repeating the same write is harmless, so the client may retry it."""
        blob = self._bucket.blob(path)
        content_type = _CONTENT_TYPES.get(path.rsplit(".", 1)[-1], "application/octet-stream")
        blob.upload_from_string(data, content_type=content_type, retry=storage.retry.DEFAULT_RETRY)


# What SRP declares for each kind it writes (post-processing trusts the bytes, not this).
_CONTENT_TYPES = {
    "png": "image/png",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
    "glb": "model/gltf-binary",
}
