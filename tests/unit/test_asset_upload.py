"""AssetUploader: a streamed PUT to a signed URL, retried only when repeating it is safe."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from srp_bundle.asset_upload import (
    AssetUploader,
    check_upload_url,
    redacted_url,
    storage_error_fields,
)
from srp_bundle.errors import (
    AssetUploadRejectedError,
    AssetUploadUrlExpiredError,
    SrpConnectionError,
    SrpServerError,
    UnsafeUploadUrlError,
)
from srp_bundle.srp_models import AssetUpload

UPLOAD = AssetUpload(
    id="a1",
    upload_url="https://storage.test/bucket/a1.zip?X-Goog-Date=20261130T000000Z&X-Goog-Signature=s3cr3t",
    content_type="application/zip",
)
GCS_EXPIRED = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
    "<Message>The provided token has expired.</Message>"
    "<Details>Request signature expired at: 2026-11-30T00:15:00+00:00</Details></Error>"
)
S3_EXPIRED = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
SIGNATURE = (
    "<Error><Code>SignatureDoesNotMatch</Code><Message>Access denied.</Message>"
    "<Details>The request signature we calculated does not match</Details></Error>"
)

Answer = httpx.Response | type[httpx.TransportError]


class FakeStorage:
    """Answers PUTs from a script (the last answer repeats); keeps what it received."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(b"".join(request.stream))  # type: ignore[union-attr]
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("simulated", request=request)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "assets.zip"
    path.write_bytes(bytes(range(256)) * 41)  # 10,496 bytes: several 4 KiB chunks
    return path


def uploader_for(storage: FakeStorage, sleeps: list[float]) -> AssetUploader:
    return AssetUploader(
        transport=httpx.MockTransport(storage.handle), sleep=sleeps.append, chunk_bytes=4096
    )


def test_the_archive_is_streamed_in_chunks_with_its_length_and_content_type(
    archive: Path,
) -> None:
    storage = FakeStorage(httpx.Response(200, headers={"ETag": '"abc"'}))
    progress: list[tuple[int, int]] = []

    with uploader_for(storage, []) as uploader:
        receipt = uploader.put(UPLOAD, archive, progress=lambda *p: progress.append(p))

    (request,) = storage.requests
    assert request.method == "PUT" and str(request.url) == UPLOAD.upload_url
    assert request.headers["Content-Type"] == "application/zip"
    assert request.headers["Content-Length"] == "10496"
    assert "Transfer-Encoding" not in request.headers
    assert "Authorization" not in request.headers
    assert storage.bodies == [archive.read_bytes()]
    assert progress == [(0, 10496), (4096, 10496), (8192, 10496), (10496, 10496)]
    assert (receipt.etag, receipt.bytes_sent, receipt.attempts) == ('"abc"', 10496, 1)


@pytest.mark.parametrize(
    "failures",
    [
        [httpx.Response(503), httpx.Response(503)],
        [httpx.Response(500), httpx.Response(408)],
        [httpx.RemoteProtocolError, httpx.WriteError],
        [httpx.ReadTimeout, httpx.Response(429, headers={"Retry-After": "3"})],
    ],
    ids=["503-503", "500-408", "dropped-twice", "timeout-then-429"],
)
def test_5xx_and_dropped_connections_are_retried_from_the_first_byte(
    archive: Path, failures: list[Answer]
) -> None:
    storage = FakeStorage(*failures, httpx.Response(200))
    sleeps: list[float] = []

    with uploader_for(storage, sleeps) as uploader:
        receipt = uploader.put(UPLOAD, archive)

    assert receipt.attempts == 3
    assert storage.bodies == [archive.read_bytes()] * 3
    assert len(sleeps) == 2


