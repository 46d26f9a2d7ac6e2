"""The JSON pre-check on untrusted bytes: the depth a parser would reach, in one linear pass."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srp_bundle.errors import InvalidMessageError
from srp_bundle.json_limits import nesting_depth, parse_json

# Inputs on which the old string-stripping regex rescanned from every quote: each of them
# (1 MiB) took hours with it, and takes milliseconds in one pass. The timeout below is a
# guard against a hang with a margin of over 100x, not a measurement.
ADVERSARIAL = {
    "unterminated escaped quotes": '"\\' * (1 << 19),
    "unterminated after an escape run": '"' + "a\\" * (1 << 19),
    "many unterminated strings": '"\\"' * (1 << 18),
    "quotes and brackets": '["\\' * (1 << 18),
}


def reference_depth(text: str) -> int:
    """The depth, character by character (the meaning the fast scanner must keep)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_no_input_makes_the_depth_check_rescan(text: str) -> None:
    # Counting stops one level past the limit.
    assert nesting_depth(text, 32) == min(reference_depth(text), 33)


@pytest.mark.timeout(60)
def test_64_kib_of_escaped_quotes_is_refused_as_not_json() -> None:
    data = b'"\\' * (32 * 1024)
    with pytest.raises(InvalidMessageError, match="not JSON: Unterminated string"):
        parse_json(data, what="message data", max_bytes=64 * 1024, max_depth=32)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='"\\[]{}a ,:', max_size=200))
def test_depth_matches_a_character_by_character_scan(text: str) -> None:
    assert nesting_depth(text, 10_000) == reference_depth(text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='"\\[]{}ab\n'),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='"\\[]{}ab', max_size=5), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_valid_json_parses_exactly_like_json_loads(value: object) -> None:
    data = json.dumps(value).encode()
    depth = reference_depth(data.decode())
    assert nesting_depth(data.decode(), 10_000) == depth
    assert parse_json(data, what="body", max_bytes=1 << 20, max_depth=depth) == value
    if depth:
        with pytest.raises(InvalidMessageError, match=f"deeper than {depth - 1} levels"):
            parse_json(data, what="body", max_bytes=1 << 20, max_depth=depth - 1)
