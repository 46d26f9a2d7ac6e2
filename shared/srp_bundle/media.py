"""What kind of file a render output is, decided from its bytes, and what ffmpeg makes of it.

Pure media work, no storage. `sniff_media(head)` names the kind (image, video, audio,
model, other) from magic numbers only; the declared content type and the name are never
trusted. Video and audio are then probed with `ffprobe`, which decides (a WebM or MP4 with
no video stream is audio) and measures; `ffmpeg` makes the poster frame, the looping
preview and the waveform.

Safety of every ffmpeg/ffprobe run:
- the demuxer is forced to the one the magic bytes named (`-f mov`, `-f matroska`, ...),
  so a file cannot pass itself off as a playlist or a concat list;
- `-protocol_whitelist file,pipe` (inherited by anything the demuxer opens) and our own
  `file:` paths: a crafted file cannot make ffmpeg open a URL, and drefs stay off;
- one deadline per file (`MediaBudget`, MEDIA_TIMEOUT_SECONDS) shared by every run: each
  run gets only the time left, after which it is killed and the file rejected as
  `media_timeout`;
- each run under RLIMIT_AS and RLIMIT_CPU (`media_budget.ChildLimits`): over either, it
  is stopped and the file rejected as `media_resource_limit`;
- `-threads TOOL_THREADS` for decoders, filters and encoders;
- limits checked on the probe before anything is decoded: duration, pixels per frame;
  and `-max_pixels` makes the decoder itself refuse any larger frame (a later stream or
  a mid-stream size change the probe never saw), with `-xerror` so ffmpeg stops there
  instead of skipping it; the file is rejected as `too_many_pixels`;
- only the probed stream is decoded (`-map 0:v:0`);
- outputs go to a pipe; the caller owns the one temporary directory and removes it.

Over 300 lines: kind detection, ffprobe, posters, previews, waveforms and glTF all run
through one hardened `run_tool`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import struct
import subprocess
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from srp_bundle.derivatives import check_pixel_limit, mean_luma, sniff_image_format
from srp_bundle.errors import (
    CorruptMediaError,
    InvalidMessageError,
    MediaResourceLimitError,
    MediaTimeoutError,
    MediaTooLongError,
    TooManyPixelsError,
)
from srp_bundle.json_limits import parse_json
from srp_bundle.media_budget import TOOL_THREADS, ChildLimits, MediaBudget

HEAD_BYTES = 4096
FFMPEG = os.environ.get("SRP_FFMPEG", "ffmpeg")
FFPROBE = os.environ.get("SRP_FFPROBE", "ffprobe")
# Every input is local: the file we downloaded. Nothing else may be opened.
_INPUT_SAFETY = ("-protocol_whitelist", "file,pipe")
_QUIET = ("-hide_banner", "-loglevel", "error")
_PNG_TO_PIPE = ("-f", "image2pipe", "-c:v", "png", "pipe:1")
_THREADS = ("-threads", str(TOOL_THREADS))
# What ffmpeg's image checks print when a frame is over `-max_pixels`.
_OVER_MAX_PIXELS = "exceeds specified max pixel count"
_OUT_OF_MEMORY = ("cannot allocate memory", "failed to map segment", "out of memory", "bad_alloc")
# A frame this dark (mean luma, 0..255) is a fade or a black leader, not a poster.
POSTER_MIN_LUMA = 24.0
POSTER_POSITIONS = (0.10, 0.25, 0.50)
PREVIEW_SECONDS = 3.0
PREVIEW_MIN_SECONDS = 1.0
PREVIEW_FPS = 10
PREVIEW_SIZE = 320
PREVIEW_QUALITY = 60
WAVEFORM_SIZE = (1024, 256)
WAVEFORM_COLOUR = "0x2563eb"
# glTF JSON is parsed whole: json.loads needs up to ~25x its size in memory for a chunk
# of tiny objects (bench/media_worker.py measures it), so 16 MiB stays under ~450 MB.
MAX_GLTF_JSON_BYTES = 16 * 1024 * 1024
MAX_GLTF_JSON_DEPTH = 64


class MediaKind(StrEnum):
    """The kind of a render output, which decides what post-processing makes of it."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    MODEL = "model"
    OTHER = "other"


