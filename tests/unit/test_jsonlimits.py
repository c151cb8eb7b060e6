"""runtime/jsonlimits.py: the depth of a JSON document, measured on its bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler_core.runtime.jsonlimits import PATH_TOKEN_BUDGET, depth, path_at_depth, too_deep


def reference_depth(value: Any) -> int:
    """The nesting of decoded ``value``, walked with an explicit stack."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else (
            item if isinstance(item, list) else None)
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


# Strings full of the characters that could fool a scanner: brackets, quotes, escapes.
TRICKY_TEXT = st.text(alphabet=st.sampled_from('[]{}"\\,:abc\u00e9\u202e\x00'), max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner,
                                                                  max_size=4),
    max_leaves=40)


@settings(max_examples=150, derandomize=True, database=None)
@given(JSON_VALUES, st.booleans())
def test_the_depth_of_any_document_is_what_decoding_it_finds(value: Any,
                                                             ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert reference_depth(value) == depth(raw)


@settings(max_examples=150, derandomize=True, database=None)
@given(JSON_VALUES, st.integers(min_value=1, max_value=6))
def test_too_deep_is_none_exactly_when_the_document_is_within_the_limit(
        value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    assert (reference_depth(value) > limit) == (too_deep(raw, limit) is not None)


@pytest.mark.parametrize(("raw", "expected"), [
    (b"1", 0),
    (b'"[[[["', 0),
    (b"[]", 1),
    (b'{"a": "]]]", "b": [[{"c": "\\"[["}]]}', 4),
    (b'["\\\\", [[]]]', 3),  # an escaped backslash does not escape the closing quote
    (b'["\\\\\\"[", []]', 2),  # ... but a backslash-escaped quote does not close it
    (b'["never closed [[[[', 1),
    (b"[[[[", 4),
])
def test_the_depth_of_a_document(raw: bytes, expected: int) -> None:
    assert expected == depth(raw)


@pytest.mark.parametrize(("raw", "level", "expected"), [
    (b"[[1]]", 1, ""),
    (b'{"type": "noop", "payload": {"a": [[[]]]}}', 3, "payload.a"),
    (b'{"type": "noop", "payload": {"a": [[[]]]}}', 4, "payload.a[0]"),
    (b'{"x": 1, "b": [0, {"k\\"": [[]]}]}', 4, 'b[1].k"'),
    (b'{"jobs": [{"type": "a"}, {"payload": {"b": {}}}]}', 4, "jobs[1].payload"),
    (b'{"a": "[{[{", "b": [{}]}', 3, "b[0]"),
])
def test_the_path_of_the_first_container_at_a_level(raw: bytes, level: int,
                                                    expected: str) -> None:
    assert expected == path_at_depth(raw, level)


def test_ten_thousand_levels_are_found_at_the_limit_and_named() -> None:
    raw = (b'{"type": "noop", "payload": {"a": ' + b"[" * 10_000 + b'"\\u0000"'
           + b"]" * 10_000 + b"}}")
    assert "payload.a" + "[0]" * 62 == too_deep(raw, 64)
    assert None is too_deep(raw, 10_002)


def test_a_document_as_deep_as_the_limit_passes_and_one_more_level_does_not() -> None:
    assert None is too_deep(b"[" * 64 + b"]" * 64, 64)
    assert "[0]" * 64 == too_deep(b"[" * 65 + b"]" * 65, 64)
    wide = b"[" + b",".join([b"[" * 63 + b"]" * 63] * 100) + b"]"
    assert None is too_deep(wide, 64)
    assert "[100]" + "[0]" * 63 == too_deep(wide[:-1] + b",[" + b"[" * 63 + b"]" * 64, 64)


def test_a_path_that_would_cost_too_much_to_name_is_the_whole_body() -> None:
    raw = b"[" + b"0," * (PATH_TOKEN_BUDGET + 1) + b"[" * 70 + b"]" * 71
    assert "" == too_deep(raw, 64)
