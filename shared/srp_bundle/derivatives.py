"""Derivative images of a render: decode the PNG once, fit inside each size, encode, describe.

Pure image work, no storage: `make_derivatives(png_bytes_or_path, specs)` returns the
source's metadata and each encoded derivative with its own. `pyvips` is imported lazily
here, so functions that never touch images never load libvips.

Safety, in this order, before any pixel is decoded:
- the source must start with the PNG signature (the declared content type is not trusted);
- the IHDR chunk is parsed and CRC-checked by hand; `width * height` above `max_pixels`
  is refused (decompression bombs);
- only libvips' PNG loader is used, with untrusted loaders blocked, and `fail_on="error"`
  so a truncated or corrupt stream is an error instead of a silently grey image.

Memory: the source is read sequentially and shrunk, in one streaming pass, to the largest
derivative; only that intermediate is kept in memory and the smaller derivatives are made
from it. Peak memory is about `min(source, largest size)^2 * bands` bytes plus the encoded
outputs; nothing is written to /tmp. The libvips operation cache is disabled, so nothing
outlives a call.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from srp_bundle.errors import CorruptImageError, NotPngError, TooManyPixelsError
from srp_bundle.settings import DerivativeSpec

if TYPE_CHECKING:
    import pyvips

DEFAULT_MAX_PIXELS = 50_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CONTENT_TYPES = {
    "png": "image/png",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "avif": "image/avif",
}
FILE_EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg", "avif": "avif"}

# Encoder settings shared by every derivative of a format; the benchmark's baselines use
# the same values so the comparison is like for like.
WEBP_QUALITY = 80
JPEG_QUALITY = 85
AVIF_QUALITY = 50
PNG_COMPRESSION = 6
ENCODER_EFFORT = 4
# Rendered scenes are mostly flat colour and smooth gradients: without row filters
# libpng's output is about 1.5x larger for a similar time (see bench/bench_postprocess.py).
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

    def as_record(self, path: str) -> dict[str, Any]:
        """The design's `derivatives` item: `{path, width, height, format, bytes, sha256}`."""
        return {
            "path": path,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class EncodedDerivative:
    """One encoded derivative, ready to store."""

    spec: DerivativeSpec
    data: bytes
    info: ImageInfo

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
    """The image format named by the magic bytes (png, webp, jpeg, avif), or None."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 16 and data[4:8] == b"ftyp":
        box_size = struct.unpack(">I", data[:4])[0]
        brands = data[8:12] + data[16 : min(box_size, len(data), 64)]
        if any(brands[i : i + 4] in (b"avif", b"avis") for i in range(0, len(brands) - 3, 4)):
            return "avif"
    return None


def read_png_dimensions(header: bytes) -> tuple[int, int]:
    """Width and height from a PNG's first 33 bytes, without decoding anything.

    Raises NotPngError without the signature and CorruptImageError for a bad IHDR chunk.
    """
    if not header.startswith(PNG_SIGNATURE):
        raise NotPngError("the source does not start with the PNG signature")
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


def check_pixel_limit(width: int, height: int, max_pixels: int) -> None:
    """Refuse an image larger than `max_pixels` before a single pixel is decoded."""
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"the PNG is {width}x{height} = {width * height} pixels, "
            f"above the limit of {max_pixels}"
        )


def make_derivatives(
    source: bytes | str | os.PathLike[str],
    specs: Sequence[DerivativeSpec],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    parallel_encoders: int = 2,
) -> RenderDerivatives:
    """Decode a PNG (bytes or a file path) once and encode every derivative spec.

    Each derivative fits inside `size` x `size` and is never upscaled; alpha is kept
    except in JPEG, which is flattened on white. Raises an ImageRejectedError subclass
    for a source that can never succeed.
    """
    if not specs:
        raise ValueError("no derivative spec given")
    if isinstance(source, bytes):
        header = source[:_IHDR_END]
    else:
        with open(source, "rb") as source_file:
            header = source_file.read(_IHDR_END)
    width, height = read_png_dimensions(header)
    check_pixel_limit(width, height, max_pixels)
    source_info = ImageInfo(width, height, "png", *_size_and_digest(source))

    vips = _vips()
    try:
        if isinstance(source, bytes):
            image = vips.Image.pngload_buffer(source, access="sequential", fail_on="error")
        else:
            image = vips.Image.pngload(os.fspath(source), access="sequential", fail_on="error")
        if (image.width, image.height) != (width, height):
            raise CorruptImageError("the PNG decoder disagrees with the IHDR chunk")
        image = _to_8_bit(image)
        largest = max(spec.size for spec in specs)
        # The one decode: a streaming shrink to the largest derivative, kept in memory.
        base = image.thumbnail_image(largest, height=largest, size="down").copy_memory()
    except vips.Error as error:
        raise CorruptImageError(f"the PNG cannot be decoded: {_first_line(error)}") from error

    def encode(spec: DerivativeSpec) -> EncodedDerivative:
        resized = base
        if max(base.width, base.height) > spec.size:
            resized = base.thumbnail_image(spec.size, height=spec.size, size="down")
        try:
            data = _ENCODERS[spec.image_format](resized)
        except vips.Error as error:
            raise CorruptImageError(
                f"encoding {spec.size}:{spec.image_format} failed: {_first_line(error)}"
            ) from error
        verified_format = sniff_image_format(data)
        if verified_format != spec.image_format:
            raise CorruptImageError(
                f"the {spec.image_format} encoder produced {verified_format or 'unknown'} bytes"
            )
        info = ImageInfo(resized.width, resized.height, verified_format, len(data), _sha256(data))
        return EncodedDerivative(spec, data, info)

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


def _encoding_cost(spec: DerivativeSpec) -> float:
    # Relative encoder time per pixel, measured by bench/bench_postprocess.py.
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
            # Only the PNG loader runs here; never let crafted input reach the others.
            pyvips.block_untrusted_set(True)
            _vips_module = pyvips
        return _vips_module
