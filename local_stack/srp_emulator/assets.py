"""Collection assets: SRP's three upload steps, with signed upload URLs as unkind as real ones.

1. `GET /api/v1/tasks/get_asset_upload_url/?collection_uid=` issues an asset id and a
   GCS-V4-like signed URL (`/_uploads/...?X-Goog-Date=...&X-Goog-Expires=...&X-Goog-Signature=`)
   that accepts a PUT with exactly the `content_type` it names, until it expires.
2. The PUT is streamed to a file (never held in memory). A wrong `Content-Type` or a tampered
   query gets 403 `SignatureDoesNotMatch` and an expired URL 400 `ExpiredToken`, as XML, like
   Cloud Storage.
3. `POST /api/v1/tasks/create_asset/ {"id"}` refuses an id whose archive never arrived (400) or
   is not a ZIP; afterwards the archive is the collection's current assets: a layer with an
   `asset_path` (e.g. `backgrounds/{value}`) is drawn from that image of the archive.

Scripted faults (control API `POST /_emulator/assets/faults`): the next PUTs fail with a 5xx
after the whole body was sent, or drop the connection half way (`"drop"`); the next upload
URLs are issued already expired.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import re
import secrets
import shutil
import threading
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from PIL import Image

from local_stack.srp_emulator.catalog import Collection
from local_stack.srp_emulator.engine import RequestError

UPLOADS_PREFIX = "/_uploads/"
ASSET_UPLOAD_URL_PATH = "/api/v1/tasks/get_asset_upload_url"
CREATE_ASSET_PATH = "/api/v1/tasks/create_asset"
ASSET_API_PATHS = (ASSET_UPLOAD_URL_PATH, CREATE_ASSET_PATH)
ARCHIVE_CONTENT_TYPE = "application/zip"
DEFAULT_URL_TTL_SECONDS = 900
_SIGNATURE = "X-Goog-Signature"
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_CHUNK_BYTES = 1024 * 1024


class MissingAssetError(Exception):
    """A render needs a file its collection's asset archive does not have."""


@dataclass
class Asset:
    """One asset: its upload target and, once the PUT arrived, the archive on disk."""

    id: str
    collection_uid: str
    owner_id: int
    content_type: str
    upload_url: str
    issued_at: datetime
    expires_at: datetime
    archive: Path | None = None
    size_bytes: int = 0
    sha256: str | None = None
    uploaded_at: datetime | None = None
    created_at: datetime | None = None
    put_count: int = 0

    def public_view(self) -> dict[str, Any]:
        """SRP's documented answer: `{"upload_url", "content_type", "id"}`."""
        return {"upload_url": self.upload_url, "content_type": self.content_type, "id": self.id}

    def control_view(self) -> dict[str, Any]:
        """Everything the emulator knows, for tests."""
        return {
            "id": self.id,
            "collection_uid": self.collection_uid,
            "owner_id": self.owner_id,
            "content_type": self.content_type,
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "uploaded": self.archive is not None,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "uploaded_at": _iso(self.uploaded_at),
            "created": self.created_at is not None,
            "created_at": _iso(self.created_at),
            "put_count": self.put_count,
        }


