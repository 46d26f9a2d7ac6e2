"""Real media files of every kind SRP renders, made on the spot: video and sound by ffmpeg.

Used by the SRP emulator's sample collections and by the tests, so both handle the same
bytes a renderer would write. Each function returns the file's bytes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import tempfile
from pathlib import Path

# ffmpeg's muxer and codecs for each container we produce.
VIDEO_CONTAINERS = {
    "mp4": ("mp4", ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")),
    "mov": ("mov", ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")),
    "webm": ("webm", ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8")),
}
AUDIO_CONTAINERS = {
    "wav": ("wav", ("-c:a", "pcm_s16le")),
    "mp3": ("mp3", ("-c:a", "libmp3lame", "-b:a", "96k")),
    "ogg": ("ogg", ("-c:a", "libvorbis")),
    "flac": ("flac", ("-c:a", "flac")),
}


def video(
    container: str = "mp4",
    *,
    width: int = 320,
    height: int = 240,
    seconds: float = 2.0,
    fps: int = 25,
    black_lead_seconds: float = 0.0,
    source: str = "testsrc2",
    with_sound: bool = False,
) -> bytes:
    """A video of a moving test pattern, optionally opening on black (a fade-in render)."""
    muxer, codec = VIDEO_CONTAINERS[container]
    size = f"{width}x{height}"
    inputs = ["-f", "lavfi", "-i", f"{source}=s={size}:r={fps}:d={seconds}"]
    graph = "[0:v]format=yuv420p[v]"
    if black_lead_seconds > 0:
        inputs = [
            "-f",
            "lavfi",
            "-i",
            f"color=c=black:s={size}:r={fps}:d={black_lead_seconds}",
            *inputs,
        ]
        graph = "[0:v][1:v]concat=n=2:v=1,format=yuv420p[v]"
    audio: list[str] = []
    if with_sound:
        total = seconds + black_lead_seconds
        inputs += ["-f", "lavfi", "-i", f"sine=f=330:d={total}"]
        audio = [
            "-map",
            f"{len(inputs) // 4 - 1}:a",
            "-c:a",
            "aac" if muxer != "webm" else "libopus",
        ]
    return _ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", *codec, *audio], muxer)


def video_from_frames(frames: list[bytes], *, fps: int = 10, container: str = "mp4") -> bytes:
    """Encode PNG frames (same size, even dimensions) as a video, like a renderer would."""
    muxer, codec = VIDEO_CONTAINERS[container]
    with tempfile.TemporaryDirectory(prefix="srp-frames-") as folder:
        for number, frame in enumerate(frames):
            Path(folder, f"frame_{number:04d}.png").write_bytes(frame)
        pattern = str(Path(folder, "frame_%04d.png"))
        return _ffmpeg(
            ["-framerate", str(fps), "-i", pattern, "-vf", "format=yuv420p", *codec], muxer
        )


def video_that_grows(
    *, first: tuple[int, int] = (64, 64), then: tuple[int, int] = (640, 480), seconds: float = 1.0
) -> bytes:
    """An MP4 whose H.264 stream changes frame size halfway (a new SPS in-band).

    The container and ffprobe report only the first size; only a decoder sees the second.
    """
    with tempfile.TemporaryDirectory(prefix="srp-sample-") as folder:
        segments = []
        for number, (width, height) in enumerate((first, then)):
            segment = Path(folder, f"part{number}.ts")
            segment.write_bytes(
                _ffmpeg(
                    [
                        "-f",
                        "lavfi",
                        "-i",
                        f"testsrc2=s={width}x{height}:r=10:d={seconds}",
                        *VIDEO_CONTAINERS["mp4"][1],
                        "-output_ts_offset",
                        str(number * seconds),
                    ],
                    "mpegts",
                )
            )
            segments.append(segment.read_bytes())
        joined = Path(folder, "joined.ts")
        joined.write_bytes(b"".join(segments))  # MPEG-TS segments concatenate byte-wise
        return _ffmpeg(["-f", "mpegts", "-i", str(joined), "-c", "copy"], "mp4")


def gif_bomb(*, width: int = 2000, height: int = 2000, frames: int = 1000) -> bytes:
    """A tiny GIF with a `width` x `height` canvas and `frames` frames of one pixel each.

    A few KiB on disk; a loader composites every frame on the whole canvas.
    """
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80, 0, 0)  # 2-colour table
    palette = b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 0.1 s
        + struct.pack("<cHHHHB", b",", 0, 0, 1, 1, 0)  # image descriptor: 1x1 at 0,0
        + b"\x02\x02\x44\x01\x00"  # LZW min code size 2, one block: clear, 0, end
    )
    return screen + palette + loop + frame * frames + b";"


def sound(container: str = "wav", *, seconds: float = 1.5, frequency: int = 440) -> bytes:
    """A stereo tone that swells and fades, so its waveform has a shape."""
    muxer, codec = AUDIO_CONTAINERS[container]
    tone = f"sine=f={frequency}:d={seconds},volume='0.2+0.8*sin(PI*t/{seconds})':eval=frame"
    return _ffmpeg(["-f", "lavfi", "-i", tone, "-ac", "2", "-ar", "44100", *codec], muxer)


def gltf_document(
    *, meshes: int = 1, nodes: int = 1, materials: int = 1, generator: str = "srp-emulator"
) -> dict[str, object]:
    """A glTF 2.0 JSON document with the given counts (no geometry buffers)."""
    return {
        "asset": {"version": "2.0", "generator": generator},
        "scene": 0,
        "scenes": [{"nodes": list(range(nodes))}],
        "nodes": [{"mesh": i % max(1, meshes)} for i in range(nodes)],
        "meshes": [{"primitives": [{"attributes": {}}]} for _ in range(meshes)],
        "materials": [{"name": f"material-{i}"} for i in range(materials)],
    }


def glb(**counts: int | str) -> bytes:
    """A binary glTF (GLB 2.0): header and one JSON chunk padded to 4 bytes."""
    text = json.dumps(gltf_document(**counts)).encode()  # type: ignore[arg-type]
    text += b" " * (-len(text) % 4)
    chunk = struct.pack("<I4s", len(text), b"JSON") + text
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunk)) + chunk


def _ffmpeg(arguments: list[str], muxer: str) -> bytes:
    """Run ffmpeg and return what it wrote (to a file: MP4 and MOV need a seekable output)."""
    with tempfile.TemporaryDirectory(prefix="srp-sample-") as folder:
        output = Path(folder, f"out.{muxer}")
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                *arguments,
                "-f",
                muxer,
                str(output),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return output.read_bytes()
