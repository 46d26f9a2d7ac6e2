"""PUT an asset archive to the signed URL SRP handed out: streamed, retried when safe.

Usage::

    upload = srp.get_asset_upload_url(collection_id)          # SrpClient
    with AssetUploader() as uploader:
        receipt = uploader.put(upload, archive_path, progress=lambda sent, total: ...)
    srp.create_asset(upload.id)

The archive is read in 1 MiB chunks while it is sent, with its `Content-Length`, so memory
stays flat whatever its size. A PUT to a signed URL replaces the whole object, so repeating
it is safe: it is retried (from the first byte) on 408/429/5xx answers and on any dropped
connection, with the backoff of `UPLOAD_RETRY`. A refusal is not retried:
`AssetUploadUrlExpiredError` (ask SRP for a new URL) or `AssetUploadRejectedError` (a wrong
content type or a tampered URL: `SignatureDoesNotMatch`). The SRP API key is never sent to
the storage host, and the URL's signature never appears in messages.

The archive only goes to an `https://` URL (`UnsafeUploadUrlError` otherwise, before a byte
is sent); `allow_loopback_http` also accepts `http://` to a loopback host, for an SRP
emulator on this machine (the CLI sets it only when SRP_API_URL is itself on loopback).
Redirects are never followed.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from srp_bundle.errors import (
    AssetUploadRejectedError,
    AssetUploadUrlExpiredError,
    SrpConnectionError,
    SrpError,
    SrpRateLimitedError,
    SrpServerError,
    UnsafeUploadUrlError,
    parse_retry_after,
)
from srp_bundle.srp_client import RetryPolicy
from srp_bundle.srp_models import AssetUpload

logger = logging.getLogger(__name__)

UPLOAD_RETRY = RetryPolicy(
    max_attempts=5,
    initial_backoff_seconds=1.0,
    max_backoff_seconds=30.0,
    max_retry_after_seconds=60.0,
    retryable_statuses=frozenset({408, 429, 500, 502, 503, 504}),
    # A PUT to a signed URL replaces the object: repeating it cannot duplicate anything.
    idempotent_methods=frozenset({"PUT"}),
)
CHUNK_BYTES = 1024 * 1024
# Connecting and each read/write of a chunk; the answer after the last byte may take longer
# (the storage service checksums the object), hence the separate read timeout.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, read=120.0)
# Storage services name an expired signature differently; these are GCS's and S3's words.
_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredRequest", "RequestExpired"})
_EXPIRED_WORDS = re.compile(r"expired", re.IGNORECASE)
_XML_FIELD = re.compile(r"<(Code|Message|Details)>([^<]{0,500})</\1>")
_MAX_BODY_CHARS = 2000

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class UploadReceipt:
    """What the storage service answered to the PUT that worked."""

    status_code: int
    etag: str | None
    bytes_sent: int
    attempts: int


class AssetUploader:
    """Streams archives to signed URLs; one `httpx.Client` without SRP credentials."""

    def __init__(
        self,
        *,
        retry: RetryPolicy = UPLOAD_RETRY,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        chunk_bytes: int = CHUNK_BYTES,
        allow_loopback_http: bool = False,
    ) -> None:
        self.retry = retry
        self.allow_loopback_http = allow_loopback_http
        self._sleep = sleep
        self._chunk_bytes = chunk_bytes
        # A client of its own: the SRP client's Authorization header must never reach the
        # storage host (a signed URL carries its own credentials).
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> AssetUploader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def put(
        self,
        upload: AssetUpload,
        archive: Path,
        *,
        progress: ProgressCallback | None = None,
        content_type: str | None = None,
    ) -> UploadReceipt:
        """PUT `archive` to `upload.upload_url` with its content type; retry when safe.

        `progress(bytes_sent, total)` is called as chunks go out (from 0 again on a retry).
        `content_type` overrides `upload.content_type` (only tests have a reason to).
        """
        check_upload_url(upload.upload_url, allow_loopback_http=self.allow_loopback_http)
        total = archive.stat().st_size
        headers = {
            "Content-Type": content_type or upload.content_type,
            "Content-Length": str(total),
        }
        where = redacted_url(upload.upload_url)
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            sent = [0]
            try:
                response = self._http.put(
                    upload.upload_url,
                    content=self._chunks(archive, total, sent, progress),
                    headers=headers,
                )
            except httpx.TransportError as exc:
                error: SrpError = _connection_error(where, exc, sent[0], total)
                error.__cause__ = exc
            else:
                if response.is_success:
                    return UploadReceipt(
                        status_code=response.status_code,
                        etag=response.headers.get("ETag"),
                        bytes_sent=sent[0],
                        attempts=attempts,
                    )
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                error = _error_from_response(where, response, retry_after)
            delay = self.retry.delay_before_retry("PUT", error, attempts, retry_after)
            if delay is None:
                raise error
            logger.warning(
                "asset upload %s failed (%s), retry %d in %.2fs",
                where,
                error.code,
                attempts,
                delay,
                extra={
                    "fields": {
                        "asset_id": upload.id,
                        "upload_error": error.code,
                        "upload_status": error.status_code,
                        "attempt": attempts,
                        "delay_seconds": delay,
                    }
                },
            )
            self._sleep(delay)

    def _chunks(
        self, archive: Path, total: int, sent: list[int], progress: ProgressCallback | None
    ) -> Iterator[bytes]:
        if progress is not None:
            progress(0, total)
        with archive.open("rb") as stream:
            while chunk := stream.read(self._chunk_bytes):
                sent[0] += len(chunk)
                yield chunk
                if progress is not None:
                    progress(sent[0], total)
        if sent[0] != total:
            # The file changed under us; sending a different length would corrupt the PUT.
            raise OSError(f"{archive} changed size during the upload ({total} -> {sent[0]} bytes)")


def storage_error_fields(text: str) -> dict[str, str]:
    """`Code`, `Message` and `Details` of a storage service's XML error body (GCS, S3)."""
    return {name: value.strip() for name, value in _XML_FIELD.findall(text)}


