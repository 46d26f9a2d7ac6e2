"""`assets`: upload a collection's resources to SRP (the first step of a studio's workflow).

`assets upload --collection UUID SOURCE` follows SRP's three documented steps: ask for a
signed upload URL (`GET get_asset_upload_url`), PUT the ZIP there with exactly the content
type SRP named, then `POST create_asset`. `assets confirm ASSET_ID` repeats only the last
step, for when its answer was lost. Only SRP is contacted (SRP_API_URL, SRP_API_KEY): no
Google project is needed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from srp_bundle.asset_archive import DEFAULT_LIMITS, ArchiveLimits, AssetArchive, prepare_archive
from srp_bundle.asset_upload import AssetUploader, UploadReceipt, is_loopback_host, redacted_url
from srp_bundle.cli._backend import BackendUnavailableError, CliError, UsageError
from srp_bundle.cli._console import Progress, human_bytes
from srp_bundle.errors import (
    AssetArchiveError,
    AssetUploadUrlExpiredError,
    ConfigurationError,
    SrpAuthenticationError,
    SrpConnectionError,
    SrpError,
    SrpNotFoundError,
    SrpValidationError,
    UnsafeUploadUrlError,
)
from srp_bundle.settings import DEFAULT_SRP_API_URL, SRP_API_KEY, SRP_API_URL, SRP_TIMEOUT_SECONDS
from srp_bundle.srp_client import SrpClient
from srp_bundle.srp_models import AssetUpload

# A URL that expires between SRP's answer and our PUT is replaced this many times.
URL_REFRESHES = 1


class PartialFailure(CliError):
    """Work was started and could not be finished (exit 1)."""

    exit_code = 1


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register `assets upload` and `assets confirm`."""
    # The Google connection flags (parents) do not apply: assets talk to SRP only.
    del parents
    srp = argparse.ArgumentParser(add_help=False)
    where = srp.add_argument_group("SRP (flags override environment variables)")
    where.add_argument(
        "--srp-api-url", help=f"SRP base URL [{SRP_API_URL}, default {DEFAULT_SRP_API_URL}]"
    )
    where.add_argument(
        "--timeout", type=float, help=f"seconds per SRP call [{SRP_TIMEOUT_SECONDS}, default 10]"
    )
    parser = commands.add_parser(
        "assets",
        help="upload a collection's resources (scene files, textures, trait images) to SRP",
        description="Upload a collection's resources to SRP, before any render.",
    )
    actions = parser.add_subparsers(dest="assets_command", required=True, metavar="ACTION")
    upload = actions.add_parser(
        "upload",
        parents=[srp],
        help="zip a folder (or check a ZIP) and upload it as the collection's assets",
        description=(
            "Zip SOURCE reproducibly (a folder: its contents at the archive's root) or check "
            "it (a ZIP), show its size and file count, ask SRP for an upload URL, stream the "
            "archive there, then tell SRP it is complete (create_asset). The last line of "
            "the output is the asset id. The API key comes from SRP_API_KEY."
        ),
    )
    upload.add_argument("source", type=Path, help="the resource folder, or a ZIP of it")
    upload.add_argument("--collection", required=True, help="the collection's UUID")
    upload.add_argument(
        "--dry-run", action="store_true", help="build and check the archive, contact nobody"
    )
    upload.add_argument(
        "--output", type=Path, help="keep the ZIP built from a folder here (default: temporary)"
    )
    upload.add_argument(
        "--allow-single-folder",
        action="store_true",
        help="accept an archive whose files all sit under one top-level folder",
    )
    limits = upload.add_argument_group(
        "limits of a given ZIP (counted in bytes actually unpacked; sizes like 500MiB, 32GiB)"
    )
    limits.add_argument(
        "--max-unpacked-size",
        type=_size,
        default=DEFAULT_LIMITS.max_total_bytes,
        metavar="SIZE",
        help=f"all entries together [default {human_bytes(DEFAULT_LIMITS.max_total_bytes)}]",
    )
    limits.add_argument(
        "--max-file-size",
        type=_size,
        default=DEFAULT_LIMITS.max_entry_bytes,
        metavar="SIZE",
        help=f"one entry [default {human_bytes(DEFAULT_LIMITS.max_entry_bytes)}]",
    )
    limits.add_argument(
        "--max-compression-ratio",
        type=float,
        default=DEFAULT_LIMITS.max_ratio,
        metavar="RATIO",
        help=(
            "unpacked bytes per compressed byte of one entry, past its first MiB "
            f"[default {DEFAULT_LIMITS.max_ratio:g}]"
        ),
    )
    upload.set_defaults(handler=run_upload)
    confirm = actions.add_parser(
        "confirm",
        parents=[srp],
        help="tell SRP an uploaded archive is complete (create_asset) when that answer was lost",
        description="Call create_asset for an asset whose archive is already uploaded.",
    )
    confirm.add_argument("asset_id", help="the asset id `assets upload` printed")
    confirm.set_defaults(handler=run_confirm)


