"""The asset ZIP: reproducible from a folder, contents at the root, given ZIPs checked."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pytest

from srp_bundle import asset_archive
from srp_bundle.asset_archive import (
    DEFAULT_LIMITS,
    ZIP_EPOCH,
    ArchiveLimits,
    build_archive,
    check_archive,
    prepare_archive,
)
from srp_bundle.errors import AssetArchiveError


def make_folder(root: Path) -> Path:
    """A resource folder with nested files, written in a non-alphabetical order."""
    folder = root / "resources"
    for name, data in (
        ("textures/wood.png", b"\x89PNG wood"),
        ("scene.blend", b"BLENDER" * 1000),
        ("backgrounds/RareFlare3.png", b"\x89PNG flare"),
        ("Audio/theme.ogg", b"OggS"),
    ):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def test_a_folder_gives_the_same_bytes_whatever_the_timestamps_and_permissions(
    tmp_path: Path,
) -> None:
    folder = make_folder(tmp_path)
    first = build_archive(folder, tmp_path / "first.zip")
    for index, path in enumerate(sorted(folder.rglob("*"))):
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index * 7))
        if path.is_file():
            path.chmod(0o600 if index % 2 else 0o755)

    second = build_archive(folder, tmp_path / "second.zip")

    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256
    assert first.file_count == 4 and first.size_bytes == first.path.stat().st_size


def test_entries_are_sorted_dated_at_the_zip_epoch_and_sit_at_the_root(tmp_path: Path) -> None:
    archive = build_archive(make_folder(tmp_path), tmp_path / "out.zip")

    with zipfile.ZipFile(archive.path) as zip_:
        infos = zip_.infolist()
        assert [info.filename for info in infos] == [
            "Audio/theme.ogg",
            "backgrounds/RareFlare3.png",
            "scene.blend",
            "textures/wood.png",
        ]
        assert {info.date_time for info in infos} == {ZIP_EPOCH}
        assert {info.external_attr >> 16 for info in infos} == {0o100644}
        assert zip_.read("scene.blend") == b"BLENDER" * 1000


def test_system_files_and_empty_folders_are_left_out(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._scene.blend").write_bytes(b"x")
    (folder / "empty").mkdir()

    archive = build_archive(folder, tmp_path / "out.zip")

    assert archive.file_count == 4
    assert archive.skipped_system_files == 2
    assert len(zipfile.ZipFile(archive.path).namelist()) == 4


def test_a_folder_holding_only_one_folder_is_refused_with_a_hint(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    make_folder(parent)

    with pytest.raises(AssetArchiveError, match="sits under one folder, 'resources'") as raised:
        build_archive(parent, tmp_path / "out.zip")

    assert "Pass the folder 'resources' itself" in str(raised.value)
    assert not (tmp_path / "out.zip").exists()
    archive = build_archive(parent, tmp_path / "out.zip", allow_single_folder=True)
    assert zipfile.ZipFile(archive.path).namelist()[0].startswith("resources/")


def test_an_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    with pytest.raises(AssetArchiveError, match="no files"):
        build_archive(tmp_path / "empty", tmp_path / "out.zip")


def test_a_link_to_a_folder_is_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "elsewhere").symlink_to(tmp_path)

    with pytest.raises(AssetArchiveError, match="elsewhere is a symbolic link"):
        build_archive(folder, tmp_path / "out.zip")


def write_zip(path: Path, names: list[str]) -> Path:
    """A ZIP with these entries (a trailing slash makes a folder entry)."""
    with zipfile.ZipFile(path, "w") as zip_:
        for name in names:
            zip_.writestr(name, b"" if name.endswith("/") else f"data of {name}".encode())
    return path


def test_a_given_zip_with_contents_at_the_root_is_accepted_as_it_is(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ok.zip", ["scene.blend", "textures/", "textures/a.png"])

    archive = check_archive(path)

    assert archive.path == path and archive.built_from is None
    assert archive.file_count == 2
    assert archive.size_bytes == path.stat().st_size


def test_a_given_zip_with_an_extra_nesting_level_is_refused(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "nested.zip",
        ["assets/", "assets/scene.blend", "assets/textures/a.png", "__MACOSX/assets/._x"],
    )

    with pytest.raises(AssetArchiveError, match="sits under one folder, 'assets'"):
        check_archive(path)
    assert check_archive(path, allow_single_folder=True).file_count == 3


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "C:/windows.png", "a/../../b"])
def test_a_given_zip_with_an_unsafe_name_is_refused(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "unsafe.zip", ["scene.blend", name])

    with pytest.raises(AssetArchiveError, match="unsafe entry name"):
        check_archive(path)


def test_a_corrupt_or_truncated_zip_is_refused_before_any_upload(tmp_path: Path) -> None:
    good = build_archive(make_folder(tmp_path), tmp_path / "good.zip").path
    member = zipfile.ZipFile(good).getinfo("scene.blend")
    data = bytearray(good.read_bytes())
    # A byte inside the member's compressed data (after its 30-byte header and its name).
    data[member.header_offset + 30 + len(member.filename) + 5] ^= 0xFF
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:-30])
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("not a zip")

    for path, words in (
        (corrupt, "corrupt|not a readable"),
        (truncated, "not a readable"),
        (not_zip, "not a readable"),
    ):
        with pytest.raises(AssetArchiveError, match=words):
            check_archive(path)


def test_prepare_archive_picks_the_right_path_and_refuses_what_is_neither(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)

    built = prepare_archive(folder, tmp_path / "built.zip")
    checked = prepare_archive(built.path, tmp_path / "unused.zip")

    assert built.built_from == folder and checked.built_from is None
    assert checked.sha256 == built.sha256
    assert not (tmp_path / "unused.zip").exists()
    with pytest.raises(AssetArchiveError, match="neither a folder nor a ZIP"):
        prepare_archive(tmp_path / "missing", tmp_path / "x.zip")


def test_an_archive_written_inside_the_folder_is_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)

    with pytest.raises(AssetArchiveError, match="outside"):
        build_archive(folder, folder / "textures" / "assets.zip")
    assert not (folder / "textures" / "assets.zip").exists()


# ---- links, entry types and unpacked size (issue 21, item 7) ------------------------------


def test_a_link_to_a_file_outside_the_folder_is_refused_naming_it(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2")
    folder = make_folder(tmp_path)
    (folder / "textures" / "wood-normal.png").symlink_to(secret)

    with pytest.raises(AssetArchiveError, match=r"wood-normal\.png is a symbolic link") as raised:
        build_archive(folder, tmp_path / "out.zip")

    assert str(secret) in str(raised.value)
    assert not (tmp_path / "out.zip").exists()


def test_a_link_to_a_file_inside_the_folder_is_refused_too(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "scene-copy.blend").symlink_to(folder / "scene.blend")

    with pytest.raises(AssetArchiveError, match=r"scene-copy\.blend is a symbolic link"):
        build_archive(folder, tmp_path / "out.zip")


def test_a_file_swapped_for_a_link_after_the_walk_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2")
    folder = make_folder(tmp_path)
    walk = asset_archive._files_of

    def walk_then_swap(root: Path) -> tuple[list[tuple[str, Path]], int]:
        listed = walk(root)
        (root / "textures" / "wood.png").unlink()
        (root / "textures" / "wood.png").symlink_to(secret)
        return listed

    monkeypatch.setattr(asset_archive, "_files_of", walk_then_swap)

    with pytest.raises(AssetArchiveError, match=r"wood\.png became a symbolic link"):
        build_archive(folder, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def zip_entry(path: Path, name: str, mode: int, data: bytes = b"target") -> Path:
    """A ZIP with scene.blend and one entry whose Unix mode is `mode`."""
    with zipfile.ZipFile(path, "w") as zip_:
        zip_.writestr("scene.blend", b"BLENDER")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = mode << 16
        zip_.writestr(info, data)
    return path


def test_a_given_zip_with_a_symlink_entry_is_refused_naming_it(tmp_path: Path) -> None:
    path = zip_entry(
        tmp_path / "pack.zip", "textures/wood.png", 0o120777, b"/root/.aws/credentials"
    )

    with pytest.raises(AssetArchiveError, match=r"symbolic link entry 'textures/wood\.png'"):
        check_archive(path)


def test_a_given_zip_with_a_device_entry_is_refused(tmp_path: Path) -> None:
    path = zip_entry(tmp_path / "pack.zip", "dev/null", 0o020666)

    with pytest.raises(AssetArchiveError, match="'dev/null' that is neither a file nor a folder"):
        check_archive(path)


def test_regular_unix_entries_pass(tmp_path: Path) -> None:
    path = zip_entry(tmp_path / "pack.zip", "textures/wood.png", 0o100644)

    assert check_archive(path).file_count == 2


def bomb(path: Path, name: str, unpacked: int) -> Path:
    """A ZIP of scene.blend plus `unpacked` zero bytes under `name` (deflate: about 1000:1)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zip_:
        zip_.writestr("scene.blend", b"BLENDER")
        with zip_.open(name, "w") as member:
            for _ in range(unpacked // (1024 * 1024)):
                member.write(bytes(1024 * 1024))
    return path


def lie_about_sizes(path: Path, declared: int) -> Path:
    """Rewrite every declared uncompressed size (local and central headers) to `declared`."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zip_:
        infos = zip_.infolist()
    for info in infos:
        local = info.header_offset
        struct.pack_into("<I", data, local + 22, declared)
    central = data.find(b"PK\x01\x02")
    while central != -1:
        struct.pack_into("<I", data, central + 24, declared)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    return path


def test_a_zip_that_unpacks_past_the_per_entry_limit_is_refused_naming_the_entry(
    tmp_path: Path,
) -> None:
    path = bomb(tmp_path / "pack.zip", "textures/zeros.raw", 8 * 1024 * 1024)
    limits = ArchiveLimits(max_entry_bytes=4 * 1024 * 1024, max_ratio=10_000)

    with pytest.raises(AssetArchiveError, match=r"entry 'textures/zeros.raw' unpacks to more"):
        check_archive(path, limits=limits)
    assert check_archive(path, limits=ArchiveLimits(max_ratio=10_000)).file_count == 2


def test_a_zip_that_unpacks_past_the_total_limit_is_refused(tmp_path: Path) -> None:
    path = bomb(tmp_path / "pack.zip", "zeros.raw", 4 * 1024 * 1024)
    limits = ArchiveLimits(max_total_bytes=3 * 1024 * 1024, max_ratio=10_000)

    with pytest.raises(AssetArchiveError, match="entries together unpack to more than 3,145,728"):
        check_archive(path, limits=limits)


def test_declared_sizes_are_not_trusted_the_bytes_read_are_counted(tmp_path: Path) -> None:
    # Headers claiming 1 KiB for 4 MiB of zeros: a limit of 3 MiB must still stop the read.
    path = lie_about_sizes(bomb(tmp_path / "pack.zip", "zeros.raw", 4 * 1024 * 1024), 1024)
    with zipfile.ZipFile(path) as zip_:
        assert {info.file_size for info in zip_.infolist()} == {1024}
    limits = ArchiveLimits(max_total_bytes=3 * 1024 * 1024, max_ratio=10_000)

    with pytest.raises(AssetArchiveError, match=r"unpack|not a readable|corrupt"):
        check_archive(path, limits=limits)


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path: Path) -> None:
    path = bomb(tmp_path / "pack.zip", "zeros.raw", 8 * 1024 * 1024)

    with pytest.raises(AssetArchiveError, match="more than 100 times its compressed size"):
        check_archive(path)
    assert check_archive(path, limits=ArchiveLimits(max_ratio=10_000)).file_count == 2


def test_the_default_limits_say_what_they_are() -> None:
    assert DEFAULT_LIMITS.max_total_bytes == 16 * 1024**3
    assert DEFAULT_LIMITS.max_entry_bytes == 4 * 1024**3
    assert DEFAULT_LIMITS.max_ratio == 100
