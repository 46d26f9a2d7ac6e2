"""A collection's assets as SRP wants them: one ZIP whose root is the resource folder's root.

`prepare_archive(source, output)` takes a folder (zipped reproducibly into `output`) or a
ZIP (checked as it is) and returns an `AssetArchive`. Both are streamed: no file is ever
read into memory whole, so a multi-gigabyte scene costs the same memory as a small one.

A folder gives the same bytes every time: entries sorted by path, every timestamp
1980-01-01 00:00:00 (the ZIP epoch), fixed permissions, no extra fields. Files the
operating system's file browsers leave behind (`.DS_Store`, `Thumbs.db`, `__MACOSX/`)
are left out, as are empty folders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from srp_bundle.errors import AssetArchiveError

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
SYSTEM_FOLDERS = frozenset({"__MACOSX"})
_FILE_MODE = (stat.S_IFREG | 0o644) << 16
_UNIX = 3
_CHUNK_BYTES = 1024 * 1024


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
    source: Path, output: Path, *, allow_single_folder: bool = False
) -> AssetArchive:
    """Zip a folder into `output`, or check a given ZIP; raise AssetArchiveError if unfit."""
    if source.is_dir():
        return build_archive(source, output, allow_single_folder=allow_single_folder)
    if source.is_file():
        return check_archive(source, allow_single_folder=allow_single_folder)
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
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zip_:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _UNIX
            info.external_attr = _FILE_MODE
            info.file_size = path.stat().st_size
            with path.open("rb") as source, zip_.open(info, "w") as target:
                shutil.copyfileobj(source, target, _CHUNK_BYTES)
    return AssetArchive(
        path=output,
        size_bytes=output.stat().st_size,
        file_count=len(files),
        sha256=file_sha256(output),
        built_from=folder,
        skipped_system_files=skipped,
    )


def check_archive(path: Path, *, allow_single_folder: bool = False) -> AssetArchive:
    """Check a given ZIP: readable, every checksum right, safe names, contents at the root."""
    try:
        with zipfile.ZipFile(path) as zip_:
            entries = zip_.infolist()
            # Reads every member (streamed): a truncated or corrupt archive is caught here,
            # before minutes of upload, rather than by SRP later.
            broken = zip_.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as error:
        raise AssetArchiveError(f"{path} is not a readable ZIP archive: {error}") from None
    if broken is not None:
        raise AssetArchiveError(f"{path} is corrupt: the checksum of {broken!r} does not match")
    names = []
    for entry in entries:
        _check_entry_name(entry.filename, path)
        if not entry.is_dir() and not _is_system_path(entry.filename):
            names.append(entry.filename)
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
    for directory, subdirectories, names in os.walk(folder, onerror=_raise):
        here = Path(directory)
        for name in list(subdirectories):
            if name in SYSTEM_FOLDERS:
                subdirectories.remove(name)
                skipped += 1
            elif (here / name).is_symlink():
                raise AssetArchiveError(
                    f"{here / name} is a link to a folder: copy the folder in instead"
                )
        for name in names:
            path = here / name
            if name in SYSTEM_FILES:
                skipped += 1
                continue
            if not path.is_file():  # a broken link, a socket, a device
                raise AssetArchiveError(f"{path} is not a regular file")
            relative = path.relative_to(folder).as_posix()
            files.append((relative, path))
    # Sorted by the archive name, so the order never depends on the file system.
    files.sort(key=lambda item: item[0])
    return files, skipped


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
