"""Media work without pixels, for the simulator: real media is covered by tests/unit and
tests/integration."""

from __future__ import annotations

import hashlib
from typing import Any

from sim.srp import PNG
from srp_bundle.derivatives import EncodedDerivative, ImageInfo
from srp_bundle.errors import CorruptImageError
from srp_bundle.render_outputs import ProcessedFile


def fake_process_file(path: str, specs: Any, limits: Any, **_: Any) -> ProcessedFile:
    """Media work without pixels: a PNG makes one small file per spec, `CORRUPT` is refused,
    anything else is described as an other file (real media: tests/unit, tests/integration)."""
    with open(path, "rb") as source:
        data = source.read()
    digest = hashlib.sha256(data).hexdigest()
    description: dict[str, Any] = {"bytes": len(data), "sha256": digest}
    if data.startswith(b"CORRUPT"):
        raise CorruptImageError("simulated: not a decodable PNG")
    if not data.startswith(PNG):
        kind = {"kind": "other", "format": "unknown", "content_type": "application/octet-stream"}
        return ProcessedFile({**kind, **description}, ())
    items = []
    for spec in specs:
        encoded = f"{digest}:{spec.size}:{spec.image_format}".encode()
        info = ImageInfo(
            spec.size,
            spec.size,
            spec.image_format,
            len(encoded),
            hashlib.sha256(encoded).hexdigest(),
        )
        items.append(EncodedDerivative(spec, encoded, info))
    image = {"kind": "image", "format": "png", "content_type": "image/png"}
    return ProcessedFile({**image, **description, "width": 4096, "height": 4096}, tuple(items))