@dataclass(frozen=True)
class Sniffed:
    """What the magic bytes say: kind, format, content type, and ffmpeg's demuxer if any."""

    kind: MediaKind
    format: str
    content_type: str
    demuxer: str | None = None


_OTHER = Sniffed(MediaKind.OTHER, "unknown", "application/octet-stream")


def sniff_media(head: bytes) -> Sniffed:
    """The kind and format named by a file's first bytes (at least 64, ideally HEAD_BYTES)."""
    image_format = sniff_image_format(head)
    if image_format is not None:
        demuxer = "gif" if image_format == "gif" else None
        return Sniffed(MediaKind.IMAGE, image_format, f"image/{image_format}", demuxer)
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return Sniffed(MediaKind.VIDEO, "mov", "video/quicktime", "mov")
        if brand in (b"M4A ", b"M4B "):
            return Sniffed(MediaKind.AUDIO, "m4a", "audio/mp4", "mov")
        return Sniffed(MediaKind.VIDEO, "mp4", "video/mp4", "mov")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        if b"webm" in head[:64]:
            return Sniffed(MediaKind.VIDEO, "webm", "video/webm", "matroska")
        return Sniffed(MediaKind.VIDEO, "mkv", "video/x-matroska", "matroska")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Sniffed(MediaKind.AUDIO, "wav", "audio/wav", "wav")
    if head.startswith(b"OggS"):
        return Sniffed(MediaKind.AUDIO, "ogg", "audio/ogg", "ogg")
    if head.startswith(b"fLaC"):
        return Sniffed(MediaKind.AUDIO, "flac", "audio/flac", "flac")
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Sniffed(MediaKind.AUDIO, "mp3", "audio/mpeg", "mp3")
    if head.startswith(b"glTF"):
        return Sniffed(MediaKind.MODEL, "glb", "model/gltf-binary")
    if head.startswith(b"PK\x03\x04"):
        return Sniffed(MediaKind.OTHER, "zip", "application/zip")
    if head.startswith(b"Kaydara FBX Binary"):
        return Sniffed(MediaKind.MODEL, "fbx", "application/octet-stream")
    if head.lstrip()[:1] == b"{":
        # glTF is JSON: `describe_model` confirms it (an `asset` object) or calls it JSON.
        return Sniffed(MediaKind.MODEL, "gltf", "model/gltf+json")
    return _OTHER


# ---- ffprobe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaProbe:
    """What ffprobe measured: the kind it confirms and the figures the record keeps."""

    kind: MediaKind
    duration: float
    details: dict[str, Any] = field(default_factory=dict)
    width: int = 0
    height: int = 0


