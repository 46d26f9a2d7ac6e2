"""Deterministic renders: one layer per trait, composited in the collection's order.

A collection renders a PNG by default; `options.outputs` may ask for a short video (its
frames drawn here, encoded by ffmpeg), a sound (ffmpeg) and a GLB model as well.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping

from PIL import Image, ImageColor, ImageDraw

from local_stack import media_samples
from local_stack.srp_emulator.catalog import SHAPES, Collection, Layer

DEFAULT_RENDER_SIZE = 2048
# Videos are small and short: the emulator renders for tests and demos, not for show.
VIDEO_MAX_SIZE = 320
VIDEO_FRAMES = 20
VIDEO_FPS = 10


def render_outputs(
    collection: Collection,
    input_data: dict[str, str],
    size: int,
    layer_images: Mapping[str, Image.Image] | None = None,
) -> list[tuple[str, bytes]]:
    """Every file of the collection's `outputs`, as (file name, bytes).

    `layer_images`: traits drawn from the collection's uploaded assets (see render_png).
    """
    outputs = []
    for name in collection.outputs:
        extension = name.rsplit(".", 1)[-1]
        if extension == "png":
            data = render_png(collection, input_data, size, layer_images)
        elif extension in media_samples.VIDEO_CONTAINERS:
            data = render_video(
                collection, input_data, min(size, VIDEO_MAX_SIZE), extension, layer_images
            )
        elif extension in media_samples.AUDIO_CONTAINERS:
            pitch = 220 + _digest(repr(sorted(input_data.items())))[0] * 2
            data = media_samples.sound(extension, seconds=2.0, frequency=pitch)
        else:
            traits = len(input_data)
            data = media_samples.glb(
                meshes=traits, nodes=traits + 1, materials=traits, generator="srp-emulator"
            )
        outputs.append((name, data))
    return outputs


def render_video(
    collection: Collection,
    input_data: dict[str, str],
    size: int,
    container: str,
    layer_images: Mapping[str, Image.Image] | None = None,
) -> bytes:
    """The render fading in from black and growing: frames drawn here, encoded by ffmpeg."""
    size -= size % 2  # H.264 wants even dimensions
    still_png = render_png(collection, input_data, size, layer_images)
    still = Image.open(io.BytesIO(still_png)).convert("RGBA")
    frames = []
    for number in range(VIDEO_FRAMES):
        progress = (number + 1) / VIDEO_FRAMES
        frame = Image.new("RGBA", (size, size), (0, 0, 0, 255))
        scaled = max(2, round(size * (0.6 + 0.4 * progress)))
        layer = still.resize((scaled, scaled))
        layer.putalpha(layer.getchannel("A").point(lambda a, p=progress: round(a * p)))
        frame.alpha_composite(layer, ((size - scaled) // 2, (size - scaled) // 2))
        output = io.BytesIO()
        frame.convert("RGB").save(output, format="PNG", compress_level=1)
        frames.append(output.getvalue())
    return media_samples.video_from_frames(frames, fps=VIDEO_FPS, container=container)


def render_png(
    collection: Collection,
    input_data: dict[str, str],
    size: int,
    layer_images: Mapping[str, Image.Image] | None = None,
) -> bytes:
    """Render validated `input_data` as a size x size RGBA PNG; same input, same bytes.

    A trait in `layer_images` (from the collection's uploaded assets) is drawn as that
    image, stretched over the layer's box, instead of its shape.
    """
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    for layer in collection.layers:
        value = input_data.get(layer.trait)
        if value is None:
            continue
        if layer_images and layer.trait in layer_images:
            left, top, right, bottom = _box_pixels(layer, size)
            picture = layer_images[layer.trait].convert("RGBA").resize((right - left, bottom - top))
            canvas.alpha_composite(picture, (left, top))
            continue
        layer_image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        _draw_shape(
            layer_image,
            _shape_for(layer, value),
            _box_pixels(layer, size),
            _color(layer, value, input_data),
        )
        canvas.alpha_composite(layer_image)
    output = io.BytesIO()
    # No metadata and a fixed compression level: the bytes depend on the pixels only.
    canvas.save(output, format="PNG", compress_level=6)
    return output.getvalue()


def layer_box(collection: Collection, trait: str, size: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom, exclusive) where a trait's layer is drawn."""
    for layer in collection.layers:
        if layer.trait == trait:
            return _box_pixels(layer, size)
    raise KeyError(trait)


def _shape_for(layer: Layer, value: str) -> str:
    if value in layer.shapes_by_value:
        return layer.shapes_by_value[value]
    return SHAPES[_digest(value)[0] % len(SHAPES)]


def _color(layer: Layer, value: str, input_data: dict[str, str]) -> tuple[int, int, int, int]:
    chosen = input_data.get(layer.color_field) if layer.color_field else None
    chosen = chosen or layer.default_color
    if chosen:
        rgba = ImageColor.getcolor(chosen, "RGBA")
        assert isinstance(rgba, tuple)
        return (rgba[0], rgba[1], rgba[2], rgba[3])
    # Traits without a colour still get a stable colour of their own.
    digest = _digest(f"{layer.trait}={value}")
    return (digest[1], digest[2], digest[3], 255)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _box_pixels(layer: Layer, size: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = layer.box
    return (round(left * size), round(top * size), round(right * size), round(bottom * size))


def _draw_shape(
    image: Image.Image,
    shape: str,
    box: tuple[int, int, int, int],
    color: tuple[int, int, int, int],
) -> None:
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    draw = ImageDraw.Draw(image)
    last = (right - 1, bottom - 1)  # PIL boxes include their far edge
    cell = max(2, min(width, height) // 8)
    if shape == "solid":
        draw.rectangle((left, top, *last), fill=color)
    elif shape == "rounded":
        draw.rounded_rectangle((left, top, *last), radius=max(1, cell), fill=color)
    elif shape == "ellipse":
        draw.ellipse((left, top, *last), fill=color)
    elif shape == "triangle":
        draw.polygon(
            [(left, bottom - 1), ((left + right) // 2, top), (right - 1, bottom - 1)], fill=color
        )
    elif shape == "stripes":
        for x in range(left, right, cell * 2):
            draw.rectangle((x, top, min(x + cell, right) - 1, bottom - 1), fill=color)
    elif shape == "checker":
        for row, y in enumerate(range(top, bottom, cell)):
            for column, x in enumerate(range(left, right, cell)):
                if (row + column) % 2 == 0:
                    draw.rectangle(
                        (x, y, min(x + cell, right) - 1, min(y + cell, bottom) - 1), fill=color
                    )
    elif shape == "dots":
        for y in range(top, bottom - cell + 1, cell):
            for x in range(left, right - cell + 1, cell):
                draw.ellipse((x + 1, y + 1, x + cell - 2, y + cell - 2), fill=color)
    elif shape == "flare":
        # A radial glow: full colour in the middle fading to transparent at the edges.
        glow = Image.radial_gradient("L").resize((width, height))
        alpha = glow.point(lambda level: 255 - level)
        flare = Image.new("RGBA", (width, height), color)
        flare.putalpha(alpha)
        image.alpha_composite(flare, (left, top))
    else:
        raise ValueError(f"unknown shape {shape!r}")
