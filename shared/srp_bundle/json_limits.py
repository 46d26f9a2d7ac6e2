"""Untrusted JSON, parsed within explicit limits on size and nesting depth, in linear time.

`json.loads` recurses once per nesting level: a body nested deeply enough raises
`RecursionError` (a 500, or a crash that Pub/Sub redelivers). The depth is measured
first, without recursion and in one pass over the text, so such input is refused as
invalid like any other, and no input under the size limit can make the check slow.
"""

from __future__ import annotations

import json
import re
from typing import Any

from srp_bundle.errors import InvalidMessageError

# One token per match, left to right, never re-scanned: a string (escapes included; an
# unterminated one runs to the end of the text) or a bracket. The string pattern is the
# unrolled loop `"[^"\\]*(\\.[^"\\]*)*"?` with possessive quantifiers: every character has
# one way to match and no backtracking state is kept (a plain `*` keeps some per repeat,
# which made long strings superlinear), and because everything after the opening quote is
# optional a match never fails and restarts at a later quote (the old `"(?:[^"\\]|\\.)*"`
# did: an unterminated run of `"\` pairs cost time quadratic in its length).
_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[\[\]{}]', re.DOTALL)
_OPENING = frozenset("[{")


def nesting_depth(text: str, stop_after: int) -> int:
    """How deeply `text` nests arrays and objects, counting stops past `stop_after`."""
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if token in _OPENING:
            depth += 1
            if depth > deepest:
                deepest = depth
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
    return parse_json_text(text, what=what, max_depth=max_depth)


def parse_json_text(text: str, *, what: str, max_depth: int) -> Any:
    """`parse_json` for text already decoded (and already within its size limit)."""
    if nesting_depth(text, max_depth) > max_depth:
        raise InvalidMessageError(f"{what} nests arrays/objects deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except ValueError as error:
        raise InvalidMessageError(f"{what} is not JSON: {error}") from None
    except RecursionError:  # unreachable within the depth cap; never a crash regardless
        raise InvalidMessageError(f"{what} nests too deeply") from None
