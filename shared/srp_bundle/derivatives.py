"""Derivative images of a render: decode the image once, fit inside each size, encode, describe.

Pure image work, no storage: `make_derivatives(image_bytes_or_path, specs)` returns the
source's metadata and each encoded derivative with its own; `make_animated_preview` turns
an animated GIF or WebP into a small looping WebP. `pyvips` is imported lazily here, so
functions that never touch images never load libvips.

Safety, in this order, before any pixel is decoded:
- the format is named by the magic bytes (PNG, JPEG, WebP, GIF, AVIF; the declared
  content type is not trusted) and only that format's libvips loader is used, with
  untrusted loaders blocked;
- a PNG's IHDR chunk is parsed and CRC-checked by hand, other formats' headers are read
  by their loader; `width * height` above `max_pixels` is refused (decompression bombs);
- `fail_on="error"` so a truncated or corrupt stream is an error instead of a grey image;
- an animated GIF or WebP is refused when its frames together (pages x width x height,
  from the header) exceed `max_animation_pixels`, before any frame is decoded.
An animated GIF or WebP gives its first frame to the stills. With a `MediaBudget`, the
decode and every encode are killed once the file's deadline passes (`media_timeout`).

Memory: the source is read sequentially and shrunk, in one streaming pass, to the largest
derivative; only that intermediate is kept in memory and the smaller derivatives are made
from it. Peak memory is about `min(source, largest size)^2 * bands` bytes plus the encoded
outputs; nothing is written to /tmp. The libvips operation cache is disabled, so nothing
outlives a call.

Over 300 lines: format sniffing, header limits and encoding share the libvips state; the one
home for pixel work.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from srp_bundle.errors import CorruptImageError, TooManyPixelsError, UnknownImageFormatError
from srp_bundle.media_budget import MediaBudget
from srp_bundle.settings import DerivativeSpec

if TYPE_CHECKING:
    import pyvips

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_ANIMATION_PIXELS = 500_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CONTENT_TYPES = {
    "png": "image/png",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "avif": "image/avif",
}
FILE_EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg", "avif": "avif"}
# Source formats read here, each by its own libvips loader only.
SOURCE_FORMATS = ("png", "jpeg", "webp", "gif", "avif")
_LOADERS = {"png": "pngload", "jpeg": "jpegload", "webp": "webpload", "gif": "gifload"}
_LOADERS_FOR_HEIF = "heifload"
# Gallery previews of animations: small, a few seconds, looping.
PREVIEW_SIZE = 320
PREVIEW_MAX_FRAMES = 60
PREVIEW_QUALITY = 60

# Encoder settings shared by every derivative of a format; the benchmark's baselines use
# the same values so the comparison is like for like.
WEBP_QUALITY = 80
JPEG_QUALITY = 85
AVIF_QUALITY = 50
PNG_COMPRESSION = 6
ENCODER_EFFORT = 4
# Rendered scenes are mostly flat colour and smooth gradients: without row filters
# libpng's output is about 1.5x larger for a similar time (see bench/postprocess_worker.py).
PNG_FILTER = "all"

_IHDR_END = 33  # signature (8) + length (4) + "IHDR" (4) + data (13) + CRC (4)
_MAX_PNG_DIMENSION = 2**31 - 1


@dataclass(frozen=True)
class ImageInfo:
    """What the task record says about one image: dimensions, verified format, size, digest."""

    width: int
    height: int
    format: str
    bytes: int
    sha256: str
    # Animated images only (previews, animated sources): the number of frames.
    frames: int | None = None

    def as_record(self, path: str) -> dict[str, Any]:
        """The design's `derivatives` item: `{path, width, height, format, bytes, sha256}`."""
        record: dict[str, Any] = {
            "path": path,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }
        if self.frames is not None:
            record["frames"] = self.frames
        return record


@dataclass(frozen=True)
class EncodedDerivative:
    """One encoded derivative, ready to store."""

    spec: DerivativeSpec
    data: bytes
    info: ImageInfo
    # What the derivative is for: thumbnail (of an image), poster (of a video), preview
    # (a looping animation), waveform (of a sound).
    role: str = "thumbnail"

    @property
    def content_type(self) -> str:
        """The HTTP content type of the encoded bytes."""
        return CONTENT_TYPES[self.info.format]

    @property
    def file_extension(self) -> str:
        """The file name extension for this format (`jpg` for JPEG)."""
        return FILE_EXTENSIONS[self.info.format]


