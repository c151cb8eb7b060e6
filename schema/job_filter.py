"""The jobs' search filter: one parser for ``GET /api/jobs``, ``POST /api/jobs/bulk``
(its ``filter`` object has the same names), the CLI (which sends its flags as these
parameters) and the dashboard (whose jobs page keeps them in its URL).

The parameters (docs/search.md says which an index serves)::

    status, type, queue                 equal to
    tag (repeatable, up to 20)          the job has every tag given
    where (repeatable, up to 10)        payload.<path> or result.<path>, an operator
                                        (= != >= <= > <) and a value: a number, a
                                        "quoted" JSON string, or bare text (a string)
    createdAfter, createdBefore,        ISO-8601 date-times with a zone; after is
    finishedAfter, finishedBefore       inclusive, before exclusive
    lastError                           the last error contains this text (any case)

A ``where`` never reaches SQL as text: equalities become one containment document
(``payload @> %(payload_doc)s``) and the other comparisons one SQL/JSON path whose
keys come from the whitelist grammar below (letters, digits, ``_`` and ``-``, always
quoted) and whose values are its variables (``$v0``), all bound parameters.

Error handling: every problem is a :class:`FilterError` naming the parameter
(``where``, ``createdAfter``); the web layer answers it as a 400.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
from psycopg.types.json import Jsonb

from scheduler_core.schema import wire

KEYS: tuple[str, ...] = ("status", "type", "queue", "tag", "where", "createdAfter",
                         "createdBefore", "finishedAfter", "finishedBefore", "lastError")
REPEATABLE: frozenset[str] = frozenset({"tag", "where"})
MAX_WHERE = 10
MAX_TAGS = 20
TAG_MAX_CHARS = 64
MAX_PATH_DEPTH = 8
MAX_VALUE_CHARS = 200

Op = Literal["=", "!=", ">=", "<=", ">", "<"]
_WHERE = re.compile(
    r"(payload|result)((?:\.[A-Za-z0-9_\-]{1,64}){1,8})(!=|>=|<=|=|>|<)(.*)", re.DOTALL)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,3})?")
_JSONPATH_OP = {"=": "==", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}


class FilterError(ValueError):
    """A filter parameter that does not parse: ``field`` names it, ``message`` says
    what was expected and what was found."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Condition(msgspec.Struct, frozen=True):
    """One ``where``: ``column`` (payload or result), the keys of its path, the
    operator and the value (a number or a string)."""

    column: Literal["payload", "result"]
    path: tuple[str, ...]
    op: Op
    value: int | float | str


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    type: str | None = None
    queue: str | None = None
    tags: tuple[str, ...] | None = None
    where: tuple[Condition, ...] = ()
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    finished_after: dt.datetime | None = None
    finished_before: dt.datetime | None = None
    last_error: str | None = None

    def params(self) -> dict[str, Any]:
        """The bound parameters of the filter clause the .sql files share
        (schema/queries/jobs.sql: list_jobs, count_matching_jobs, pick_bulk_jobs)."""
        out: dict[str, Any] = {
            "status": self.status, "type": self.type, "queue": self.queue,
            "tags": list(self.tags) if self.tags else None,
            "created_after": self.created_after, "created_before": self.created_before,
            "finished_after": self.finished_after, "finished_before": self.finished_before,
            "last_error": self.last_error,
        }
        for column in ("payload", "result"):
            mine = [c for c in self.where if c.column == column]
            doc = _containment([c for c in mine if c.op == "="])
            path, variables = _json_path([c for c in mine if c.op != "="])
            out[f"{column}_doc"] = Jsonb(doc) if doc else None
            out[f"{column}_path"] = path
            out[f"{column}_vars"] = Jsonb(variables)
        return out


