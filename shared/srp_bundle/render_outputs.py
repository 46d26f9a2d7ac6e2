"""What post-processing makes of one output file, by the kind its bytes say it is.

- image (PNG, JPEG, WebP, GIF, AVIF): one derivative per DERIVATIVE_SPECS entry
  (role `thumbnail`), plus a looping `preview` for an animated GIF/WebP; described with
  width, height (and frames);
- video (MP4, MOV, WebM, MKV): a poster frame per spec (`poster`) and a looping WebP
  `preview`; duration, frame_rate, codec, width, height;
- audio (WAV, MP3, OGG, FLAC, M4A): a waveform per spec (`waveform`); duration,
  sample_rate, channels, codec;
- model (GLB, glTF, FBX): no derivatives; meshes, nodes, materials, generator (glTF/GLB);
- anything else (ZIP, USDZ, OBJ, ...): no derivatives.

Every description also has kind, format, content_type (from the bytes; the declared type
only when the bytes name nothing), bytes and sha256. Pure work on a local file; storage
is the caller's. All the work on one file shares one `MediaBudget` (MEDIA_TIMEOUT_SECONDS):
every ffprobe/ffmpeg run gets only the time left, and libvips is killed at the deadline.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from srp_bundle import media
from srp_bundle.derivatives import (
    DEFAULT_MAX_ANIMATION_PIXELS,
    EncodedDerivative,
    animation_info,
    frame_count,
    make_animated_preview,
    make_derivatives,
)
from srp_bundle.media import MediaKind, Sniffed
from srp_bundle.media_budget import DEFAULT_MEDIA_MEMORY_BYTES, MediaBudget
from srp_bundle.settings import DerivativeSpec, Settings


@dataclass(frozen=True)
class ProcessedFile:
    """One output file's description and the derivatives to store for it."""

    description: dict[str, Any]
    derivatives: tuple[EncodedDerivative, ...]


@dataclass(frozen=True)
class Limits:
    """What one file may cost: pixels, seconds of media, seconds of work, child memory."""

    max_pixels: int
    max_media_seconds: int
    timeout_seconds: float
    max_animation_pixels: int = DEFAULT_MAX_ANIMATION_PIXELS
    media_memory_bytes: int = DEFAULT_MEDIA_MEMORY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured for this function."""
        return cls(
            max_pixels=settings.max_source_pixels,
            max_media_seconds=settings.max_media_seconds,
            timeout_seconds=float(settings.media_timeout_seconds),
            max_animation_pixels=settings.max_animation_pixels,
            media_memory_bytes=settings.media_memory_bytes,
        )

    def start_budget(self) -> MediaBudget:
        """The one deadline for one file's work, starting now."""
        return MediaBudget(self.timeout_seconds, memory_bytes=self.media_memory_bytes)


def process_output_file(
    path: str,
    specs: Sequence[DerivativeSpec],
    limits: Limits,
    *,
    declared_content_type: str | None = None,
    budget: MediaBudget | None = None,
) -> ProcessedFile:
    """Describe a local copy of an output file and make its derivatives.

    All of it within one `budget` (by default MEDIA_TIMEOUT_SECONDS from now). Raises an
    OutputRejectedError subclass for a file that can never be processed.
    """
    budget = budget or limits.start_budget()
    with open(path, "rb") as source:
        head = source.read(media.HEAD_BYTES)
    sniffed = media.sniff_media(head)
    size, sha256 = _size_and_digest(path)
    details: dict[str, Any] = {}
    derivatives: tuple[EncodedDerivative, ...] = ()

    if sniffed.kind == MediaKind.IMAGE:
        # The preview first: it refuses an animation over its limit before any frame is decoded.
        preview = make_animated_preview(
            path,
            max_pixels=limits.max_pixels,
            max_animation_pixels=limits.max_animation_pixels,
            budget=budget,
        )
        stills = make_derivatives(path, specs, max_pixels=limits.max_pixels, budget=budget)
        details = {"width": stills.source.width, "height": stills.source.height}
        derivatives = stills.derivatives
        if preview is not None:
            details["frames"] = frame_count(path, sniffed.format)
            derivatives += (preview,)
    elif sniffed.kind in (MediaKind.VIDEO, MediaKind.AUDIO):
        probed = media.probe(
            path,
            sniffed,
            max_seconds=limits.max_media_seconds,
            max_pixels=limits.max_pixels,
            budget=budget,
        )
        details = dict(probed.details)
        if probed.kind == MediaKind.VIDEO:
            derivatives = _video_derivatives(path, sniffed, probed, specs, limits, budget)
        else:
            if sniffed.kind == MediaKind.VIDEO:  # a WebM/MP4 with sound only
                sniffed = Sniffed(
                    MediaKind.AUDIO, sniffed.format, "audio/" + sniffed.format, sniffed.demuxer
                )
            picture = media.waveform(path, sniffed, max_pixels=limits.max_pixels, budget=budget)
            derivatives = make_derivatives(
                picture, specs, max_pixels=limits.max_pixels, role="waveform", budget=budget
            ).derivatives
    elif sniffed.kind == MediaKind.MODEL:
        sniffed, details = media.describe_model(path, sniffed)

    content_type = sniffed.content_type
    if sniffed.format == "unknown" and _names_no_media(declared_content_type):
        # The bytes name nothing: a declared generic type may say more, a media type lies.
        content_type = declared_content_type or content_type
    description = {
        "kind": str(sniffed.kind),
        "format": sniffed.format,
        "content_type": content_type,
        "bytes": size,
        "sha256": sha256,
        **details,
    }
    return ProcessedFile(description, derivatives)


def _video_derivatives(
    path: str,
    sniffed: Sniffed,
    probed: media.MediaProbe,
    specs: Sequence[DerivativeSpec],
    limits: Limits,
    budget: MediaBudget,
) -> tuple[EncodedDerivative, ...]:
    max_pixels = limits.max_pixels
    frame, at = media.poster_frame(path, sniffed, probed, max_pixels=max_pixels, budget=budget)
    posters = make_derivatives(frame, specs, max_pixels=max_pixels, role="poster", budget=budget)
    clip = media.preview_clip(
        path, sniffed, probed, start_at=at, max_pixels=max_pixels, budget=budget
    )
    # ffmpeg's encode is kept as it is; only its header is read back, for the record.
    info = animation_info(clip)
    preview = EncodedDerivative(DerivativeSpec(media.PREVIEW_SIZE, "webp"), clip, info, "preview")
    return (*posters.derivatives, preview)


def _names_no_media(content_type: str | None) -> bool:
    return bool(content_type) and str(content_type).split("/")[0] in ("text", "application")


def _size_and_digest(path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return os.path.getsize(path), digest.hexdigest()
