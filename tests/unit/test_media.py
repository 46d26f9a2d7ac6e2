"""Media kinds from the bytes, and ffmpeg/ffprobe kept to the one local file they are given."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from local_stack import media_samples
from srp_bundle import media
from srp_bundle.errors import CorruptMediaError, MediaTimeoutError
from srp_bundle.media import MediaKind, Sniffed


@pytest.mark.parametrize(
    ("head", "kind", "image_format"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(30), MediaKind.IMAGE, "png"),
        (b"GIF89a" + bytes(30), MediaKind.IMAGE, "gif"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", MediaKind.VIDEO, "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", MediaKind.VIDEO, "mov"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", MediaKind.IMAGE, "avif"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isom", MediaKind.AUDIO, "m4a"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", MediaKind.VIDEO, "webm"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", MediaKind.AUDIO, "wav"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", MediaKind.AUDIO, "mp3"),
        (b"\xff\xfb\x90\x00" + bytes(10), MediaKind.AUDIO, "mp3"),
        (b"OggS\x00\x02" + bytes(10), MediaKind.AUDIO, "ogg"),
        (b"fLaC\x00\x00\x00\x22", MediaKind.AUDIO, "flac"),
        (b"glTF\x02\x00\x00\x00", MediaKind.MODEL, "glb"),
        (b'  {"asset": {"version": "2.0"}}', MediaKind.MODEL, "gltf"),
        (b"PK\x03\x04\x14\x00", MediaKind.OTHER, "zip"),
        (b"Kaydara FBX Binary  \x00", MediaKind.MODEL, "fbx"),
        (b"#EXTM3U\n#EXTINF:1,\nhttp://example.com/a.ts\n", MediaKind.OTHER, "unknown"),
        (b"o cube\nv 0 0 0\n", MediaKind.OTHER, "unknown"),
        (b"", MediaKind.OTHER, "unknown"),
    ],
)
def test_the_kind_comes_from_the_magic_bytes(
    head: bytes, kind: MediaKind, image_format: str
) -> None:
    sniffed = media.sniff_media(head)
    assert (sniffed.kind, sniffed.format) == (kind, image_format)


def test_a_glb_is_described_from_its_json_chunk(tmp_path: Path) -> None:
    path = tmp_path / "scene.glb"
    path.write_bytes(media_samples.glb(meshes=4, nodes=7, materials=3, generator="Houdini"))

    sniffed, details = media.describe_model(str(path), media.sniff_media(path.read_bytes()))

    assert sniffed.format == "glb"
    assert details == {
        "gltf_version": 2,
        "meshes": 4,
        "nodes": 7,
        "materials": 3,
        "generator": "Houdini",
    }


def test_json_without_a_gltf_asset_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(b'{"meshes": [1, 2]}')

    sniffed, details = media.describe_model(str(path), media.sniff_media(path.read_bytes()))

    assert (sniffed.kind, sniffed.format, details) == (MediaKind.OTHER, "json", {})


def test_a_tool_that_runs_too_long_is_killed_and_rejected() -> None:
    with pytest.raises(MediaTimeoutError) as raised:
        media.run_tool(["sleep", "30"], timeout=0.2, what="sleep")
    assert raised.value.code == "media_timeout"


def test_the_protocol_whitelist_stops_a_playlist_even_when_read_as_one(
    tmp_path: Path, request_listener: Any
) -> None:
    playlist = tmp_path / "render.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{request_listener.url}/segment.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    # The control: without our options, ffprobe fetches the segment, so the listener sees it.
    subprocess.run(
        ["ffprobe", "-v", "error", "-protocol_whitelist", "file,http,tcp", str(playlist)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert request_listener.requests == ["/segment.ts"]
    request_listener.requests.clear()

    # Even if the hls demuxer were chosen, the whitelist keeps ffprobe to local files.
    as_playlist = Sniffed(MediaKind.VIDEO, "m3u8", "application/vnd.apple.mpegurl", "hls")
    with pytest.raises(CorruptMediaError):
        media.probe(str(playlist), as_playlist, max_seconds=60, max_pixels=10**7, timeout=60)

    assert request_listener.requests == []
