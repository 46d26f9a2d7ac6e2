"""Media kinds from the bytes, and ffmpeg/ffprobe kept to the one local file they are given."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pyvips

from local_stack import media_samples
from srp_bundle import media
from srp_bundle.errors import (
    CorruptMediaError,
    MediaResourceLimitError,
    MediaTimeoutError,
    TooManyPixelsError,
)
from srp_bundle.media import MediaKind, Sniffed
from srp_bundle.media_budget import DEFAULT_MEDIA_MEMORY_BYTES, ChildLimits, MediaBudget
from srp_bundle.render_outputs import Limits, process_output_file
from srp_bundle.settings import DerivativeSpec

SPECS = (DerivativeSpec(128, "webp"),)


def limits(
    *,
    timeout_seconds: float = 60.0,
    cpu_seconds: int = 120,
    memory_bytes: int = DEFAULT_MEDIA_MEMORY_BYTES,
) -> ChildLimits:
    """Limits of one child run, generous unless a test narrows one."""
    return ChildLimits(timeout_seconds, cpu_seconds, memory_bytes)


def glb_with_json(text: bytes) -> bytes:
    """A GLB whose JSON chunk is `text`, padded to 4 bytes."""
    text += b" " * (-len(text) % 4)
    chunk = struct.pack("<I4s", len(text), b"JSON") + text
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunk)) + chunk


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
        media.run_tool(["sleep", "30"], limits=limits(timeout_seconds=0.2), what="sleep")
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
        media.probe(
            str(playlist), as_playlist, max_seconds=60, max_pixels=10**7, budget=MediaBudget(60)
        )

    assert request_listener.requests == []


# ---- glTF JSON within limits ---------------------------------------------------------------


def test_a_glb_nested_too_deeply_is_rejected_not_a_crash(tmp_path: Path) -> None:
    # Without the depth limit json.loads raises RecursionError: a crash, retried for 24 h.
    path = tmp_path / "scene.glb"
    path.write_bytes(glb_with_json(b'{"asset": {"version": "2.0"}, "extras": ' + b"[" * 100_000))

    with pytest.raises(CorruptMediaError, match="deeper than 64"):
        media.describe_model(str(path), media.sniff_media(path.read_bytes()))


def test_a_glb_json_chunk_over_the_limit_is_rejected_before_it_is_read(tmp_path: Path) -> None:
    padding = "x" * (media.MAX_GLTF_JSON_BYTES + 1024)
    document = json.dumps({"asset": {"version": "2.0"}, "extras": padding}).encode()
    path = tmp_path / "scene.glb"
    path.write_bytes(glb_with_json(document))

    with pytest.raises(CorruptMediaError, match="above the limit"):
        media.describe_model(str(path), media.sniff_media(path.read_bytes()))


def test_a_gltf_nested_too_deeply_is_described_as_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "scene.gltf"
    path.write_bytes(b'{"asset": {"version": "2.0"}, "extras": ' + b"[" * 100_000)

    sniffed, details = media.describe_model(str(path), media.sniff_media(path.read_bytes()))

    assert (sniffed.kind, sniffed.format, details) == (MediaKind.OTHER, "json", {})


# ---- one budget per file -------------------------------------------------------------------


class SteppingClock:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_tool_run_for_a_file_shares_one_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dark opening: ffprobe, three poster attempts and a preview, five runs in all.
    path = tmp_path / "render.mp4"
    path.write_bytes(media_samples.video("mp4", seconds=2.0, black_lead_seconds=1.0))
    clock = SteppingClock()
    given: list[tuple[str, float]] = []
    real_run_tool = media.run_tool

    def each_run_takes_30_seconds(command: list[str], *, limits: ChildLimits, what: str) -> bytes:
        given.append((what, limits.timeout_seconds))
        output = real_run_tool(command, limits=limits, what=what)
        clock.now += 30
        return output

    monkeypatch.setattr(media, "run_tool", each_run_takes_30_seconds)
    budget = MediaBudget(120, clock=clock)

    with pytest.raises(MediaTimeoutError, match="budget of 120 s was spent"):
        process_output_file(str(path), SPECS, Limits(10**7, 60, 120.0), budget=budget)

    # Each run gets only what is left; before, each got the full 120 s (600 s in all).
    assert given == [
        ("ffprobe", 120),
        ("ffmpeg (poster)", 90),
        ("ffmpeg (poster)", 60),
        ("ffmpeg (poster)", 30),
    ]


def test_libvips_work_is_killed_when_the_deadline_passes() -> None:
    clock = SteppingClock()
    budget = MediaBudget(10, clock=clock)
    image = pyvips.Image.black(4000, 4000).gaussblur(3)
    clock.now = 11  # the deadline passed while libvips was about to work

    with pytest.raises(pyvips.Error, match="killed"):
        budget.bound_vips(image).avg()


# ---- child processes under kernel limits ---------------------------------------------------


def test_a_child_over_its_cpu_limit_is_killed_and_the_file_rejected() -> None:
    # Wall time alone would stop it only after 60 s, as media_timeout.
    with pytest.raises(MediaResourceLimitError, match="1 CPU seconds") as raised:
        media.run_tool(
            ["sh", "-c", "while :; do :; done"],
            limits=limits(timeout_seconds=60, cpu_seconds=1),
            what="a busy loop",
        )
    assert raised.value.code == "media_resource_limit"


def test_ffmpeg_over_its_address_space_limit_is_stopped_and_the_file_rejected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "render.mp4"
    path.write_bytes(media_samples.video("mp4", width=64, height=64, seconds=0.5))
    sniffed = media.sniff_media(path.read_bytes())
    # The control: the default limit leaves room for ffmpeg.
    assert media.extract_frame(
        str(path), sniffed, 0.1, max_pixels=10**7, budget=MediaBudget(60)
    ).startswith(b"\x89PNG")

    tight = MediaBudget(60, memory_bytes=64 * 1024 * 1024)
    with pytest.raises(MediaResourceLimitError, match="64 MiB address space") as raised:
        media.extract_frame(str(path), sniffed, 0.1, max_pixels=10**7, budget=tight)
    assert raised.value.code == "media_resource_limit"


def test_every_ffmpeg_run_bounds_its_threads_and_pixels() -> None:
    sniffed = media.sniff_media(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
    command = media._ffmpeg("/tmp/x.mp4", sniffed, 12345, (), ("pipe:1",))
    before_input = command[: command.index("-i")]
    assert before_input[before_input.index("-threads") + 1] == "2"  # decoder threads
    assert before_input[before_input.index("-max_pixels") + 1] == "12345"
    assert "-xerror" in before_input
    after_input = command[command.index("-i") :]
    assert after_input[after_input.index("-threads") + 1] == "2"  # encoder threads


# ---- the decoder enforces the pixel limit --------------------------------------------------


def test_a_video_whose_frames_grow_past_the_pixel_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "render.mp4"
    path.write_bytes(media_samples.video_that_grows(first=(64, 64), then=(640, 480)))
    # ffprobe sees only the first size, inside the limit.
    sniffed = media.sniff_media(path.read_bytes())
    probed = media.probe(
        str(path), sniffed, max_seconds=60, max_pixels=10_000, budget=MediaBudget(60)
    )
    assert (probed.width, probed.height) == (64, 64)

    with pytest.raises(TooManyPixelsError, match="640x480 exceeds") as raised:
        process_output_file(str(path), SPECS, Limits(10_000, 60, 60.0))
    assert raised.value.code == "too_many_pixels"
    # The control: under a limit it fits, the same file is processed.
    processed = process_output_file(str(path), SPECS, Limits(640 * 480, 60, 60.0))
    assert processed.description["kind"] == "video"