def run_upload(args: argparse.Namespace) -> int:
    """Prepare the archive, then (unless --dry-run) upload it and create the asset."""
    collection_id = _collection_uuid(args.collection)
    with ExitStack() as stack:
        # Configuration first: a missing key should not wait for a gigabyte to be zipped.
        srp = None if args.dry_run else stack.enter_context(_srp_client(args))
        output = stack.enter_context(_archive_output(args))
        try:
            archive = prepare_archive(
                args.source,
                output,
                allow_single_folder=args.allow_single_folder,
                limits=ArchiveLimits(
                    max_total_bytes=args.max_unpacked_size,
                    max_entry_bytes=args.max_file_size,
                    max_ratio=args.max_compression_ratio,
                ),
            )
        except AssetArchiveError as error:
            raise UsageError(str(error)) from None
        _describe_archive(archive)
        if srp is None:
            print("dry run: nothing uploaded, SRP not contacted")
            return 0
        # Local mode: SRP itself on this machine (the emulator) may hand out http URLs on it.
        local_srp = is_loopback_host(urlsplit(srp.base_url).hostname or "")
        uploader = stack.enter_context(AssetUploader(allow_loopback_http=local_srp))
        upload = _ask_upload_url(srp, collection_id)
        upload, receipt = _put_with_refresh(srp, uploader, upload, collection_id, archive)
        print(
            f"uploaded {human_bytes(receipt.bytes_sent)} in {receipt.attempts} "
            f"attempt{'s' if receipt.attempts != 1 else ''}"
        )
        _create_asset(srp, upload.id)
    print(f"asset id: {upload.id}")
    return 0


def run_confirm(args: argparse.Namespace) -> int:
    """create_asset for an archive uploaded earlier."""
    with _srp_client(args) as srp:
        _create_asset(srp, args.asset_id.strip())
    print(f"asset id: {args.asset_id.strip()}")
    return 0


# ---- steps ------------------------------------------------------------------------------


def _describe_archive(archive: AssetArchive) -> None:
    origin = f"built from {archive.built_from}" if archive.built_from else "checked"
    print(f"archive: {archive.path} ({origin})")
    skipped = (
        f", {archive.skipped_system_files} system file(s) left out"
        if archive.skipped_system_files
        else ""
    )
    print(
        f"files: {archive.file_count}, size: {human_bytes(archive.size_bytes)} "
        f"({archive.size_bytes:,} bytes){skipped}"
    )
    print(f"sha256: {archive.sha256}")


def _ask_upload_url(srp: SrpClient, collection_id: str) -> AssetUpload:
    try:
        upload = srp.get_asset_upload_url(collection_id)
    except SrpError as error:
        raise _srp_failure(error, "asking SRP for an upload URL") from None
    print(
        f"upload URL for asset {upload.id}: PUT {redacted_url(upload.upload_url)} "
        f"(Content-Type: {upload.content_type})"
    )
    return upload