@dataclass
class AssetFaults:
    """Scripted failures of the upload step."""

    # Each PUT with a valid signature takes the next entry: a 5xx status (answered after the
    # whole body was read) or "drop" (the connection closed half way through the body).
    fail_next_puts: list[int | str] = field(default_factory=list)
    expired_urls_to_issue: int = 0  # the next URLs are signed as if issued long ago
    url_ttl_seconds: float = DEFAULT_URL_TTL_SECONDS
    # Upload URLs name this scheme and host instead of http and the emulator's own address, as
    # a misconfigured or hostile SRP might (e.g. "http://storage.example.test"): the client
    # must refuse plain http off loopback before sending a byte.
    upload_url_origin: str | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AssetFaults:
        """From the control API's JSON; raise ValueError naming a bad setting."""
        faults = cls()
        for name, value in values.items():
            if name == "fail_next_puts":
                if not isinstance(value, list) or not all(
                    value_ == "drop" or (isinstance(value_, int) and 500 <= value_ <= 599)
                    for value_ in value
                ):
                    raise ValueError("fail_next_puts: a list of 5xx statuses and/or 'drop'")
                faults.fail_next_puts = list(value)
            elif name == "expired_urls_to_issue":
                faults.expired_urls_to_issue = max(0, int(value))
            elif name == "url_ttl_seconds":
                faults.url_ttl_seconds = max(0.0, float(value))
            elif name == "upload_url_origin":
                if value is not None and not (
                    isinstance(value, str) and re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+", value)
                ):
                    raise ValueError("upload_url_origin: null or scheme://host[:port]")
                faults.upload_url_origin = value
            else:
                raise ValueError(f"unknown asset fault setting {name!r}")
        return faults

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {
            "fail_next_puts": list(self.fail_next_puts),
            "expired_urls_to_issue": self.expired_urls_to_issue,
            "url_ttl_seconds": self.url_ttl_seconds,
            "upload_url_origin": self.upload_url_origin,
        }


