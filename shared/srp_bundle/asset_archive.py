"""A collection's assets as SRP wants them: one ZIP whose root is the resource folder's root.

`prepare_archive(source, output)` takes a folder (zipped reproducibly into `output`) or a
ZIP (checked as it is) and returns an `AssetArchive`. Both are streamed: no file is ever
read into memory whole, so a multi-gigabyte scene costs the same memory as a small one.

A folder gives the same bytes every time: entries sorted by path, every timestamp
1980-01-01 00:00:00 (the ZIP epoch), fixed permissions, no extra fields. Files the
operating system's file browsers leave behind (`.DS_Store`, `Thumbs.db`, `__MACOSX/`)
are left out, as are empty folders. A link anywhere inside the folder is refused, and
files are opened without following links, so nothing outside the folder is ever read.

A given ZIP (often a third party's asset pack) is refused when an entry is a link or a
device, or when what it unpacks to exceeds `ArchiveLimits`, counted in bytes actually
decompressed (declared sizes are the archive's word, not a fact).

Over 300 lines: building and checking the ZIP share one set of limits and refusals; split,
each half would need the other.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from srp_bundle.errors import AssetArchiveError

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
SYSTEM_FOLDERS = frozenset({"__MACOSX"})
_FILE_MODE = (stat.S_IFREG | 0o644) << 16
_UNIX = 3
_CHUNK_BYTES = 1024 * 1024
_GIB = 1024**3


@dataclass(frozen=True)
class ArchiveLimits:
    """How much a given ZIP may unpack to; the CLI's --max-unpacked-size and friends raise them.

    The ratio (unpacked bytes per compressed byte) is only checked past `ratio_grace_bytes`
    of an entry: small files that compress well are harmless, a bomb is not small.
    """

    max_total_bytes: int = 16 * _GIB
    max_entry_bytes: int = 4 * _GIB
    max_ratio: float = 100.0
    ratio_grace_bytes: int = 1024 * 1024


DEFAULT_LIMITS = ArchiveLimits()


@dataclass(frozen=True)
class AssetArchive:
    """A ZIP ready to upload: where it is, its size, how many files, its checksum."""

    path: Path
    size_bytes: int
    file_count: int
    sha256: str
    built_from: Path | None = None  # the folder it was made from, None for a given ZIP
    skipped_system_files: int = 0


def prepare_archive(
    source: Path,
    output: Path,
    *,
    allow_single_folder: bool = False,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> AssetArchive:
    """Zip a folder into `output`, or check a given ZIP; raise AssetArchiveError if unfit."""
    if source.is_dir():
        return build_archive(source, output, allow_single_folder=allow_single_folder)
    if source.is_file():
        return check_archive(source, allow_single_folder=allow_single_folder, limits=limits)
    raise AssetArchiveError(f"{source} is neither a folder nor a ZIP file")


def build_archive(folder: Path, output: Path, *, allow_single_folder: bool = False) -> AssetArchive:
    """Zip the folder's contents (not the folder itself) reproducibly into `output`."""
    if output.resolve().is_relative_to(folder.resolve()):
        # It would end up inside itself on the next run.
        raise AssetArchiveError(f"the archive {output} must be written outside {folder}")
    files, skipped = _files_of(folder)
    if not files:
        raise AssetArchiveError(f"{folder} has no files to upload")
    _check_layout([name for name, _ in files], f"folder {folder}", allow_single_folder)
    output.parent.mkdir(parents=True, exist_ok=True)
    root_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with zipfile.ZipFile(
            output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6
        ) as zip_:
            for name, path in files:
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = _UNIX
                info.external_attr = _FILE_MODE
                with _open_inside(root_fd, name, path) as source:
                    info.file_size = os.fstat(source.fileno()).st_size
                    with zip_.open(info, "w") as target:
                        shutil.copyfileobj(source, target, _CHUNK_BYTES)
    except AssetArchiveError:
        output.unlink(missing_ok=True)
        raise
    finally:
        os.close(root_fd)
    return AssetArchive(
        path=output,
        size_bytes=output.stat().st_size,
        file_count=len(files),
        sha256=file_sha256(output),
        built_from=folder,
        skipped_system_files=skipped,
    )