def probe(
    path: str,
    sniffed: Sniffed,
    *,
    max_seconds: int,
    max_pixels: int,
    budget: MediaBudget,
) -> MediaProbe:
    """Probe a video or audio file and check the limits; raise an OutputRejectedError subclass."""
    if sniffed.demuxer is None:
        raise CorruptMediaError(f"no demuxer for {sniffed.format}")
    command = [
        FFPROBE,
        *_QUIET,
        *_INPUT_SAFETY,
        *_THREADS,
        "-max_pixels",
        str(max_pixels),
        "-f",
        sniffed.demuxer,
        "-show_entries",
        "format=duration,format_name:stream=codec_type,codec_name,width,height,"
        "avg_frame_rate,r_frame_rate,sample_rate,channels,duration,nb_frames",
        "-of",
        "json",
        f"file:{path}",
    ]
    output = _run(command, budget, "ffprobe")
    try:
        found = json.loads(output)
    except ValueError as error:
        raise CorruptMediaError(f"ffprobe gave no readable answer: {error}") from None
    streams = found.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _number((found.get("format") or {}).get("duration"))
    if duration is None or not math.isfinite(duration) or duration <= 0:
        duration = _number((video or audio or {}).get("duration"))
    if video is None and audio is None:
        raise CorruptMediaError(f"the {sniffed.format} file has no video or audio stream")
    if duration is None or duration <= 0:
        raise CorruptMediaError(f"the {sniffed.format} file has no duration")
    if duration > max_seconds:
        raise MediaTooLongError(
            f"the {sniffed.format} file lasts {duration:.1f} s, above the limit of {max_seconds} s"
        )
    if video is not None and sniffed.kind != MediaKind.AUDIO:
        width, height = int(video.get("width") or 0), int(video.get("height") or 0)
        if width <= 0 or height <= 0:
            raise CorruptMediaError(f"the {sniffed.format} video has no frame size")
        check_pixel_limit(width, height, max_pixels, f"the {sniffed.format} video")
        details = {
            "duration": round(duration, 3),
            "frame_rate": _frame_rate(video),
            "codec": video.get("codec_name"),
            "width": width,
            "height": height,
        }
        if audio is not None:
            details["audio_codec"] = audio.get("codec_name")
        return MediaProbe(MediaKind.VIDEO, duration, details, width, height)
    if audio is None:
        raise CorruptMediaError(f"the {sniffed.format} file has no audio stream")
    details = {
        "duration": round(duration, 3),
        "sample_rate": int(_number(audio.get("sample_rate")) or 0),
        "channels": int(audio.get("channels") or 0),
        "codec": audio.get("codec_name"),
    }
    return MediaProbe(MediaKind.AUDIO, duration, details)


# ---- ffmpeg -------------------------------------------------------------------------------


def extract_frame(
    path: str, sniffed: Sniffed, at_seconds: float, *, max_pixels: int, budget: MediaBudget
) -> bytes:
    """One frame at `at_seconds`, as PNG bytes."""
    seek = ("-ss", f"{max(0.0, at_seconds):.3f}")
    output = ("-map", "0:v:0", "-frames:v", "1", "-an", *_PNG_TO_PIPE)
    command = _ffmpeg(path, sniffed, max_pixels, seek, output)
    frame = _run(command, budget, "ffmpeg (poster)")
    if not frame:
        raise CorruptMediaError(f"no frame could be decoded at {at_seconds:.2f} s")
    return frame


def poster_frame(
    path: str, sniffed: Sniffed, media: MediaProbe, *, max_pixels: int, budget: MediaBudget
) -> tuple[bytes, float]:
    """A representative frame and its time: the first of 10%, 25%, 50% that is not dark.

    Renders often open on black or fade in; 10% of the duration is past most fades, and
    a frame that is still dark there gives way to a later one (the brightest if all are).
    """
    best: tuple[float, bytes, float] | None = None
    for position in POSTER_POSITIONS:
        at = media.duration * position
        frame = extract_frame(path, sniffed, at, max_pixels=max_pixels, budget=budget)
        luma = mean_luma(frame)
        if luma >= POSTER_MIN_LUMA:
            return frame, at
        if best is None or luma > best[0]:
            best = (luma, frame, at)
    assert best is not None
    return best[1], best[2]


