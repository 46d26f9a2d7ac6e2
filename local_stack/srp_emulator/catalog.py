"""Collections the emulator can render: loaded from a JSON file, they validate `input_data`."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_COLLECTIONS_FILE = Path(__file__).with_name("sample_collections.json")
# File extensions a collection may render (see renderer.render_outputs).
OUTPUT_KINDS = ("png", "mp4", "webm", "mov", "wav", "mp3", "ogg", "flac", "glb")

SHAPES = ("solid", "flare", "stripes", "checker", "dots", "ellipse", "triangle", "rounded")
_COLOR_PATTERN = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")


class CollectionConfigError(ValueError):
    """The collections file is malformed; the message names the place."""


class InputDataError(ValueError):
    """`input_data` cannot be rendered by the collection; `field` names the culprit."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


@dataclass(frozen=True)
class Layer:
    """One trait of a collection: its allowed values, each drawn as a shape inside `box`."""

    trait: str
    shapes_by_value: dict[str, str]  # empty: any value, shape chosen by hashing the value
    box: tuple[float, float, float, float]  # left, top, right, bottom as fractions of the size
    required: bool = False
    color_field: str | None = None
    default_color: str | None = None
    # A file of the collection's uploaded assets drawn instead of the shape, e.g.
    # "backgrounds/{value}" (see assets.py); None: always the shape.
    asset_path: str | None = None


@dataclass(frozen=True)
class Collection:
    """A render collection as SRP knows it, plus the layers the emulator draws."""

    uid: str
    id: int
    name: str
    label: str
    enabled: bool
    tags: list[str]
    plugin: dict[str, Any]
    options: dict[str, Any]
    layers: list[Layer] = field(default_factory=list)
    # The files one render writes into the task's folder (`options.outputs`).
    outputs: tuple[str, ...] = ("render.png",)

    def public_view(self) -> dict[str, Any]:
        """The `collection` object of the seed's GET response."""
        return {
            "name": self.name,
            "label": self.label,
            "id": self.id,
            "enabled": self.enabled,
            "tags": list(self.tags),
            "plugin": dict(self.plugin),
            "uid": self.uid,
            "options": dict(self.options),
        }

    def validate_input(self, input_data: Any) -> dict[str, str]:
        """Return `input_data` normalised to strings, or raise InputDataError naming the field."""
        if not isinstance(input_data, dict):
            raise InputDataError("input_data", "must be a JSON object")
        known_fields = {layer.trait for layer in self.layers} | {
            layer.color_field for layer in self.layers if layer.color_field
        }
        for key in input_data:
            if key not in known_fields:
                raise InputDataError(
                    f"input_data.{key}",
                    f"collection '{self.name}' has no trait or colour named '{key}' "
                    f"(accepted: {', '.join(sorted(known_fields))})",
                )
        normalised: dict[str, str] = {}
        for layer in self.layers:
            value = input_data.get(layer.trait)
            if value is None:
                if layer.required:
                    raise InputDataError(f"input_data.{layer.trait}", "this trait is required")
            else:
                normalised[layer.trait] = _validate_trait_value(layer, value)
            if layer.color_field and input_data.get(layer.color_field) is not None:
                color = input_data[layer.color_field]
                if not isinstance(color, str) or not _COLOR_PATTERN.match(color):
                    raise InputDataError(
                        f"input_data.{layer.color_field}",
                        f"{color!r} is not a colour like '#ff0000'",
                    )
                normalised[layer.color_field] = color
        return normalised


def _validate_trait_value(layer: Layer, value: Any) -> str:
    # The seed sends numbers as strings ("shoe": "4"); a plain integer means the same thing.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputDataError(f"input_data.{layer.trait}", f"{value!r} must be a string")
    text = str(value)
    if layer.shapes_by_value and text not in layer.shapes_by_value:
        accepted = ", ".join(repr(name) for name in layer.shapes_by_value)
        raise InputDataError(
            f"input_data.{layer.trait}", f"{text!r} is not one of the values: {accepted}"
        )
    return text


def load_collections(path: Path) -> dict[str, Collection]:
    """Read a collections file; the result is keyed by collection uid."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CollectionConfigError(f"cannot read collections file {path}: {error}") from error
    entries = document.get("collections") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CollectionConfigError(f"{path}: expected {{'collections': [ ... ]}} with one or more")
    collections: dict[str, Collection] = {}
    for index, entry in enumerate(entries):
        collection = _parse_collection(entry, f"{path}: collections[{index}]")
        if collection.uid in collections:
            raise CollectionConfigError(f"{path}: duplicate collection uid {collection.uid}")
        collections[collection.uid] = collection
    return collections


def _parse_collection(entry: Any, where: str) -> Collection:
    if not isinstance(entry, dict):
        raise CollectionConfigError(f"{where}: must be an object")
    try:
        uid = str(uuid.UUID(str(entry.get("uid"))))
    except ValueError as error:
        raise CollectionConfigError(f"{where}.uid: {entry.get('uid')!r} is not a UUID") from error
    try:
        layers = [
            _parse_layer(layer, f"{where}.layers[{i}]") for i, layer in enumerate(entry["layers"])
        ]
        return Collection(
            uid=uid,
            id=int(entry["id"]),
            name=str(entry["name"]),
            label=str(entry.get("label", entry["name"])),
            enabled=bool(entry.get("enabled", True)),
            tags=[str(tag) for tag in entry.get("tags", [])],
            plugin=dict(entry.get("plugin", {"id": 1, "label": "Demo", "name": "demo"})),
            options=dict(entry.get("options", {})),
            layers=layers,
            outputs=_parse_outputs(entry.get("options", {}), where),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CollectionConfigError(f"{where}: {error!r}") from error


def _parse_outputs(options: dict[str, Any], where: str) -> tuple[str, ...]:
    outputs = options.get("outputs", ["render.png"])
    if not isinstance(outputs, list) or not outputs:
        raise CollectionConfigError(f"{where}.options.outputs: expected a list of file names")
    for name in outputs:
        extension = str(name).rsplit(".", 1)[-1]
        if "/" in str(name) or extension not in OUTPUT_KINDS:
            raise CollectionConfigError(
                f"{where}.options.outputs: cannot render {name!r} "
                f"(one of {', '.join('*.' + kind for kind in OUTPUT_KINDS)})"
            )
    return tuple(str(name) for name in outputs)


def _parse_layer(entry: dict[str, Any], where: str) -> Layer:
    values = entry.get("values", {})
    if not isinstance(values, dict):
        raise CollectionConfigError(f"{where}.values: must map each value to a shape")
    for value, shape in values.items():
        if shape not in SHAPES:
            raise CollectionConfigError(
                f"{where}.values[{value!r}]: unknown shape {shape!r} (one of {', '.join(SHAPES)})"
            )
    box = tuple(float(edge) for edge in entry.get("box", (0.0, 0.0, 1.0, 1.0)))
    if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
        raise CollectionConfigError(f"{where}.box: expected [left, top, right, bottom] in 0..1")
    return Layer(
        trait=str(entry["trait"]),
        shapes_by_value={str(value): str(shape) for value, shape in values.items()},
        box=(box[0], box[1], box[2], box[3]),
        required=bool(entry.get("required", False)),
        color_field=entry.get("color_field"),
        default_color=entry.get("default_color"),
        asset_path=_asset_path(entry.get("asset_path"), where),
    )


def _asset_path(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "{value}" not in value:
        raise CollectionConfigError(f"{where}.asset_path: a path with '{{value}}' in it")
    return value
