"""Reading a request: the JSON body (size, nesting depth, UTF-8 and NUL checked
before it is decoded, then decoded into a wire Struct), query parameters, ids, dates
and payload sizes. Each problem is an :class:`ApiError` naming the field: a 4xx, never
a 5xx. Every route that takes a body reads it here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any

import msgspec
from quart import current_app, request

from scheduler_core.runtime import jsonlimits
from scheduler_core.web.context import context
from scheduler_core.web.errors import ApiError, from_msgspec


async def read_body(type_: type[Any], *, allow_empty: bool = False) -> Any:
    """Decode the request body as ``type_``; 400 naming the field on any problem.

    Every JSON body of the API comes through here. Before anything decodes or walks
    it, its nesting is measured on the raw bytes (runtime/jsonlimits.py): deeper than
    SCHEDULER_MAX_JSON_DEPTH is a 400 naming the path of the first array or object
    past the limit, answered in milliseconds whatever the body's size.
    """
    raw = await request.get_data(cache=False, as_text=False)
    assert isinstance(raw, bytes)  # as_text=False
    if not raw.strip():
        if allow_empty:
            return msgspec.convert({}, type_)
        raise ApiError(400, "malformed_json", "the request body is empty; expected a JSON object",
                       "body")
    limit = context(current_app).config.max_json_depth
    where = jsonlimits.too_deep(raw, limit)
    if where is not None:
        raise ApiError(400, "too_deep",
                       f"expected JSON nested at most {limit} levels deep, found deeper",
                       where or "body")
    try:
        value = msgspec.json.decode(raw, type=type_)
    except msgspec.MsgspecError as exc:
        raise from_msgspec(exc) from None
    except UnicodeDecodeError:  # raised by msgspec for invalid UTF-8 inside a string
        raise ApiError(400, "malformed_json",
                       f"the body is not valid JSON: expected UTF-8 text, found "
                       f"{_first_invalid_utf8(raw)}", "body") from None
    if b"\\u0000" in raw:  # cheap pre-filter; PostgreSQL text and jsonb refuse NUL
        where = nul_path(msgspec.json.decode(raw))
        if where is not None:
            raise ApiError(400, "validation_error",
                           "expected text without NUL (\\u0000) characters, found one",
                           where or "body")
    return value


def _first_invalid_utf8(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the byte 0x{raw[exc.start]:02x} at offset {exc.start}"
    return "an invalid byte"


def nul_path(value: Any) -> str | None:
    """The JSON path (``payload.url``, ``items[2]``) of the first string or key holding a
    NUL character, ``""`` for the document itself, or None if there is none.

    Walked with an explicit stack, depth first in document order: no recursion over
    what a client sent, however deep it is."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if "\x00" in key:
                    return path
                children.append((child, f"{path}.{key}" if path else key))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def query_args(allowed: Collection[str]) -> dict[str, str]:
    """The request's query parameters by name; 400 naming the first one that is not in
    ``allowed`` or that is given more than once (``take=5&take=1000``: no silent pick).
    Every list route reads its parameters through this."""
    args = request.args
    for name in args:
        if name not in allowed:
            expected = (f"expected one of {', '.join(sorted(allowed))}" if allowed
                        else "this route takes none")
            raise ApiError(400, "unknown_parameter", f"unknown query parameter; {expected}",
                           name)
        count = len(args.getlist(name))
        if count > 1:
            raise ApiError(400, "repeated_parameter",
                           f"expected {name} at most once, found it {count} times", name)
    return {name: args[name] for name in args}


def query_lists(allowed: Collection[str], repeatable: Collection[str]
                ) -> dict[str, str | list[str]]:
    """As :func:`query_args`, except that the names in ``repeatable`` may come more
    than once (``where=...&where=...``): each of those is a list."""
    args = request.args
    for name in args:
        if name not in allowed:
            raise ApiError(400, "unknown_parameter", "unknown query parameter; expected "
                           f"one of {', '.join(sorted(allowed))}", name)
        count = len(args.getlist(name))
        if count > 1 and name not in repeatable:
            raise ApiError(400, "repeated_parameter",
                           f"expected {name} at most once, found it {count} times", name)
    return {name: args.getlist(name) if name in repeatable else args[name] for name in args}


def parse_take(args: Mapping[str, str], default: int, *, most: int = 500) -> int:
    """``take`` from ``query_args``: an integer 1..``most``; 400 naming ``take``."""
    raw = args.get("take", str(default))
    if not re.fullmatch(r"-?[0-9]{1,20}", raw):
        raise ApiError(400, "validation_error", f"take must be an integer, found {raw!r}", "take")
    take = int(raw)
    if not 1 <= take <= most:
        raise ApiError(400, "validation_error", f"take must be 1..{most}, found {take}", "take")
    return take


def parse_id(value: str, field: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, "invalid_id", f"{field} must be a UUID, found {value!r}", field) from None


def parse_run_at(value: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "validation_error",
                       f"expected an ISO-8601 date-time with a zone, found {value!r}",
                       "runAt") from None
    if when.tzinfo is None:
        raise ApiError(400, "validation_error",
                       f"runAt needs a time zone (e.g. 'Z' or '+02:00'), found {value!r}",
                       "runAt")
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        # PostgreSQL would store it, and every later read of the row would fail.
        raise ApiError(400, "validation_error",
                       f"expected a date-time between years 1 and 9999 in UTC, found {value!r}",
                       "runAt") from None


def check_payload_size(payload: Any, limit: int, field: str = "payload") -> None:
    """413 naming ``field`` when ``payload``, as JSON, is over ``limit`` bytes
    (SCHEDULER_MAX_PAYLOAD_BYTES)."""
    size = len(msgspec.json.encode(payload))
    if size > limit:
        raise ApiError(413, "payload_too_large",
                       f"expected a payload of at most {limit} bytes of JSON, found {size}",
                       field)


CONSISTENCY = "consistency"
_CONSISTENCIES = ("eventual", "strong")


def strong_reads(args: Mapping[str, str | list[str]] | None = None) -> bool:
    """``consistency`` (from ``args`` as :func:`query_args` read them, else from the
    request): ``strong`` reads from the primary (read-your-writes), ``eventual`` (the
    default) from the read replica when one is set. Anything else, or the parameter
    twice, is a 400 naming ``consistency``."""
    if args is None:
        given = request.args.getlist(CONSISTENCY)
        if len(given) > 1:
            raise ApiError(400, "repeated_parameter", f"expected {CONSISTENCY} at most "
                           f"once, found it {len(given)} times", CONSISTENCY)
        raw: str | list[str] | None = given[0] if given else None
    else:
        raw = args.get(CONSISTENCY)
    if raw is None:
        return False
    if not isinstance(raw, str) or raw not in _CONSISTENCIES:
        raise ApiError(400, "validation_error", f"{CONSISTENCY} must be strong or eventual, "
                       f"found {str(raw)[:100]!r}", CONSISTENCY)
    return raw == "strong"