def _containment(conditions: Sequence[Condition]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for c in conditions:
        node = doc
        for key in c.path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise FilterError("where", f"{_text(c)} contradicts another where on "
                                  f"{c.column}.{'.'.join(c.path)}")
            node = child
        last = c.path[-1]
        if last in node and node[last] != c.value:
            raise FilterError("where", f"{_text(c)} contradicts another where on the same "
                              "field: a field has one value")
        node[last] = c.value
    return doc


def _json_path(conditions: Sequence[Condition]) -> tuple[str | None, dict[str, Any]]:
    """``$ ? (@."a"."b" >= $v0 && ...)`` and its variables; keys come from the
    grammar's whitelist (no quote or backslash can be in one), values are variables."""
    if not conditions:
        return None, {}
    parts = []
    variables: dict[str, Any] = {}
    for i, c in enumerate(conditions):
        keys = "".join(f'."{k}"' for k in c.path)
        parts.append(f"@{keys} {_JSONPATH_OP[c.op]} $v{i}")
        variables[f"v{i}"] = c.value
    return "$ ? (" + " && ".join(parts) + ")", variables


def _text(c: Condition) -> str:
    return f"{c.column}.{'.'.join(c.path)}{c.op}{c.value!r}"


def parse_where(text: str) -> Condition:
    """One ``where``: ``payload.customerId=42``, ``result.status>=500``,
    ``payload.region="eu-1"``; FilterError naming ``where`` otherwise."""
    m = _WHERE.fullmatch(text)
    if m is None:
        raise FilterError("where", "expected payload.<field>[.<field>...] or "
                          "result.<field>..., then one of = != >= <= > <, then a value "
                          f"(fields of letters, digits, _ and -); found {text[:100]!r}")
    column, path, op, raw = m.groups()
    keys = tuple(path[1:].split("."))
    if len(keys) > MAX_PATH_DEPTH:
        raise FilterError("where", f"expected at most {MAX_PATH_DEPTH} fields in a path, "
                          f"found {len(keys)}")
    value: int | float | str
    if not raw:
        raise FilterError("where", f"expected a value after {op!r}, found none in {text!r}")
    if raw[0] in "=<>!":
        raise FilterError("where", f"expected a value after {op!r}, found another operator "
                          f"in {text[:100]!r} (== is spelled =)")
    if len(raw) > MAX_VALUE_CHARS:
        raise FilterError("where", f"expected a value of at most {MAX_VALUE_CHARS} "
                          f"characters, found {len(raw)}")
    if "\x00" in raw:
        raise FilterError("where", "expected a value without NUL characters, found one")
    if _NUMBER.fullmatch(raw):
        number = float(raw)
        value = int(raw) if re.fullmatch(r"-?[0-9]+", raw) else number
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            raise FilterError("where", f"expected a finite number, found {raw!r}")
    elif raw.startswith('"'):
        try:
            decoded = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            decoded = None
        if not isinstance(decoded, str):
            raise FilterError("where", f"expected a JSON string in double quotes, found {raw!r}")
        value = decoded
    else:
        value = raw
    return Condition(column, keys, op, value)  # type: ignore[arg-type]  # op: the regex's


def parse_time(value: str, field: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(field, f"expected an ISO-8601 date-time with a zone, found "
                          f"{value[:100]!r}") from None
    if when.tzinfo is None:
        raise FilterError(field, f"expected a time zone (e.g. 'Z' or '+02:00'), found "
                          f"{value!r}")
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:
        raise FilterError(field, "expected a date-time between years 1 and 9999 in UTC, "
                          f"found {value!r}") from None


def _text_param(value: str, field: str, most: int) -> str:
    if not 1 <= len(value) <= most:
        raise FilterError(field, f"expected 1..{most} characters, found {len(value)}")
    if "\x00" in value:
        raise FilterError(field, "expected text without NUL characters, found one")
    return value


def parse_filter(args: Mapping[str, str | Sequence[str]]) -> JobFilter:
    """A JobFilter from parameters by name (:data:`KEYS`): one string each, or for
    ``tag`` and ``where`` one or a list. Empty strings count as absent (an emptied
    field of a form). Names outside KEYS are the caller's to refuse."""
    one: dict[str, str] = {}
    many: dict[str, list[str]] = {}
    for name in KEYS:
        raw = args.get(name)
        if raw is None:
            continue
        values = [raw] if isinstance(raw, str) else list(raw)
        if not all(isinstance(v, str) for v in values):
            raise FilterError(name, "expected strings")
        values = [v for v in values if v != ""]
        if name in REPEATABLE:
            many[name] = values
        elif len(values) > 1:
            raise FilterError(name, f"expected {name} at most once, found it {len(values)} times")
        elif values:
            one[name] = values[0]
    status = one.get("status")
    if status is not None and status not in wire.JOB_STATUSES:
        raise FilterError("status", "expected one of " + ", ".join(wire.JOB_STATUSES)
                          + f"; found {status[:100]!r}")
    for name in ("type", "queue"):
        if name in one:
            _text_param(one[name], name, 100)
    tags = many.get("tag") or []
    if len(tags) > MAX_TAGS:
        raise FilterError("tag", f"expected at most {MAX_TAGS} tags, found {len(tags)}")
    for tag in tags:
        _text_param(tag, "tag", TAG_MAX_CHARS)
    wheres = many.get("where") or []
    if len(wheres) > MAX_WHERE:
        raise FilterError("where", f"expected at most {MAX_WHERE} conditions, found "
                          f"{len(wheres)}")
    times = {name: parse_time(one[name], name)
             for name in ("createdAfter", "createdBefore", "finishedAfter", "finishedBefore")
             if name in one}
    last_error = one.get("lastError")
    if last_error is not None:
        _text_param(last_error, "lastError", MAX_VALUE_CHARS)
    out = JobFilter(
        status=status, type=one.get("type"), queue=one.get("queue"),
        tags=tuple(dict.fromkeys(tags)) or None,
        where=tuple(parse_where(w) for w in wheres),
        created_after=times.get("createdAfter"), created_before=times.get("createdBefore"),
        finished_after=times.get("finishedAfter"),
        finished_before=times.get("finishedBefore"), last_error=last_error)
    out.params()  # contradicting equalities are a FilterError now, not at the query
    return out
