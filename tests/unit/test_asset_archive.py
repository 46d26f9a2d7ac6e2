"""The asset ZIP: reproducible from a folder, contents at the root, given ZIPs checked."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from srp_bundle.asset_archive import ZIP_EPOCH, build_archive, check_archive, prepare_archive
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

    with pytest.raises(AssetArchiveError, match="link to a folder"):
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
