"""Derivatives: sizes, formats by magic bytes, alpha, no upscaling, and hostile inputs refused."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import pyvips

from local_stack import media_samples
from srp_bundle.derivatives import (
    make_animated_preview,
    make_derivatives,
    read_png_dimensions,
    sniff_image_format,
)
from srp_bundle.errors import (
    BundleError,
    CorruptImageError,
    OutputRejectedError,
    TooManyPixelsError,
    UnknownImageFormatError,
)
from srp_bundle.render_outputs import Limits, process_output_file
from srp_bundle.settings import DerivativeSpec, parse_derivative_specs

DEFAULT_SPECS = parse_derivative_specs("512:webp,256:webp,1024:png")
ALL_FORMATS = parse_derivative_specs("64:webp,64:png,64:jpeg,64:avif")


def rgba_png(width: int, height: int, *, transparent_left_half: bool = True) -> bytes:
    """An RGBA PNG with a colour gradient; the left half fully transparent."""
    xy = pyvips.Image.xyz(width, height)
    red = xy[0] * (255 / width)
    green = xy[1] * (255 / height)
    blue = (xy[0] + xy[1]) * (255 / (width + height))
    opaque = red * 0 + 255
    alpha = (xy[0] >= width // 2).ifthenelse(255, 0) if transparent_left_half else opaque
    image = red.bandjoin([green, blue, alpha]).cast("uchar").copy(interpretation="srgb")
    return bytes(image.pngsave_buffer())


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    crc = zlib.crc32(chunk_type + data)
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", crc)


def decode(data: bytes) -> pyvips.Image:
    """Decode an encoded derivative fully, as a browser would."""
    image = pyvips.Image.new_from_buffer(data, "", fail_on="error")
    image.copy_memory()
    return image


def test_default_specs_fit_inside_keep_aspect_and_carry_true_metadata() -> None:
    source = rgba_png(2048, 1024)

    result = make_derivatives(source, DEFAULT_SPECS)

    assert result.source.width == 2048
    assert result.source.height == 1024
    assert result.source.format == "png"
    assert result.source.bytes == len(source)
    assert result.source.sha256 == hashlib.sha256(source).hexdigest()
    assert [(d.spec, d.info.width, d.info.height) for d in result.derivatives] == [
        (DerivativeSpec(512, "webp"), 512, 256),
        (DerivativeSpec(256, "webp"), 256, 128),
        (DerivativeSpec(1024, "png"), 1024, 512),
    ]
    for derivative in result.derivatives:
        assert sniff_image_format(derivative.data) == derivative.spec.image_format
        assert derivative.info.format == derivative.spec.image_format
        assert derivative.info.bytes == len(derivative.data)
        assert derivative.info.sha256 == hashlib.sha256(derivative.data).hexdigest()
        decoded = decode(derivative.data)
        assert (decoded.width, decoded.height) == (derivative.info.width, derivative.info.height)


def test_a_small_source_is_never_upscaled() -> None:
    source = rgba_png(100, 60)

    result = make_derivatives(source, parse_derivative_specs("512:webp,256:png,64:jpeg"))

    assert [(d.info.width, d.info.height) for d in result.derivatives] == [
        (100, 60),
        (100, 60),
        (64, 38),
    ]


def test_a_tall_source_fits_inside_by_its_height() -> None:
    result = make_derivatives(rgba_png(300, 1200), parse_derivative_specs("256:webp"))

    assert (result.derivatives[0].info.width, result.derivatives[0].info.height) == (64, 256)


@pytest.mark.parametrize("image_format", ["webp", "png", "avif"])
def test_alpha_is_kept_where_the_format_allows_it(image_format: str) -> None:
    result = make_derivatives(rgba_png(128, 128), [DerivativeSpec(64, image_format)])

    decoded = decode(result.derivatives[0].data)
    assert decoded.hasalpha()
    left, right = decoded.getpoint(5, 32), decoded.getpoint(58, 32)
    assert left[-1] == 0
    assert right[-1] == 255


def test_jpeg_has_no_alpha_and_transparency_becomes_white() -> None:
    result = make_derivatives(rgba_png(128, 128), [DerivativeSpec(64, "jpeg")])

    decoded = decode(result.derivatives[0].data)
    assert decoded.bands == 3
    assert all(value >= 250 for value in decoded.getpoint(5, 32))
    assert result.derivatives[0].content_type == "image/jpeg"
    assert result.derivatives[0].file_extension == "jpg"


def test_every_format_is_verified_by_its_magic_bytes() -> None:
    result = make_derivatives(rgba_png(200, 200), ALL_FORMATS)

    assert [sniff_image_format(d.data) for d in result.derivatives] == [
        "webp",
        "png",
        "jpeg",
        "avif",
    ]
    assert [d.content_type for d in result.derivatives] == [
        "image/webp",
        "image/png",
        "image/jpeg",
        "image/avif",
    ]


def test_a_16_bit_greyscale_and_a_palette_png_are_accepted() -> None:
    grey16 = (pyvips.Image.xyz(64, 64)[0] * 1000).cast("ushort").copy(interpretation="grey16")
    palette = pyvips.Image.new_from_buffer(rgba_png(64, 64), "")
    sources = [bytes(grey16.pngsave_buffer()), bytes(palette.pngsave_buffer(palette=True))]

    for source in sources:
        result = make_derivatives(source, parse_derivative_specs("32:webp,32:png"))
        for derivative in result.derivatives:
            assert decode(derivative.data).format == "uchar"
            assert (derivative.info.width, derivative.info.height) == (32, 32)


def test_a_file_path_gives_the_same_result_as_bytes(tmp_path: Path) -> None:
    source = rgba_png(300, 200)
    path = tmp_path / "render.png"
    path.write_bytes(source)

    from_path = make_derivatives(path, DEFAULT_SPECS)
    from_bytes = make_derivatives(source, DEFAULT_SPECS)

    assert from_path.source == from_bytes.source
    assert [d.info for d in from_path.derivatives] == [d.info for d in from_bytes.derivatives]


def test_parallel_and_sequential_encoding_give_identical_bytes() -> None:
    source = rgba_png(600, 400)

    parallel = make_derivatives(source, DEFAULT_SPECS, parallel_encoders=3)
    sequential = make_derivatives(source, DEFAULT_SPECS, parallel_encoders=1)

    assert [d.data for d in parallel.derivatives] == [d.data for d in sequential.derivatives]


@pytest.mark.parametrize(
    "not_png",
    [b"", b"hello, this is text and not an image at all", b"<svg></svg>"],
)
def test_anything_but_a_known_image_is_rejected_by_its_magic_bytes(not_png: bytes) -> None:
    with pytest.raises(UnknownImageFormatError) as raised:
        make_derivatives(not_png, DEFAULT_SPECS)

    assert raised.value.code == "not_png"


@pytest.mark.parametrize(
    "fake",
    [
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,  # a JPEG signature, nothing behind it
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 50,
        b"GIF89a" + b"\x00" * 50,
    ],
)
def test_a_signature_with_garbage_behind_it_is_corrupt(fake: bytes) -> None:
    with pytest.raises(CorruptImageError):
        make_derivatives(fake, DEFAULT_SPECS)


@pytest.mark.parametrize("image_format", ["jpeg", "webp", "gif", "avif"])
def test_other_image_formats_become_the_same_derivatives(image_format: str) -> None:
    source = pyvips.Image.black(300, 200).new_from_image([40, 120, 200])
    data = bytes(source.cast("uchar").write_to_buffer(f".{image_format}"))

    result = make_derivatives(data, DEFAULT_SPECS)

    assert (result.source.format, result.source.width, result.source.height) == (
        image_format,
        300,
        200,
    )
    sizes = [(d.info.width, d.info.height, d.info.format) for d in result.derivatives]
    assert sizes == [(300, 200, "webp"), (256, 171, "webp"), (300, 200, "png")]


def test_a_jpeg_over_the_pixel_limit_is_refused_before_decoding() -> None:
    data = bytes((pyvips.Image.black(400, 300) + 1).cast("uchar").jpegsave_buffer())

    with pytest.raises(TooManyPixelsError):
        make_derivatives(data, DEFAULT_SPECS, max_pixels=400 * 300 - 1)


def animated_gif(frames: int, width: int = 96, height: int = 64) -> bytes:
    """An animated GIF whose frames differ in colour."""
    pages = [
        pyvips.Image.black(width, height).new_from_image([i * 40 % 256, 80, 160])
        for i in range(frames)
    ]
    strip = pyvips.Image.arrayjoin([page.cast("uchar") for page in pages], across=1)
    strip = strip.copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * frames)
    return bytes(strip.gifsave_buffer())


@pytest.mark.parametrize("container", ["gif", "webp"])
def test_an_animation_gives_its_first_frame_and_a_looping_preview(container: str) -> None:
    animation = animated_gif(5, 640, 480)
    if container == "webp":
        strip = pyvips.Image.new_from_buffer(animation, "", n=-1)
        animation = bytes(strip.webpsave_buffer())

    stills = make_derivatives(animation, DEFAULT_SPECS)
    preview = make_animated_preview(animation)

    assert (stills.source.width, stills.source.height) == (640, 480)
    assert preview is not None
    assert preview.role == "preview"
    decoded = pyvips.Image.new_from_buffer(preview.data, "", n=-1)
    assert decoded.get("n-pages") == 5 == preview.info.frames
    assert (decoded.width, decoded.get("page-height")) == (320, 240)
    assert (preview.info.width, preview.info.height) == (320, 240)
    assert sniff_image_format(preview.data) == "webp"


def test_an_animation_of_many_large_frames_is_refused_from_its_header(tmp_path: Path) -> None:
    # 1000 frames on a 2000x2000 canvas: 23 KiB on disk, 4e9 pixels to composite.
    bomb = media_samples.gif_bomb(width=2000, height=2000, frames=1000)
    assert len(bomb) < 32 * 1024

    with pytest.raises(TooManyPixelsError, match="1000 frames of 2000x2000") as raised:
        make_animated_preview(bomb)
    assert raised.value.code == "too_many_pixels"

    # Through the whole file's processing too: refused before the stills decode a frame.
    path = tmp_path / "render.gif"
    path.write_bytes(bomb)
    with pytest.raises(TooManyPixelsError, match="1000 frames"):
        process_output_file(str(path), DEFAULT_SPECS, Limits(50_000_000, 60, 60.0))


def test_an_animated_webp_is_bounded_by_pages_times_pixels() -> None:
    strip = pyvips.Image.new_from_buffer(animated_gif(5, 640, 480), "", n=-1)
    animation = bytes(strip.webpsave_buffer())  # 5 x 640 x 480 = 1,536,000 pixels

    with pytest.raises(TooManyPixelsError, match="5 frames of 640x480"):
        make_animated_preview(animation, max_animation_pixels=1_500_000)
    assert make_animated_preview(animation, max_animation_pixels=1_536_000) is not None


def test_a_still_image_has_no_preview() -> None:
    assert make_animated_preview(animated_gif(1)) is None
    assert make_animated_preview(rgba_png(64, 64)) is None


@pytest.mark.parametrize("keep_fraction", [0.02, 0.5, 0.97])
def test_a_truncated_png_is_rejected_as_corrupt(keep_fraction: float) -> None:
    source = rgba_png(512, 512, transparent_left_half=False)
    truncated = source[: max(40, int(len(source) * keep_fraction))]

    with pytest.raises(CorruptImageError) as raised:
        make_derivatives(truncated, DEFAULT_SPECS)

    assert raised.value.code == "corrupt_image"


def test_a_png_cut_inside_its_header_is_rejected_as_corrupt() -> None:
    with pytest.raises(CorruptImageError):
        make_derivatives(rgba_png(16, 16)[:20], DEFAULT_SPECS)


def test_damaged_pixel_data_is_rejected_as_corrupt() -> None:
    source = bytearray(rgba_png(256, 256, transparent_left_half=False))
    idat = source.index(b"IDAT")
    for offset in range(idat + 40, idat + 60):
        source[offset] ^= 0xFF

    with pytest.raises(CorruptImageError):
        make_derivatives(bytes(source), DEFAULT_SPECS)


def test_a_header_with_a_bad_crc_is_rejected_as_corrupt() -> None:
    source = bytearray(rgba_png(16, 16))
    source[20] ^= 0x01  # inside the IHDR height, CRC left as it was

    with pytest.raises(CorruptImageError):
        make_derivatives(bytes(source), DEFAULT_SPECS)


def test_a_decompression_bomb_header_is_refused_before_decoding() -> None:
    # A valid signature and IHDR claiming 100000 x 100000 RGBA (40 GB of pixels), no data.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")

    assert read_png_dimensions(bomb) == (100_000, 100_000)
    with pytest.raises(TooManyPixelsError) as raised:
        make_derivatives(bomb, DEFAULT_SPECS)

    assert raised.value.code == "too_many_pixels"


def test_a_real_highly_compressible_png_over_the_limit_is_refused() -> None:
    # 4000 x 4000 of one colour compresses to a few KB: the file size says nothing.
    flat = pyvips.Image.black(4000, 4000).cast("uchar")
    bomb = bytes(flat.pngsave_buffer(compression=9, bitdepth=1))
    assert len(bomb) < 100_000

    with pytest.raises(TooManyPixelsError):
        make_derivatives(bomb, DEFAULT_SPECS, max_pixels=10_000_000)
    result = make_derivatives(bomb, [DerivativeSpec(64, "png")], max_pixels=16_000_000)
    assert (result.derivatives[0].info.width, result.derivatives[0].info.height) == (64, 64)


def test_rejections_are_permanent_bundle_errors() -> None:
    assert issubclass(OutputRejectedError, BundleError)
    for error in (UnknownImageFormatError, CorruptImageError, TooManyPixelsError):
        assert issubclass(error, OutputRejectedError)
        assert error.transient is False


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8L", "webp"),
        (b"\xff\xd8\xff\xdb\x00C", "jpeg"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "avif"),
        (b"\x00\x00\x00\x20ftypmif1\x00\x00\x00\x00mif1avifmiaf\x00\x00\x00\x00", "avif"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", None),
        (b"GIF89a", "gif"),
        (b"", None),
    ],
)
def test_sniff_image_format(data: bytes, expected: str | None) -> None:
    assert sniff_image_format(data) == expected


def test_importing_the_module_does_not_load_libvips() -> None:
    # Other functions import the shared package; they must not pay for libvips.
    code = "import sys, srp_bundle.derivatives; sys.exit('pyvips' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