def _put_with_refresh(
    srp: SrpClient,
    uploader: AssetUploader,
    upload: AssetUpload,
    collection_id: str,
    archive: AssetArchive,
) -> tuple[AssetUpload, UploadReceipt]:
    refreshes = 0
    while True:
        try:
            return upload, _put_with_progress(uploader, upload, archive)
        except UnsafeUploadUrlError as error:
            raise UsageError(f"{error}; nothing was created") from None
        except AssetUploadUrlExpiredError as error:
            if refreshes >= URL_REFRESHES:
                raise PartialFailure(
                    f"the upload URL expired again ({error}); nothing was created. Check this "
                    "machine's clock, then run the command again"
                ) from None
            refreshes += 1
            print(f"the upload URL of asset {upload.id} expired; asking SRP for a new one")
            upload = _ask_upload_url(srp, collection_id)
        except SrpError as error:
            raise PartialFailure(
                f"the upload of asset {upload.id} failed: {error}; nothing was created "
                "(run the command again)"
            ) from None
        except OSError as error:
            raise PartialFailure(f"cannot read {archive.path}: {error}") from None


def _put_with_progress(
    uploader: AssetUploader, upload: AssetUpload, archive: AssetArchive
) -> UploadReceipt:
    progress = Progress("upload", archive.size_bytes, format_amount=human_bytes, stream=sys.stderr)

    def show(sent: int, total: int) -> None:
        progress.update(sent, total=total)

    try:
        receipt = uploader.put(upload, archive.path, progress=show)
    except BaseException:
        progress.finish("failed")
        raise
    progress.finish()
    return receipt


def _create_asset(srp: SrpClient, asset_id: str) -> None:
    try:
        srp.create_asset(asset_id)
    except SrpError as error:
        # create_asset is a POST: if SRP may have acted on it, repeating it blindly is not
        # ours to decide. The archive is uploaded; `confirm` finishes the job.
        lost = isinstance(error, SrpConnectionError) or error.transient
        hint = (
            f"the archive is uploaded; run `srp-bundle assets confirm {asset_id}` to finish"
            if lost
            else "the archive is uploaded but SRP refused to create the asset"
        )
        raise PartialFailure(f"create_asset for asset {asset_id} failed: {error}; {hint}") from None
    print(f"SRP created asset {asset_id}")


# ---- plumbing ---------------------------------------------------------------------------


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: a positive number of bytes, or with KiB, MiB, GiB or TiB"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _collection_uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise UsageError(f"--collection must be the collection's UUID, got {text!r}") from None


@contextmanager
def _archive_output(args: argparse.Namespace) -> Iterator[Path]:
    if args.output is not None:
        yield args.output
        return
    with tempfile.TemporaryDirectory(prefix="srp-assets-") as directory:
        yield Path(directory) / f"{args.source.name or 'assets'}.zip"


@contextmanager
def _srp_client(args: argparse.Namespace) -> Iterator[SrpClient]:
    api_key = os.environ.get(SRP_API_KEY, "")
    base_url = args.srp_api_url or os.environ.get(SRP_API_URL, "").strip() or DEFAULT_SRP_API_URL
    timeout = args.timeout
    try:
        if timeout is None:
            timeout = float(os.environ.get(SRP_TIMEOUT_SECONDS, "").strip() or 10.0)
        client = SrpClient(api_key, base_url=base_url, timeout=timeout)
    except ValueError:
        raise UsageError(f"{SRP_TIMEOUT_SECONDS} must be a number of seconds") from None
    except ConfigurationError as error:
        hint = " (pass --srp-api-url)" if SRP_API_URL in str(error) else ""
        raise UsageError(f"{error}{hint}") from None
    with client:
        yield client


def _srp_failure(error: SrpError, doing: str) -> CliError:
    if isinstance(error, SrpAuthenticationError):
        return UsageError(f"{doing}: SRP refused the API key ({SRP_API_KEY}): {error}")
    if isinstance(error, SrpNotFoundError | SrpValidationError):
        return UsageError(f"{doing}: {error}")
    if error.transient:
        return BackendUnavailableError(f"{doing}: SRP is unavailable: {error}")
    return PartialFailure(f"{doing}: {error}")
