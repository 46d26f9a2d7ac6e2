"""One base exception with small, flat subclasses.

`transient` says whether repeating the same work later can succeed: handlers raise
(Pub/Sub redelivers) for transient errors and record-and-acknowledge the others.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any


class BundleError(Exception):
    """Base of every error raised by this bundle."""

    code = "error"
    transient = False


class ConfigurationError(BundleError):
    """A setting is missing or malformed; the message names the variable."""

    code = "configuration"


class InvalidMessageError(BundleError):
    """A render request or callback that can never succeed as sent."""

    code = "invalid_message"


class CallbackRefusedError(InvalidMessageError):
    """A producer callback SRP must not be asked to call (not a public https endpoint)."""

    code = "callback_refused"


class SrpError(BundleError):
    """SRP answered with an error, or could not be reached.

    `may_have_reached_srp` says whether a POST that raised this may still have created a
    task: False only for a 4xx answer (429 included), which SRP gives before doing any work.
    A 5xx may come from a proxy after SRP created the task.
    """

    code = "srp_error"

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.may_have_reached_srp = status_code is None or not 400 <= status_code < 500


class SrpAuthenticationError(SrpError):
    """401/403: the API key is missing, wrong or not allowed to do this."""

    code = "srp_authentication"


class SrpNotFoundError(SrpError):
    """404: no such task (or collection)."""

    code = "srp_not_found"


class SrpValidationError(SrpError):
    """400/422: SRP rejected the request; the message is SRP's own."""

    code = "srp_validation"


class SrpRateLimitedError(SrpError):
    """429: slow down; `retry_after` is in seconds when SRP said so."""

    code = "srp_rate_limited"
    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class SrpServerError(SrpError):
    """5xx: SRP failed; the same call may work later, and a POST may have created its task."""

    code = "srp_server"
    transient = True


class SrpConnectionError(SrpError):
    """No answer: connection refused, reset or timed out.

    `may_have_reached_srp` is False only when the request was certainly never sent.
    """

    code = "srp_connection"
    transient = True

    def __init__(self, message: str, *, may_have_reached_srp: bool, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.may_have_reached_srp = may_have_reached_srp


class AssetUploadRejectedError(SrpError):
    """The signed upload URL refused the archive (wrong signature or content type, ...).

    `storage_code` is the storage service's own error code, e.g. `SignatureDoesNotMatch`.
    """

    code = "asset_upload_rejected"

    def __init__(self, message: str, *, storage_code: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.storage_code = storage_code


class AssetUploadUrlExpiredError(AssetUploadRejectedError):
    """The signed upload URL has expired: ask SRP for a new one."""

    code = "asset_upload_url_expired"


class UnsafeUploadUrlError(BundleError):
    """SRP handed out an upload URL the archive is never sent to (not https); nothing was sent."""

    code = "asset_upload_url_unsafe"


class AssetArchiveError(BundleError):
    """A folder or ZIP that cannot be uploaded as a collection's assets; the message says why."""

    code = "asset_archive"


class OutputRejectedError(BundleError):
    """A render output (image, video, audio, ...) can never be post-processed; `code` says why."""

    code = "image_rejected"


class UnknownImageFormatError(OutputRejectedError):
    """The bytes are no image format we decode (PNG, JPEG, WebP, GIF, AVIF), whatever the name says.

    Its code stays `not_png`, as records already store it.
    """

    code = "not_png"


class CorruptImageError(OutputRejectedError):
    """The PNG is truncated, fails a checksum or cannot be decoded."""

    code = "corrupt_image"


class TooManyPixelsError(OutputRejectedError):
    """The PNG header claims more pixels than allowed (a decompression bomb, or just too big)."""

    code = "too_many_pixels"


class SourceTooLargeError(OutputRejectedError):
    """The render object is larger than the function is allowed to read."""

    code = "source_too_large"


class CorruptMediaError(OutputRejectedError):
    """A video or audio file that ffprobe or ffmpeg cannot read, or that has no usable stream."""

    code = "corrupt_media"


class MediaTooLongError(OutputRejectedError):
    """A video or audio render longer than MAX_MEDIA_SECONDS."""

    code = "media_too_long"


class MediaTimeoutError(OutputRejectedError):
    """The file's MEDIA_TIMEOUT_SECONDS budget ran out (a crafted or huge input)."""

    code = "media_timeout"


class MediaResourceLimitError(OutputRejectedError):
    """ffmpeg or ffprobe hit its address-space or CPU-time limit and was stopped."""

    code = "media_resource_limit"


class RenderPathRejectedError(OutputRejectedError):
    """The path matches RENDER_PATH_PATTERN but cannot name derivatives (a `..` segment)."""

    code = "render_path_rejected"


class DerivativeWriteConflictError(BundleError):
    """A derivative name kept changing under us; the event should be retried."""

    code = "derivative_write_conflict"
    transient = True


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header, in its delta-seconds or HTTP-date form."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