@dataclass
class PutOutcome:
    """What to answer a PUT: status, headers and body, or drop the connection."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    fault: str | None = None
    asset_id: str | None = None


class AssetStore:
    """Assets by id, their archives in `directory`, and the scripted faults."""

    def __init__(
        self,
        directory: Path,
        *,
        url_ttl_seconds: float = DEFAULT_URL_TTL_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.initial_url_ttl_seconds = url_ttl_seconds
        self.faults = AssetFaults(url_ttl_seconds=url_ttl_seconds)
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._assets: dict[str, Asset] = {}

    # Step 1 --------------------------------------------------------------------------------

    def issue(
        self, collection: Collection | None, query: Mapping[str, str], owner_id: int, host: str
    ) -> Asset:
        """A new asset id and its signed upload URL; raise RequestError if refused."""
        if not query.get("collection_uid", "").strip():
            raise RequestError(
                400, "query parameter 'collection_uid' is required", "collection_uid"
            )
        if collection is None:
            raise RequestError(
                404, f"collection '{query['collection_uid']}' not found", "collection_uid"
            )
        if not collection.enabled:
            raise RequestError(400, f"collection '{collection.name}' is disabled", "collection_uid")
        asset_id = str(uuid.uuid4())
        now = self.clock()
        with self._lock:
            ttl = self.faults.url_ttl_seconds
            origin = self.faults.upload_url_origin or f"http://{host}"
            signed_at = now
            if self.faults.expired_urls_to_issue > 0:
                self.faults.expired_urls_to_issue -= 1
                signed_at = now - timedelta(seconds=ttl + 60)
        path = f"{UPLOADS_PREFIX}{collection.name}/{asset_id}.zip"
        params = {
            "X-Goog-Algorithm": "GOOG4-HMAC-SHA256",
            "X-Goog-Credential": f"srp-emulator/{signed_at:%Y%m%d}/auto/storage/goog4_request",
            "X-Goog-Date": signed_at.strftime(_DATE_FORMAT),
            "X-Goog-Expires": str(int(ttl)),
            "X-Goog-SignedHeaders": "content-type;host",
        }
        params[_SIGNATURE] = self._sign(path, params, ARCHIVE_CONTENT_TYPE, host)
        asset = Asset(
            id=asset_id,
            collection_uid=collection.uid,
            owner_id=owner_id,
            content_type=ARCHIVE_CONTENT_TYPE,
            upload_url=f"{origin}{path}?{urlencode(params, quote_via=quote)}",
            issued_at=now,
            expires_at=signed_at + timedelta(seconds=int(ttl)),
        )
        with self._lock:
            self._assets[asset_id] = asset
        return asset

    # Step 2 --------------------------------------------------------------------------------

    def receive(
        self,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        read: Callable[[int], bytes],
        readline: Callable[[], bytes] | None = None,
    ) -> PutOutcome:
        """Check a PUT like a signed URL would, then stream its body to disk.

        `readline` (the connection's) lets a refused chunked body be read to its end.
        """
        length_text = headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            if readline is not None and "chunked" in headers.get("Transfer-Encoding", "").lower():
                _drain_chunked(read, readline)
            return _xml_error(
                411, "MissingContentLength", "You must provide the Content-Length HTTP header."
            )
        length = int(length_text)
        refusal = self._refusal(path, query, headers)
        if refusal is not None:
            # Read what the client sends before answering (a lingering close), so the answer
            # reaches it rather than a connection reset.
            _drain(read, length)
            return refusal
        asset_id = path.rsplit("/", 1)[-1].removesuffix(".zip")
        with self._lock:
            asset = self._assets.get(asset_id)
            if asset is not None:
                asset.put_count += 1
            fault = self.faults.fail_next_puts.pop(0) if self.faults.fail_next_puts else None
        if asset is None:  # forgotten by a reset
            _drain(read, length)
            return _xml_error(404, "NoSuchUpload", "The upload target no longer exists.")
        if fault == "drop":
            _drain(read, length // 2)
            return PutOutcome(status=0, drop=True, fault="drop", asset_id=asset_id)
        if isinstance(fault, int):
            _drain(read, length)
            outcome = _xml_error(
                fault,
                "InternalError" if fault == 500 else "ServiceUnavailable",
                "We encountered an internal error. Please try again.",
            )
            outcome.fault = str(fault)
            outcome.asset_id = asset_id
            return outcome
        return self._store(asset, read, length)

    def _refusal(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> PutOutcome | None:
        signature = query.get(_SIGNATURE, "")
        unsigned = {name: value for name, value in query.items() if name != _SIGNATURE}
        expected = self._sign(
            path, unsigned, headers.get("Content-Type", ""), headers.get("Host", "")
        )
        if not signature or not hmac.compare_digest(signature, expected):
            return _xml_error(
                403,
                "SignatureDoesNotMatch",
                "Access denied.",
                "The request signature we calculated does not match the signature you "
                "provided. Check your Google secret key and signing method.",
            )
        try:
            signed_at = datetime.strptime(query["X-Goog-Date"], _DATE_FORMAT).replace(tzinfo=UTC)
            expires_at = signed_at + timedelta(seconds=int(query["X-Goog-Expires"]))
        except (KeyError, ValueError):
            return _xml_error(
                400, "MalformedSecurityHeader", "Your request has a malformed header."
            )
        if self.clock() > expires_at:
            return _xml_error(
                400,
                "ExpiredToken",
                "The provided token has expired.",
                f"Request signature expired at: {expires_at.strftime('%Y-%m-%dT%H:%M:%S+00:00')}",
            )
        return None

    def _store(self, asset: Asset, read: Callable[[int], bytes], length: int) -> PutOutcome:
        partial = self.directory / f"{asset.id}.{uuid.uuid4().hex}.part"
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with partial.open("wb") as target:
                while received < length:
                    chunk = read(min(_CHUNK_BYTES, length - received))
                    if not chunk:
                        break
                    target.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
            if received < length:  # the client went away: nothing is stored
                partial.unlink(missing_ok=True)
                return PutOutcome(
                    status=0, drop=True, fault="client_disconnected", asset_id=asset.id
                )
            archive = self.directory / f"{asset.id}.zip"
            os.replace(partial, archive)  # a repeated PUT replaces the object, as on GCS
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        with self._lock:
            asset.archive = archive
            asset.size_bytes = received
            asset.sha256 = sha256.hexdigest()
            asset.uploaded_at = self.clock()
        return PutOutcome(status=200, headers={"ETag": f'"{md5.hexdigest()}"'}, asset_id=asset.id)

    # Step 3 --------------------------------------------------------------------------------

    def create(self, body: Any, owner_id: int) -> Asset:
        """Mark an uploaded archive as the collection's assets; raise RequestError."""
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            raise RequestError(400, "id is required (the id get_asset_upload_url gave)", "id")
        with self._lock:
            asset = self._assets.get(body["id"].strip())
        if asset is None or asset.owner_id != owner_id:
            raise RequestError(404, f"asset '{body['id']}' not found", "id")
        if asset.archive is None:
            raise RequestError(
                400,
                f"the archive of asset '{asset.id}' has not been uploaded: PUT it to the "
                "upload_url first",
                "id",
            )
        try:
            with zipfile.ZipFile(asset.archive) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            raise RequestError(
                400, f"the archive of asset '{asset.id}' is not a ZIP archive: {error}", "id"
            ) from error
        with self._lock:
            if asset.created_at is None:
                asset.created_at = self.clock()
        return asset

    # Renders -------------------------------------------------------------------------------

    def current(self, collection_uid: str) -> Asset | None:
        """The collection's most recently created asset, if any."""
        with self._lock:
            created = [
                a
                for a in self._assets.values()
                if a.collection_uid == collection_uid and a.created_at is not None
            ]
        return max(created, key=lambda a: (a.created_at, a.issued_at), default=None)

    def layer_images(
        self, collection: Collection, render_input: Mapping[str, str]
    ) -> dict[str, Image.Image]:
        """Trait -> image from the collection's asset archive, for layers with `asset_path`.

        Without any created asset the collection renders its drawn shapes; with one, a file
        the archive lacks fails the render, as a real scene with a missing texture would.
        """
        asset = self.current(collection.uid)
        if asset is None or asset.archive is None:
            return {}
        images: dict[str, Image.Image] = {}
        with zipfile.ZipFile(asset.archive) as archive:
            for layer in collection.layers:
                value = render_input.get(layer.trait)
                if layer.asset_path is None or value is None:
                    continue
                name = layer.asset_path.format(value=value)
                try:
                    data = archive.read(name)
                except KeyError:
                    raise MissingAssetError(
                        f"asset {asset.id} of collection '{collection.name}' has no {name}"
                    ) from None
                try:
                    image = Image.open(io.BytesIO(data))
                    images[layer.trait] = image.convert("RGBA")
                except (OSError, ValueError) as error:
                    raise MissingAssetError(
                        f"asset {asset.id}: {name} is not a readable image ({error})"
                    ) from error
        return images

    # Control -------------------------------------------------------------------------------

    def control_views(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every asset matching the query's fields (e.g. `collection_uid=`, `id=`)."""
        with self._lock:
            views = [asset.control_view() for asset in self._assets.values()]
        return [
            view
            for view in sorted(views, key=lambda v: v["issued_at"])
            if all(str(view.get(name)) == value for name, value in query.items() if name in view)
        ]

    def configure(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the scripted faults (unnamed settings return to their defaults)."""
        faults = AssetFaults.from_dict({"url_ttl_seconds": self.initial_url_ttl_seconds, **values})
        with self._lock:
            self.faults = faults
        return faults.to_dict()

    def reset(self) -> None:
        """Forget every asset, delete the archives, restore the start-up settings."""
        with self._lock:
            self._assets.clear()
            self.faults = AssetFaults(url_ttl_seconds=self.initial_url_ttl_seconds)
            for entry in self.directory.iterdir():
                with contextlib.suppress(OSError):
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()

    def _sign(self, path: str, params: Mapping[str, str], content_type: str, host: str) -> str:
        canonical_query = urlencode(sorted(params.items()), quote_via=quote, safe="")
        canonical = "\n".join(
            ["PUT", path, canonical_query, f"content-type:{content_type.strip()}", f"host:{host}"]
        )
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()


def _xml_error(status: int, code: str, message: str, details: str | None = None) -> PutOutcome:
    detail = f"<Details>{details}</Details>" if details else ""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message>{detail}</Error>"
    ).encode()
    return PutOutcome(
        status=status,
        body=body,
        headers={"Content-Type": "application/xml; charset=UTF-8"},
        fault=None,
    )


def _drain(read: Callable[[int], bytes], length: int) -> None:
    remaining = length
    while remaining > 0:
        chunk = read(min(_CHUNK_BYTES, remaining))
        if not chunk:
            return
        remaining -= len(chunk)


def _drain_chunked(read: Callable[[int], bytes], readline: Callable[[], bytes]) -> None:
    while True:
        size_line = readline()
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            return
        if size == 0:
            while readline() not in (b"\r\n", b"\n", b""):  # trailers, then the blank line
                pass
            return
        _drain(read, size + 2)  # the chunk and its CRLF


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