def test_it_gives_up_after_the_policys_attempts_with_the_last_error(archive: Path) -> None:
    storage = FakeStorage(
        httpx.Response(503, text="<Error><Code>ServiceUnavailable</Code></Error>")
    )
    sleeps: list[float] = []

    with uploader_for(storage, sleeps) as uploader, pytest.raises(SrpServerError) as raised:
        uploader.put(UPLOAD, archive)

    assert len(storage.requests) == 5 and len(sleeps) == 4
    assert "ServiceUnavailable" in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (httpx.Response(400, text=GCS_EXPIRED), "ExpiredToken"),
        (httpx.Response(403, text=S3_EXPIRED), "AccessDenied"),
    ],
    ids=["gcs", "s3"],
)
def test_an_expired_url_raises_its_own_error_without_retrying(
    archive: Path, answer: httpx.Response, code: str
) -> None:
    storage = FakeStorage(answer)
    sleeps: list[float] = []

    with uploader_for(storage, sleeps) as uploader, pytest.raises(AssetUploadUrlExpiredError) as e:
        uploader.put(UPLOAD, archive)

    assert e.value.storage_code == code and not e.value.transient
    assert len(storage.requests) == 1 and sleeps == []


def test_a_signature_mismatch_is_rejected_without_retrying_or_leaking_the_signature(
    archive: Path,
) -> None:
    storage = FakeStorage(httpx.Response(403, text=SIGNATURE))
    sleeps: list[float] = []

    with uploader_for(storage, sleeps) as uploader, pytest.raises(AssetUploadRejectedError) as e:
        uploader.put(UPLOAD, archive)

    assert not isinstance(e.value, AssetUploadUrlExpiredError)
    assert e.value.storage_code == "SignatureDoesNotMatch" and e.value.status_code == 403
    assert "s3cr3t" not in str(e.value)
    assert len(storage.requests) == 1 and sleeps == []


def test_a_dropped_connection_error_names_how_far_it_got(archive: Path) -> None:
    storage = FakeStorage(httpx.RemoteProtocolError)

    with uploader_for(storage, []) as uploader, pytest.raises(SrpConnectionError) as raised:
        uploader.put(UPLOAD, archive)

    assert "10496 of 10496 bytes" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_a_file_that_changes_size_during_the_upload_is_not_sent_short(tmp_path: Path) -> None:
    path = tmp_path / "shrinking.zip"
    path.write_bytes(b"x" * 10_000)
    storage = FakeStorage(httpx.Response(200))

    def shrink(sent: int, total: int) -> None:
        if sent == 4096:
            path.write_bytes(b"x" * 5000)

    with uploader_for(storage, []) as uploader, pytest.raises(OSError, match="changed size"):
        uploader.put(UPLOAD, path, progress=shrink)


def test_storage_error_fields_and_the_redacted_url() -> None:
    assert storage_error_fields(GCS_EXPIRED)["Code"] == "ExpiredToken"
    assert storage_error_fields("plain text") == {}
    assert redacted_url(UPLOAD.upload_url) == "https://storage.test/bucket/a1.zip"


@pytest.mark.parametrize(
    "url",
    [
        "http://storage.test/bucket/a1.zip?X-Goog-Signature=s3cr3t",
        "http://127.0.0.1:9000/bucket/a1.zip",  # loopback, but not allowed by default
        "ftp://storage.test/bucket/a1.zip",
        "https:///bucket/a1.zip",
        "file:///home/me/.aws/credentials",
    ],
)
def test_the_archive_goes_only_to_https_urls(archive: Path, url: str) -> None:
    storage = FakeStorage(httpx.Response(200))
    upload = AssetUpload(id="a1", upload_url=url, content_type="application/zip")

    with (
        uploader_for(storage, []) as uploader,
        pytest.raises(
            UnsafeUploadUrlError, match="is not https: the archive was not sent"
        ) as raised,
    ):
        uploader.put(upload, archive)

    assert storage.requests == []
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("http://127.0.0.1:9000/_uploads/a1.zip", True),
        ("http://127.8.9.10/_uploads/a1.zip", True),
        ("http://localhost:9000/_uploads/a1.zip", True),
        ("http://[::1]:9000/_uploads/a1.zip", True),
        ("https://storage.test/bucket/a1.zip", True),
        ("http://storage.test/bucket/a1.zip", False),
        ("http://10.0.0.7/bucket/a1.zip", False),
        ("http://127.0.0.1.nip.io/bucket/a1.zip", False),
        ("http://localhost.storage.test/bucket/a1.zip", False),
    ],
)
def test_local_mode_also_accepts_http_to_loopback_only(url: str, accepted: bool) -> None:
    if accepted:
        check_upload_url(url, allow_loopback_http=True)
    else:
        with pytest.raises(UnsafeUploadUrlError, match="https, or http to a loopback host"):
            check_upload_url(url, allow_loopback_http=True)
