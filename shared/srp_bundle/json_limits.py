"""Untrusted JSON, parsed within explicit limits on size and nesting depth.

`json.loads` recurses once per nesting level: a body nested deeply enough raises
`RecursionError` (a 500, or a crash that Pub/Sub redelivers). The depth is measured
first, without recursion, so such input is refused as invalid like any other.
"""

from __future__ import annotations

import json
import re
from typing import Any

from srp_bundle.errors import InvalidMessageError

# A JSON string (escapes included); outside strings, valid JSON has no quote at all.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def nesting_depth(text: str, stop_after: int) -> int:
    """How deeply `text` nests arrays and objects, counting stops past `stop_after`."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > stop_after:
                break
        else:
            depth -= 1
    return deepest


def parse_json(data: bytes, *, what: str, max_bytes: int, max_depth: int) -> Any:
    """`json.loads` for untrusted bytes; raise `InvalidMessageError` saying which limit broke."""
    if len(data) > max_bytes:
        raise InvalidMessageError(f"{what} is {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = data.decode(json.detect_encoding(data))
    except (UnicodeDecodeError, LookupError) as error:
        raise InvalidMessageError(f"{what} is not JSON: {error}") from None
    if nesting_depth(text, max_depth) > max_depth:
        raise InvalidMessageError(f"{what} nests arrays/objects deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidMessageError(f"{what} is not JSON: {error}") from None
    except RecursionError:  # unreachable within the depth cap; never a crash regardless
        raise InvalidMessageError(f"{what} nests too deeply") from None
