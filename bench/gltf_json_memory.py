"""Peak memory of describing a GLB whose JSON chunk is the largest accepted (MAX_GLTF_JSON_BYTES).

`python bench/gltf_json_memory.py [--json]`. Each shape runs in a fresh interpreter and
reports its own peak RSS (`ru_maxrss`) above that of an interpreter that only imported
the module, so the figure is what the chunk costs: once through `describe_model` (the
whole path: `json_limits.parse_json`'s pre-check, then json.loads), once through
json.loads alone (what the parsed document itself needs). Shapes:

- tiny objects: `[{}, {}, ...]`, the worst case for json.loads (a dict per 4 bytes);
- tiny arrays: `[[], [], ...]`;
- nodes: glTF nodes with names and translations, like a large real scene;
- one string: an embedded data URI, the best case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WORKER = r"""
import json, resource, struct, sys, time
from srp_bundle import media
mode, path = sys.argv[1:3]
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    if mode == "describe_model":
        _, details = media.describe_model(path, media.sniff_media(open(path, "rb").read(64)))
    else:  # the parser alone, without json_limits' pre-check
        json.loads(open(path, "rb").read()[20:].decode())
    outcome = "described"
except Exception as error:
    outcome = type(error).__name__
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "seconds": elapsed, "extra_kb": peak - baseline}))
"""


def _chunk(shape: str, size: int) -> bytes:
    """A glTF document of about `size` bytes whose bulk has the given shape."""
    head = b'{"asset": {"version": "2.0"}, "extras": '
    room = size - len(head) - 2
    if shape == "tiny objects":
        body = b"[" + b"{}," * (room // 3 - 1) + b"{}]"
    elif shape == "tiny arrays":
        body = b"[" + b"[]," * (room // 3 - 1) + b"[]]"
    elif shape == "nodes":
        node = b'{"name": "n", "translation": [0.5, 1.5, 2.5], "mesh": 0},'
        body = b"[" + node * (room // len(node) - 1) + node[:-1] + b"]"
    else:
        body = b'"' + b"A" * (room - 2) + b'"'
    text = head + body + b"}"
    return text + b" " * (-len(text) % 4)


def _glb(text: bytes) -> bytes:
    import struct

    chunk = struct.pack("<I4s", len(text), b"JSON") + text
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunk)) + chunk


def main() -> None:
    """Describe each shape at the limit in its own process; print a table or JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))
    from srp_bundle.media import MAX_GLTF_JSON_BYTES

    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gltf-") as scratch:
        for shape in ("tiny objects", "tiny arrays", "nodes", "one string"):
            text = _chunk(shape, MAX_GLTF_JSON_BYTES)
            path = Path(scratch, "scene.glb")
            path.write_bytes(_glb(text))
            for mode in ("describe_model", "json.loads"):
                completed = subprocess.run(
                    [sys.executable, "-c", _WORKER, mode, str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "shared")},
                )
                result = json.loads(completed.stdout.strip().splitlines()[-1])
                rows.append({"shape": shape, "mode": mode, "chunk_bytes": len(text), **result})
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(
            f"{row['shape']:<14} {row['mode']:<15} {row['chunk_bytes'] / 2**20:5.1f} MiB  "
            f"{row['outcome']:<10} "
            f"{row['seconds'] * 1000:7.0f} ms  +{row['extra_kb'] / 1024:6.0f} MB peak"
        )


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