def _error_from_response(
    where: str, response: httpx.Response, retry_after: float | None
) -> SrpError:
    status = response.status_code
    text = response.text[:_MAX_BODY_CHARS]
    fields = storage_error_fields(text)
    code = fields.get("Code")
    said = " ".join(v for k, v in fields.items() if k in ("Message", "Details")) or text.strip()
    message = f"storage answered {status} to PUT {where}: {code or ''} {said[:300]}".strip()
    if code in _EXPIRED_CODES or (status in (400, 403) and _EXPIRED_WORDS.search(said or "")):
        return AssetUploadUrlExpiredError(message, storage_code=code, status_code=status, body=text)
    if status == 429:
        return SrpRateLimitedError(message, retry_after=retry_after, status_code=status, body=text)
    if status >= 500 or status == 408:
        return SrpServerError(message, status_code=status, body=text)
    return AssetUploadRejectedError(message, storage_code=code, status_code=status, body=text)


def _connection_error(where: str, exc: httpx.TransportError, sent: int, total: int) -> SrpError:
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return SrpConnectionError(
        f"PUT {where}: connection lost after {sent} of {total} bytes ({type(exc).__name__}: {exc})",
        may_have_reached_srp=not never_sent,
    )


def check_upload_url(url: str, *, allow_loopback_http: bool = False) -> None:
    """Raise UnsafeUploadUrlError unless the archive may go to `url` (https; http to loopback
    only when allowed)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and allow_loopback_http and is_loopback_host(host):
        return
    allowed = "https, or http to a loopback host" if allow_loopback_http else "https"
    raise UnsafeUploadUrlError(
        f"SRP's upload URL {redacted_url(url)} is not {allowed}: the archive was not sent"
    )


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1): this machine, never the network."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redacted_url(url: str) -> str:
    """The URL without its query string (the signature, a credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
