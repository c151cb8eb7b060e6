"""How deeply a JSON document nests, found before anything decodes or walks it.

    too_deep(raw, limit)   None, or the JSON path of the first array or object that
                           sits deeper than ``limit`` levels (``payload.a[0][0]``,
                           ``""`` for the document itself)

A decoder, or any recursive walk of decoded data, spends a stack frame per level: a
2 KB body of brackets is enough to exhaust Python's stack. So every request body is
measured here first, in time linear in its size and with no recursion: strings are
cut out by one regular expression (a bracket inside a string does not nest), every
byte but the brackets is deleted (``bytes.translate``), and the running depth is the
running sum of +1 per opening and -1 per closing bracket (``itertools.accumulate``),
all of it in C. Only a document found too deep is scanned again token by token, up to
the first bracket past the limit, to name where.

The scan does not check that the document is valid JSON (the decoder does that, once
the depth is known to be safe); on invalid JSON its answer is a bound, never a crash.
"""

from __future__ import annotations

import itertools
import json
import re

# A JSON string: a quote, runs of ordinary bytes and escapes, then the closing quote,
# or the end of the input for a string never closed (so that no quote is ever scanned
# from twice: a failed match retried at each later quote would be quadratic).
_STRING_RE = rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)'
# The tokens that decide a path: strings, brackets, commas and colons.
_TOKEN = re.compile(_STRING_RE + rb'|[\[\]{},:]', re.DOTALL)
_BRACKETS = b"[]{}"
_NOT_KEPT = bytes(b for b in range(256) if b not in b'[]{}"')
# A string once its escapes and every byte but brackets and quotes are gone (or the
# rest of the input, for one never closed).
_BARE_STRING = re.compile(rb'"[^"]*(?:"|\Z)')
# Opening brackets become 1 and closing ones 255, which a signed byte view reads as -1.
_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")
# A job's result may nest this deep (a worker fails the run otherwise): a completion
# carries it 3 levels down ({"completions": [{"result": ...}]}), so the body limit
# (SCHEDULER_MAX_JSON_DEPTH) may not be set below MAX_RESULT_DEPTH + 3.
MAX_RESULT_DEPTH = 32
COMPLETION_ENVELOPE_DEPTH = 3
LEAST_BODY_DEPTH = MAX_RESULT_DEPTH + COMPLETION_ENVELOPE_DEPTH
# msgspec decodes on the C stack and gives up near Python's recursion limit (1000).
MOST_BODY_DEPTH = 500
# Naming the path re-reads the document in Python: past this many tokens the
# answer is the whole body rather than a path (the cost stays bounded).
PATH_TOKEN_BUDGET = 20_000


def _steps(raw: bytes) -> bytes:
    """``raw``'s brackets outside strings, each as one byte: 1 opening, 255 closing.

    Cheap cuts come first, each in C over the whole body: escaped backslashes, then
    escaped quotes, then every byte but brackets and quotes; what is left of a string
    is its brackets between two quotes. Two adjacent quotes go next (an empty string,
    or the end of one string and the start of the next with nothing between), so the
    regular expression only meets the strings that hold brackets."""
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_KEPT)
    text = _BARE_STRING.sub(b"", text.replace(b'""', b""))
    return text.translate(_STEPS)


def _max_depth(steps: bytes) -> int:
    return max(0, max(itertools.accumulate(memoryview(steps).cast("b")), default=0))


def depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (0 for a scalar)."""
    if raw.count(b"[") + raw.count(b"{") == 0:
        return 0
    return _max_depth(_steps(raw))


def too_deep(raw: bytes, limit: int) -> str | None:
    """None when no array or object in ``raw`` nests deeper than ``limit`` levels;
    else the JSON path of the first one that does (see :func:`path_at_depth`)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return None
    # limit + 1 openings in a row settle it without summing (the usual attack). Cutting
    # the innermost pairs (twice, in C) shrinks a wide document a lot, and its depth by
    # at most 2: only a depth found near the limit needs the exact sum.
    steps = _steps(raw)
    run = b"\x01" * (limit + 1)
    if run not in steps:
        cut = steps.replace(b"\x01\xff", b"").replace(b"\x01\xff", b"")
        found = limit + 1 if run in cut else _max_depth(cut)
        if found + 2 <= limit or (found <= limit and _max_depth(steps) <= limit):
            return None
    return path_at_depth(raw, limit + 1)


class _Open:
    """One array or object open at the scan's position: where in it the scan is."""

    __slots__ = ("index", "is_object", "key", "wants_key")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.key = ""
        self.index = 0
        self.wants_key = is_object


def path_at_depth(raw: bytes, level: int) -> str:
    """The JSON path (``payload.a[2]``) of the first array or object that opens at
    nesting ``level`` (1: the document itself, path ``""``), read token by token
    with an explicit stack; ``""`` when none does, or when naming it would take more
    than PATH_TOKEN_BUDGET tokens."""
    stack: list[_Open] = []
    for count, token in enumerate(_TOKEN.finditer(raw)):
        if count > PATH_TOKEN_BUDGET:
            return ""
        text = token.group()
        top = stack[-1] if stack else None
        if text in (b"[", b"{"):
            if len(stack) + 1 == level:
                return _render(stack)
            stack.append(_Open(text == b"{"))
        elif text in (b"]", b"}"):
            if stack:
                stack.pop()
        elif top is None:
            continue
        elif text == b",":
            top.index += 1
            top.wants_key = top.is_object
        elif text == b":":
            top.wants_key = False
        elif top.wants_key:  # a string where an object's key goes
            top.key = _key(text)
    return ""


def _key(token: bytes) -> str:
    try:
        key = json.loads(token)
    except ValueError:  # not a valid string (the decoder will say so)
        return token[1:-1].decode("utf-8", "replace")
    return key if isinstance(key, str) else ""


def _render(stack: list[_Open]) -> str:
    path = ""
    for at in stack:
        if at.is_object:
            path = f"{path}.{at.key}" if path else at.key
        else:
            path = f"{path}[{at.index}]"
    return path