def preview_clip(
    path: str,
    sniffed: Sniffed,
    media: MediaProbe,
    *,
    start_at: float,
    max_pixels: int,
    budget: MediaBudget,
) -> bytes:
    """A looping animated WebP of a few seconds, fit inside PREVIEW_SIZE, never upscaled.

    It starts at `start_at` (the poster's time: past a black opening), or earlier when
    that leaves less than PREVIEW_MIN_SECONDS before the end.
    """
    start = max(0.0, min(start_at, media.duration - PREVIEW_MIN_SECONDS))
    length = min(PREVIEW_SECONDS, media.duration - start)
    size = PREVIEW_SIZE
    scale = (
        f"scale=w='min({size},iw)':h='min({size},ih)':force_original_aspect_ratio=decrease,"
        "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    )
    command = _ffmpeg(
        path,
        sniffed,
        max_pixels,
        ("-ss", f"{start:.3f}", "-t", f"{length:.3f}"),
        (
            "-map",
            "0:v:0",
            "-an",
            "-vf",
            f"fps={PREVIEW_FPS},{scale}",
            "-loop",
            "0",
            "-c:v",
            "libwebp_anim",
            "-quality",
            str(PREVIEW_QUALITY),
            "-f",
            "webp",
            "pipe:1",
        ),
    )
    clip = _run(command, budget, "ffmpeg (preview)")
    if not clip:
        raise CorruptMediaError("no preview frames could be decoded")
    return clip


def waveform(path: str, sniffed: Sniffed, *, max_pixels: int, budget: MediaBudget) -> bytes:
    """The whole sound drawn as one waveform PNG (WAVEFORM_SIZE), all channels mixed."""
    width, height = WAVEFORM_SIZE
    # sqrt scale: quiet passages stay visible; draw=full fills the columns.
    draw = (
        f"aformat=channel_layouts=mono,showwavespic=s={width}x{height}"
        f":colors={WAVEFORM_COLOUR}:scale=sqrt:draw=full"
    )
    output = ("-filter_complex", draw, "-frames:v", "1", *_PNG_TO_PIPE)
    command = _ffmpeg(path, sniffed, max_pixels, (), output)
    image = _run(command, budget, "ffmpeg (waveform)")
    if not image:
        raise CorruptMediaError("no audio could be decoded for the waveform")
    return image


def run_tool(command: list[str], *, limits: ChildLimits, what: str) -> bytes:
    """Run ffmpeg/ffprobe under `limits`; its stdout, or an OutputRejectedError saying why."""
    try:
        completed = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=limits.timeout_seconds,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            preexec_fn=limits.apply_in_child,
        )
    except subprocess.TimeoutExpired:
        # subprocess.run has killed and reaped the process.
        raise MediaTimeoutError(
            f"{what} ran out of the file's time ({limits.timeout_seconds:.1f} s left)"
        ) from None
    stderr = completed.stderr.decode("utf-8", "replace")
    if _OVER_MAX_PIXELS in stderr:
        # Even with exit status 0: ffprobe reports a stream it could not open as sizeless.
        line = next(line for line in stderr.splitlines() if _OVER_MAX_PIXELS in line)
        raise TooManyPixelsError(f"{what}: {line.split('] ')[-1].split(',')[0].strip()}")
    if completed.returncode == 0:
        return completed.stdout
    if completed.returncode in (-signal.SIGKILL, -signal.SIGXCPU):
        # Not our timeout (that raised above): the kernel's CPU limit, or the OOM killer.
        raise MediaResourceLimitError(
            f"{what} was killed by signal {-completed.returncode}: over its limit of "
            f"{limits.cpu_seconds} CPU seconds or out of memory"
        )
    if any(marker in stderr.lower() for marker in _OUT_OF_MEMORY):
        raise MediaResourceLimitError(
            f"{what} ran out of its {limits.memory_bytes // (1024 * 1024)} MiB address space"
        )
    message = stderr.strip().splitlines()
    reason = "; ".join(message[-2:]) or f"exit status {completed.returncode}"
    raise CorruptMediaError(f"{what} failed: {reason[:300]}")


def _run(command: list[str], budget: MediaBudget, what: str) -> bytes:
    return run_tool(command, limits=budget.child_limits(what), what=what)


def _ffmpeg(
    path: str,
    sniffed: Sniffed,
    max_pixels: int,
    input_options: tuple[str, ...],
    output: tuple[str, ...],
) -> list[str]:
    """An ffmpeg command line reading only `path`, with the demuxer the bytes named.

    `-xerror`: any decode error (a frame over `-max_pixels` among them) stops ffmpeg,
    instead of a preview or poster made from the frames around it.
    """
    return [
        FFMPEG,
        "-nostdin",
        *_QUIET,
        "-xerror",
        *_INPUT_SAFETY,
        *_THREADS,
        "-max_pixels",
        str(max_pixels),
        "-f",
        _demuxer(sniffed),
        *input_options,
        "-i",
        f"file:{path}",
        "-filter_threads",
        str(TOOL_THREADS),
        "-filter_complex_threads",
        str(TOOL_THREADS),
        *_THREADS,
        *output,
    ]