def check_archive(
    path: Path, *, allow_single_folder: bool = False, limits: ArchiveLimits = DEFAULT_LIMITS
) -> AssetArchive:
    """Check a given ZIP: readable, every checksum right, safe names and entry types, within
    `limits` once unpacked, contents at the root."""
    try:
        with zipfile.ZipFile(path) as zip_:
            entries = zip_.infolist()
            # Names and types first: nothing is decompressed for an archive refused anyway.
            for entry in entries:
                _check_entry_name(entry.filename, path)
                _check_entry_type(entry, path)
            _check_declared_sizes(entries, path, limits)
            # Reads every member (streamed): a truncated or corrupt archive is caught here,
            # before minutes of upload, rather than by SRP later.
            _read_within_limits(zip_, entries, path, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as error:
        raise AssetArchiveError(f"{path} is not a readable ZIP archive: {error}") from None
    names = [
        entry.filename
        for entry in entries
        if not entry.is_dir() and not _is_system_path(entry.filename)
    ]
    if not names:
        raise AssetArchiveError(f"{path} contains no files")
    _check_layout(names, f"archive {path}", allow_single_folder)
    return AssetArchive(
        path=path,
        size_bytes=path.stat().st_size,
        file_count=sum(1 for entry in entries if not entry.is_dir()),
        sha256=file_sha256(path),
    )


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _files_of(folder: Path) -> tuple[list[tuple[str, Path]], int]:
    """(archive name, path) of every regular file under `folder`, sorted; and the skipped count."""
    files: list[tuple[str, Path]] = []
    skipped = 0
    # os.walk never descends into a linked folder; every link is refused below.
    for directory, subdirectories, names in os.walk(folder, onerror=_raise):
        here = Path(directory)
        for name in list(subdirectories):
            if name in SYSTEM_FOLDERS:
                subdirectories.remove(name)
                skipped += 1
            elif (here / name).is_symlink():
                raise _link_refused(here / name)
        for name in names:
            path = here / name
            if name in SYSTEM_FILES:
                skipped += 1
                continue
            if path.is_symlink():
                raise _link_refused(path)
            if not path.is_file():  # a socket, a device, a named pipe
                raise AssetArchiveError(f"{path} is not a regular file")
            relative = path.relative_to(folder).as_posix()
            files.append((relative, path))
    # Sorted by the archive name, so the order never depends on the file system.
    files.sort(key=lambda item: item[0])
    return files, skipped


def _link_refused(path: Path) -> AssetArchiveError:
    # Refused rather than resolved: a link that points inside the folder today can point at
    # ~/.aws/credentials tomorrow, and asset packs from third parties are not ours to trust.
    return AssetArchiveError(
        f"{path} is a symbolic link (to {os.readlink(path)}): links are never uploaded, "
        "copy the file or folder it points to into the folder instead"
    )


def _open_inside(root_fd: int, name: str, shown: Path) -> BinaryIO:
    """Open the regular file `name` under the folder, following no link on the way.

    The walk refused links already; this closes the gap of one swapped in since then.
    """
    *folders, file_name = name.split("/")
    directory_fd = os.dup(root_fd)
    try:
        for part in folders:
            next_fd = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory_fd
            )
            os.close(directory_fd)
            directory_fd = next_fd
        file_fd = os.open(file_name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise AssetArchiveError(
                f"{shown} became a symbolic link while the archive was built: links are "
                "never uploaded"
            ) from None
        raise AssetArchiveError(f"cannot read {shown}: {error.strerror}") from None
    finally:
        os.close(directory_fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise AssetArchiveError(f"{shown} is not a regular file")
    return os.fdopen(file_fd, "rb")


def _check_entry_type(entry: zipfile.ZipInfo, archive: Path) -> None:
    # Unix tools keep the file type in the high 16 bits; SRP's extractor may honour it.
    mode = entry.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise AssetArchiveError(
            f"{archive} has a symbolic link entry {entry.filename!r}: links are never uploaded"
        )
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise AssetArchiveError(
            f"{archive} has an entry {entry.filename!r} that is neither a file nor a folder"
        )


def _check_declared_sizes(
    entries: list[zipfile.ZipInfo], archive: Path, limits: ArchiveLimits
) -> None:
    # A quick refusal of an archive that admits to being too big; the read below still
    # counts what really comes out.
    for entry in entries:
        if entry.file_size > limits.max_entry_bytes:
            raise _too_big(archive, entry.filename, limits.max_entry_bytes, "--max-file-size")
    if sum(entry.file_size for entry in entries) > limits.max_total_bytes:
        raise _too_big(archive, None, limits.max_total_bytes, "--max-unpacked-size")


def _read_within_limits(
    zip_: zipfile.ZipFile, entries: list[zipfile.ZipInfo], archive: Path, limits: ArchiveLimits
) -> None:
    """Decompress every member once (checking its CRC), stopping at the first limit passed."""
    total = 0
    for entry in entries:
        if entry.is_dir():
            continue
        unpacked = 0
        # zipfile reads at most compress_size bytes of the archive for this entry.
        compressed = max(entry.compress_size, 1)
        with zip_.open(entry) as member:
            while chunk := member.read(_CHUNK_BYTES):
                unpacked += len(chunk)
                total += len(chunk)
                if unpacked > limits.max_entry_bytes:
                    raise _too_big(
                        archive, entry.filename, limits.max_entry_bytes, "--max-file-size"
                    )
                if total > limits.max_total_bytes:
                    raise _too_big(archive, None, limits.max_total_bytes, "--max-unpacked-size")
                if unpacked > limits.ratio_grace_bytes and unpacked / compressed > limits.max_ratio:
                    raise AssetArchiveError(
                        f"{archive}: entry {entry.filename!r} unpacks to more than "
                        f"{limits.max_ratio:g} times its compressed size ({compressed:,} bytes): "
                        "a decompression bomb, or pass a higher --max-compression-ratio"
                    )


def _too_big(archive: Path, entry: str | None, limit: int, flag: str) -> AssetArchiveError:
    what = f"entry {entry!r} unpacks" if entry is not None else "its entries together unpack"
    return AssetArchiveError(
        f"{archive}: {what} to more than {limit:,} bytes; pass a higher {flag} if the "
        "collection really needs that much"
    )


def _raise(error: OSError) -> None:
    raise AssetArchiveError(f"cannot read {error.filename}: {error.strerror}")


def _is_system_path(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and (parts[0] in SYSTEM_FOLDERS or parts[-1] in SYSTEM_FILES)


def _check_entry_name(name: str, archive: Path) -> None:
    # SRP extracts the archive: a name that climbs out of its folder is never a resource.
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise AssetArchiveError(f"{archive} has an unsafe entry name {name!r}")


def _check_layout(names: list[str], what: str, allow_single_folder: bool) -> None:
    """Refuse an extra nesting level: every file under one top-level folder."""
    if allow_single_folder:
        return
    tops = {PurePosixPath(name).parts[0] for name in names}
    nested = all(len(PurePosixPath(name).parts) > 1 for name in names)
    if nested and len(tops) == 1:
        top = tops.pop()
        raise AssetArchiveError(
            f"every file of the {what} sits under one folder, {top!r}: SRP wants the resource "
            f"folder's contents at the root of the archive. Pass the folder {top!r} itself "
            "(srp-bundle zips its contents), or zip from inside it; if the collection really "
            "has a single top-level folder, pass --allow-single-folder"
        )