@dataclass(frozen=True)
class RenderDerivatives:
    """The source's metadata and its derivatives, in the order of the specs."""

    source: ImageInfo
    derivatives: tuple[EncodedDerivative, ...]


def sniff_image_format(data: bytes) -> str | None:
    """The image format named by the magic bytes (png, webp, jpeg, gif, avif), or None."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(data) >= 16 and data[4:8] == b"ftyp":
        box_size = struct.unpack(">I", data[:4])[0]
        brands = data[8:12] + data[16 : min(box_size, len(data), 64)]
        if any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4)):
            return "avif"
    return None


def read_png_dimensions(header: bytes) -> tuple[int, int]:
    """Width and height from a PNG's first 33 bytes, without decoding anything.

    Raises UnknownImageFormatError without the signature and CorruptImageError for a bad IHDR chunk.
    """
    if not header.startswith(PNG_SIGNATURE):
        raise UnknownImageFormatError("the source does not start with the PNG signature")
    if len(header) < _IHDR_END:
        raise CorruptImageError("the PNG ends before its IHDR chunk")
    length, chunk_type = struct.unpack(">I4s", header[8:16])
    if length != 13 or chunk_type != b"IHDR":
        raise CorruptImageError("the PNG does not start with a valid IHDR chunk")
    (expected_crc,) = struct.unpack(">I", header[29:33])
    if zlib.crc32(header[12:29]) != expected_crc:
        raise CorruptImageError("the PNG's IHDR chunk fails its CRC check")
    width, height = struct.unpack(">II", header[16:24])
    if not (0 < width <= _MAX_PNG_DIMENSION and 0 < height <= _MAX_PNG_DIMENSION):
        raise CorruptImageError(f"the PNG claims an impossible size {width}x{height}")
    return width, height


def check_pixel_limit(width: int, height: int, max_pixels: int, what: str = "the PNG") -> None:
    """Refuse an image larger than `max_pixels` before a single pixel is decoded."""
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"{what} is {width}x{height} = {width * height} pixels, above the limit of {max_pixels}"
        )


def check_animation_limit(
    width: int, page_height: int, pages: int, max_pixels: int, what: str
) -> None:
    """Refuse an animation whose frames together hold more than `max_pixels` pixels."""
    if width * page_height * pages > max_pixels:
        raise TooManyPixelsError(
            f"{what} has {pages} frames of {width}x{page_height} = "
            f"{width * page_height * pages} pixels, above the limit of {max_pixels}"
        )


def make_derivatives(
    source: bytes | str | os.PathLike[str],
    specs: Sequence[DerivativeSpec],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    parallel_encoders: int = 2,
    role: str = "thumbnail",
    budget: MediaBudget | None = None,
) -> RenderDerivatives:
    """Decode an image (bytes or a file path) once and encode every derivative spec.

    Each derivative fits inside `size` x `size` and is never upscaled; alpha is kept
    except in JPEG, which is flattened on white. Raises an OutputRejectedError subclass
    for a source that can never succeed.
    """
    if not specs:
        raise ValueError("no derivative spec given")
    header = _head(source)
    source_format = sniff_image_format(header)
    if source_format is None:
        raise UnknownImageFormatError("the source is not a PNG, JPEG, WebP, GIF or AVIF image")
    if source_format == "png":
        width, height = read_png_dimensions(header)
        check_pixel_limit(width, height, max_pixels)
    source_info = ImageInfo(0, 0, source_format, *_size_and_digest(source))

    vips = _vips()
    try:
        image = _load(vips, source, source_format)
        if source_format == "png" and (image.width, image.height) != (width, height):
            raise CorruptImageError("the PNG decoder disagrees with the IHDR chunk")
        # Only the header is read so far: refuse a bomb before decoding pixels.
        check_pixel_limit(image.width, image.height, max_pixels, f"the {source_format} image")
        source_info = replace(source_info, width=image.width, height=image.height)
        image = _to_8_bit(image)
        largest = max(spec.size for spec in specs)
        # The one decode: a streaming shrink to the largest derivative, kept in memory.
        shrunk = image.thumbnail_image(largest, height=largest, size="down")
        base = _bounded(shrunk, budget).copy_memory()
    except vips.Error as error:
        _raise_if_spent(budget, "decoding the image")
        raise CorruptImageError(
            f"the {source_format} image cannot be decoded: {_first_line(error)}"
        ) from error

    def encode(spec: DerivativeSpec) -> EncodedDerivative:
        resized = base
        if max(base.width, base.height) > spec.size:
            resized = base.thumbnail_image(spec.size, height=spec.size, size="down")
        try:
            data = _ENCODERS[spec.image_format](_bounded(resized, budget))
        except vips.Error as error:
            _raise_if_spent(budget, f"encoding {spec.size}:{spec.image_format}")
            raise CorruptImageError(
                f"encoding {spec.size}:{spec.image_format} failed: {_first_line(error)}"
            ) from error
        verified_format = sniff_image_format(data)
        if verified_format != spec.image_format:
            raise CorruptImageError(
                f"the {spec.image_format} encoder produced {verified_format or 'unknown'} bytes"
            )
        info = ImageInfo(resized.width, resized.height, verified_format, len(data), _sha256(data))
        return EncodedDerivative(spec, data, info, role)

    # PNG and WebP encoders are single-threaded: encoding derivatives side by side uses
    # the other cores, with memory bounded by the small outputs.
    workers = max(1, min(parallel_encoders, len(specs)))
    if workers == 1:
        derivatives = tuple(encode(spec) for spec in specs)
    else:
        # Longest first, so the slowest encode is not left to run alone at the end.
        by_cost = sorted(specs, key=_encoding_cost, reverse=True)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            encoded = dict(zip(by_cost, pool.map(encode, by_cost), strict=True))
        derivatives = tuple(encoded[spec] for spec in specs)
    return RenderDerivatives(source_info, derivatives)


def make_animated_preview(
    source: bytes | str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_animation_pixels: int = DEFAULT_MAX_ANIMATION_PIXELS,
    size: int = PREVIEW_SIZE,
    max_frames: int = PREVIEW_MAX_FRAMES,
    budget: MediaBudget | None = None,
) -> EncodedDerivative | None:
    """A looping animated WebP of an animated GIF or WebP, or None for a still image."""
    header = _head(source)
    source_format = sniff_image_format(header)
    if source_format not in ("gif", "webp"):
        return None
    vips = _vips()
    try:
        first = _load(vips, source, source_format)
        pages = int(first.get("n-pages")) if "n-pages" in first.get_fields() else 1
        if pages < 2:
            return None
        what = f"the animated {source_format} image"
        check_pixel_limit(first.width, first.height, max_pixels, what)
        # Every frame, not only those the preview keeps: the loader composites each frame
        # on the full canvas, and the header alone says how many there are.
        check_animation_limit(first.width, first.height, pages, max_animation_pixels, what)
        frames = min(pages, max_frames)
        animation = _load(vips, source, source_format, n=frames)
        page_height = first.height
        # thumbnail_image would shrink the tall strip of frames as one image: resize instead.
        scale = min(1.0, size / max(first.width, page_height))
        new_page_height = max(1, round(page_height * scale))
        strip = animation.resize(scale, vscale=new_page_height * frames / animation.height)
        strip = _to_8_bit(strip).copy()
        strip.set_type(vips.GValue.gint_type, "page-height", new_page_height)
        data = bytes(
            _bounded(strip, budget).webpsave_buffer(Q=PREVIEW_QUALITY, effort=ENCODER_EFFORT)
        )
    except vips.Error as error:
        _raise_if_spent(budget, "making the animated preview")
        raise CorruptImageError(
            f"the animated {source_format} image cannot be decoded: {_first_line(error)}"
        ) from error
    info = ImageInfo(strip.width, new_page_height, "webp", len(data), _sha256(data), frames)
    return EncodedDerivative(DerivativeSpec(size, "webp"), data, info, "preview")


def animation_info(data: bytes) -> ImageInfo:
    """Frame size, frame count, bytes and sha256 of an encoded WebP or GIF, header only."""
    image_format = sniff_image_format(data[:64])
    if image_format not in ("webp", "gif"):
        raise CorruptImageError(f"expected an animated WebP or GIF, got {image_format}")
    vips = _vips()
    try:
        image = _load(vips, data, image_format)
        frames = int(image.get("n-pages")) if "n-pages" in image.get_fields() else 1
    except vips.Error as error:
        raise CorruptImageError(f"the animation cannot be read: {_first_line(error)}") from error
    return ImageInfo(image.width, image.height, image_format, len(data), _sha256(data), frames)


def frame_count(source: str | os.PathLike[str], image_format: str) -> int:
    """How many frames an image file holds (1 for a still), from its header."""
    vips = _vips()
    try:
        image = _load(vips, source, image_format)
    except vips.Error as error:
        raise CorruptImageError(f"the image cannot be read: {_first_line(error)}") from error
    return int(image.get("n-pages")) if "n-pages" in image.get_fields() else 1


def mean_luma(png: bytes) -> float:
    """Mean brightness (0..255) of a PNG, alpha flattened on black."""
    try:
        image = _vips().Image.pngload_buffer(png, fail_on="error")
        if image.hasalpha():
            image = image.flatten()
        return float(_to_8_bit(image).colourspace("b-w")[0].avg())
    except _vips().Error as error:
        raise CorruptImageError(f"the frame cannot be decoded: {_first_line(error)}") from error


def _load(vips: Any, source: bytes | str | os.PathLike[str], image_format: str, n: int = 1) -> Any:
    """Open with the one loader of `image_format` (header only until pixels are needed)."""
    options: dict[str, Any] = {"access": "sequential", "fail_on": "error"}
    if n != 1:
        options["n"] = n
    loader = _LOADERS.get(image_format, _LOADERS_FOR_HEIF)
    if isinstance(source, bytes):
        return getattr(vips.Image, f"{loader}_buffer")(source, **options)
    return getattr(vips.Image, loader)(os.fspath(source), **options)


def _bounded(image: Any, budget: MediaBudget | None) -> Any:
    return image if budget is None else budget.bound_vips(image)


def _raise_if_spent(budget: MediaBudget | None, what: str) -> None:
    """After a libvips error: MediaTimeoutError if the deadline killed it."""
    if budget is not None:
        budget.remaining(what)


def _head(source: bytes | str | os.PathLike[str], size: int = 64) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    with open(source, "rb") as source_file:
        return source_file.read(size)


def _encoding_cost(spec: DerivativeSpec) -> float:
    # Relative encoder time per pixel, measured by bench/postprocess_worker.py.
    return spec.size * spec.size * _RELATIVE_ENCODER_COST[spec.image_format]


def _to_8_bit(image: pyvips.Image) -> pyvips.Image:
    # 16-bit PNGs are legal renders; every web format here wants 8 bits per band.
    if image.format == "uchar":
        return image
    grey = image.bands <= 2
    return image.colourspace("b-w" if grey else "srgb").cast("uchar")


def _encode_webp(image: pyvips.Image) -> bytes:
    return bytes(image.webpsave_buffer(Q=WEBP_QUALITY, effort=ENCODER_EFFORT, keep="icc"))


def _encode_png(image: pyvips.Image) -> bytes:
    return bytes(image.pngsave_buffer(compression=PNG_COMPRESSION, filter=PNG_FILTER, keep="icc"))


def _encode_jpeg(image: pyvips.Image) -> bytes:
    if image.hasalpha():
        white = [255] * (image.bands - 1)
        image = image.flatten(background=white)
    return bytes(image.jpegsave_buffer(Q=JPEG_QUALITY, keep="icc"))


def _encode_avif(image: pyvips.Image) -> bytes:
    return bytes(
        image.heifsave_buffer(compression="av1", Q=AVIF_QUALITY, effort=ENCODER_EFFORT, keep="icc")
    )


_RELATIVE_ENCODER_COST = {"jpeg": 0.2, "png": 1.0, "webp": 1.5, "avif": 6.0}

_ENCODERS: dict[str, Callable[[pyvips.Image], bytes]] = {
    "webp": _encode_webp,
    "png": _encode_png,
    "jpeg": _encode_jpeg,
    "avif": _encode_avif,
}


def _size_and_digest(source: bytes | str | os.PathLike[str]) -> tuple[int, str]:
    if isinstance(source, bytes):
        return len(source), _sha256(source)
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as source_file:
        while chunk := source_file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines[:3]) or type(error).__name__


_vips_lock = threading.Lock()
_vips_module: Any = None


def _vips() -> Any:
    """pyvips, imported and configured on first use."""
    global _vips_module
    with _vips_lock:
        if _vips_module is None:
            import pyvips

            # No operation outlives a call: bounded memory across invocations.
            pyvips.cache_set_max(0)
            # Only our named loaders run here; never let crafted input reach the others.
            pyvips.block_untrusted_set(True)
            _vips_module = pyvips
        return _vips_module