def _demuxer(sniffed: Sniffed) -> str:
    if sniffed.demuxer is None:
        raise CorruptMediaError(f"no demuxer for {sniffed.format}")
    return sniffed.demuxer


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _frame_rate(stream: dict[str, Any]) -> float | None:
    for key in ("avg_frame_rate", "r_frame_rate"):
        numerator, _, denominator = str(stream.get(key) or "").partition("/")
        try:
            rate = float(numerator) / float(denominator or 1)
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return round(rate, 3)
    return None


# ---- glTF ---------------------------------------------------------------------------------


def describe_model(path: str, sniffed: Sniffed) -> tuple[Sniffed, dict[str, Any]]:
    """glTF/GLB counts (meshes, nodes, materials) and generator; others: nothing to add.

    The JSON is parsed within MAX_GLTF_JSON_BYTES and MAX_GLTF_JSON_DEPTH. A GLB whose
    JSON chunk is over a limit or not a JSON object is CorruptMediaError (the file is
    rejected once, with the reason). A `.gltf` we do not parse (over a limit, not JSON,
    no `asset` object) is described as plain JSON (kind other).
    """
    if sniffed.format == "glb":
        with open(path, "rb") as model:
            header = model.read(20)
            if len(header) < 20:
                raise CorruptMediaError("the GLB ends inside its header")
            _, version, length, chunk_length, chunk_type = struct.unpack("<4sIII4s", header)
            if chunk_type != b"JSON" or chunk_length > length:
                raise CorruptMediaError("the GLB does not start with a readable JSON chunk")
            if chunk_length > MAX_GLTF_JSON_BYTES:
                raise CorruptMediaError(
                    f"the GLB's JSON chunk is {chunk_length} bytes, "
                    f"above the limit of {MAX_GLTF_JSON_BYTES}"
                )
            text = model.read(chunk_length)
        document = _json_object(text, "the GLB's JSON chunk")
        if isinstance(document, str):
            raise CorruptMediaError(document)
        return sniffed, {"gltf_version": version, **_gltf_counts(document)}
    if sniffed.format == "gltf":
        plain_json = Sniffed(MediaKind.OTHER, "json", "application/json")
        if os.path.getsize(path) > MAX_GLTF_JSON_BYTES:
            return plain_json, {}
        with open(path, "rb") as model:
            document = _json_object(model.read(), "the glTF file")
        if isinstance(document, str) or not isinstance(document.get("asset"), dict):
            return plain_json, {}
        return sniffed, _gltf_counts(document)
    return sniffed, {}


def _json_object(text: bytes, what: str) -> dict[str, Any] | str:
    """The JSON object in `text`, or the reason there is none (over a limit, not JSON)."""
    # GLB pads its JSON chunk with spaces; some writers pad with NULs.
    try:
        document = parse_json(
            text.rstrip(b" \x00"),
            what=what,
            max_bytes=MAX_GLTF_JSON_BYTES,
            max_depth=MAX_GLTF_JSON_DEPTH,
        )
    except InvalidMessageError as error:
        return str(error)
    if not isinstance(document, dict):
        return f"{what} is not a JSON object"
    return document


def _gltf_counts(document: dict[str, Any]) -> dict[str, Any]:
    asset = document.get("asset") if isinstance(document.get("asset"), dict) else {}
    counts = {
        name: len(document[name]) if isinstance(document.get(name), list) else 0
        for name in ("meshes", "nodes", "materials")
    }
    generator = asset.get("generator") if isinstance(asset, dict) else None
    return {**counts, "generator": generator if isinstance(generator, str) else None}
