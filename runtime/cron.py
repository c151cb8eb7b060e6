"""Cron expressions: parsing, validation and fire times, as pure functions.

Syntax: the standard 5 fields (minute hour day-of-month month day-of-week), the
shorthands @hourly @daily @weekly @monthly @yearly (@annually, @midnight), and an
optional 6th field for seconds, written FIRST (``*/10 * * * * *`` = every 10 s), the
way Quartz, Hangfire's Cronos and Spring write it. A step (``*/15``, ``1-30/5``) is 1
to the field's number of values (60 seconds or minutes, 24 hours, 31 days, 12 months,
7 weekdays). Times are computed in the schedule's IANA time zone (a name from the zone
database such as ``Europe/Berlin``; not ``localtime``, which is whatever the host says)
and returned in UTC.

How fire times are found: croniter enumerates the matching *wall-clock* times of the
zone as naive datetimes (plain calendar arithmetic, no offsets; croniter's own handling
of aware datetimes is not used), and this module maps wall times to real instants.
Only around daylight-saving changes is that mapping not one-to-one, and there the rule
is the one Debian's cron follows:

- **Skipped hour** (spring forward, e.g. Europe/Berlin 2026-03-29 02:00 -> 03:00): a
  fire whose wall time does not exist runs once, at the transition instant (03:00 local
  time, the first instant after the gap). Several fires inside the gap collapse into
  that one instant.
- **Repeated hour** (fall back, e.g. Europe/Berlin 2026-10-25 03:00 -> 02:00): a fire
  whose wall time occurs twice runs once, at its first occurrence. (croniter 7.0 on an
  aware datetime fires a daily 02:30 twice that day; this module fires it once.)
- **Interval expressions** are the exception, as in Debian's cron: when the hour field
  matches every hour (``*/2 * * * * *``, ``*/15 * * * *``, ``0 * * * *``), the schedule
  follows real time: wall times inside the gap simply do not exist (no fire), and the
  repeated hour fires in both of its occurrences. An every-15-minutes job thus keeps
  running every 15 real minutes across both changes instead of pausing for an hour.

Fixed-time expressions map walls to instants in order (a repeated wall time to its
first occurrence, a skipped one to the transition), so the first wall after the start
gives the answer. Interval expressions are followed stretch by stretch of constant UTC
offset, within which instant and wall time differ by that offset. Either way a call
costs a couple of croniter steps, not a scan.

Every fire instant is a whole second. The functions never read a clock: "now" is
always an argument.
"""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter

from scheduler_core.runtime.errors import RuntimeCoreError

__all__ = ["CronError", "last_fire", "next_fire", "normalize", "prev_fire", "validate", "zone"]

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UTC = dt.UTC
_TICK = dt.timedelta(microseconds=1)
_SECOND = dt.timedelta(seconds=1)
_WEEK = 7 * 86_400
# Steps per call before giving up: far more than any expression needs (one or two,
# three around a daylight-saving change).
_MAX_CANDIDATES = 1_000


class CronError(RuntimeCoreError):
    """An invalid cron expression or time zone; ``field`` is ``cron`` or ``timezone``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# Names the zone database holds that are no IANA zone: the host's own zone (which
# differs from host to host, so coordinators would disagree) and a build leftover.
_HOST_ALIASES = frozenset({"localtime", "posixrules"})


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    """The IANA zone names known here (read once: it walks the zone database)."""
    return frozenset((available_timezones() | {"UTC"}) - _HOST_ALIASES)


def zone(name: str) -> ZoneInfo:
    """The zone named ``name``, which must be an IANA zone name (``Europe/Berlin``,
    ``UTC``) exactly as the zone database spells it: not a path, not ``localtime``."""
    if name not in _zone_names():
        raise CronError("timezone", f"expected an IANA time zone name such as "
                        f"'Europe/Berlin' or 'UTC', found {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError("timezone", f"unknown IANA time zone {name!r}") from None


def normalize(expr: str) -> tuple[str, bool]:
    """``(expression, has_seconds)`` with shorthands expanded; raises CronError."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in _SHORTHANDS:
            raise CronError("cron", f"unknown shorthand {expr!r}; expected one of "
                            + ", ".join(sorted(_SHORTHANDS)))
        return _SHORTHANDS[text.lower()], False
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise CronError("cron", f"expected 5 fields (or 6 with seconds first), "
                        f"found {len(fields)} in {expr!r}")
    has_seconds = len(fields) == 6
    _check_steps(fields[1:] if has_seconds else fields, _FIELDS)
    if has_seconds:
        _check_steps(fields[:1], _SECONDS_FIELD)
    check = " ".join(fields[1:] + fields[:1]) if has_seconds else text
    if not croniter.is_valid(check):
        raise CronError("cron", f"invalid cron expression {expr!r}")
    return text, has_seconds


# (name, how many values it has): a step may be at most that (*/60 is hourly).
_FIELDS = (("minute", 60), ("hour", 24), ("day-of-month", 31), ("month", 12),
           ("day-of-week", 7))
_SECONDS_FIELD = (("second", 60),)


def _check_steps(fields: list[str], kinds: tuple[tuple[str, int], ...]) -> None:
    """CronError unless every ``/step`` in ``fields`` is 1 to the field's number of
    values: croniter takes any step (``*/99999999999999999999`` fires once an hour)."""
    for text, (name, most) in zip(fields, kinds, strict=True):
        for item in text.split(","):
            _, slash, step = item.partition("/")
            if not (slash and step.isascii() and step.isdigit()):
                continue  # no step, or one croniter refuses itself
            value = int(step) if len(step.lstrip("0")) <= 3 else most + 1
            if not 1 <= value <= most:
                raise CronError("cron", f"expected a step of 1 to {most} in the {name} "
                                f"field, found {step[:24]!r} in {item[:40]!r}")


def validate(expr: str, timezone: str) -> None:
    """Raise :class:`CronError` naming the field when ``expr`` or ``timezone`` is bad."""
    zone(timezone)
    normalize(expr)


@lru_cache(maxsize=512)
def _compile(expr: str) -> tuple[str, bool]:
    """``(croniter text with seconds last, every_hour)`` for a valid expression."""
    text, has_seconds = normalize(expr)
    if has_seconds:
        fields = text.split(" ")
        text = " ".join(fields[1:] + fields[:1])  # croniter wants seconds last
    expanded, _ = croniter.expand(text)
    every_hour = expanded[1] == ["*"]
    return text, every_hour


@lru_cache(maxsize=512)
def _parsed(text: str) -> croniter:
    return croniter(text, dt.datetime(2000, 1, 1))


def _walls(text: str, start: dt.datetime) -> croniter:
    """A croniter positioned at naive ``start``, iterating plain wall-clock times.

    Parsing costs far more than a step, so one parsed iterator per expression is kept
    and repositioned; each caller uses it synchronously, before anything else can.
    """
    it = _parsed(text)
    it.set_current(start, force=True)
    return it


# --- offsets and transitions (instants are whole UTC seconds from here on) ------------

def _at(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, _UTC)


def _offset(tz: ZoneInfo, seconds: int) -> dt.timedelta:
    offset = dt.datetime.fromtimestamp(seconds, tz).utcoffset()
    assert offset is not None
    return offset


def _wall(seconds: int, offset: dt.timedelta) -> dt.datetime:
    """The naive local wall time of instant ``seconds`` at UTC ``offset``."""
    return (_at(seconds) + offset).replace(tzinfo=None)


def _seconds(wall: dt.datetime, offset: dt.timedelta) -> int:
    """The instant (whole seconds) of naive ``wall`` at UTC ``offset``."""
    return int((wall - offset).replace(tzinfo=_UTC).timestamp())


def _switch(tz: ZoneInfo, lo: int, hi: int) -> int:
    """The first second in ``(lo, hi]`` with ``hi``'s offset, given that ``lo`` has
    another one and at most one change lies between (binary search)."""
    target = _offset(tz, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(tz, mid) == target:
            hi = mid
        else:
            lo = mid
    return hi


def _first_change(tz: ZoneInfo, lo: int, hi: int) -> int | None:
    """The first second in ``(lo, hi]`` whose offset differs from ``lo``'s, if any.
    Probes a week at a time: no zone changes its offset twice within a week."""
    base = _offset(tz, lo)
    a = lo
    while a < hi:
        b = min(a + _WEEK, hi)
        if _offset(tz, b) != base:
            return _switch(tz, a, b)
        a = b
    return None


def _segment_start(tz: ZoneInfo, lo: int, hi: int) -> int | None:
    """Where the constant-offset stretch that holds second ``hi - 1`` begins, if that is
    after ``lo`` (probing back a week at a time)."""
    base = _offset(tz, hi - 1)
    b = hi - 1
    while b > lo:
        a = max(b - _WEEK, lo)
        if _offset(tz, a) != base:
            return _switch(tz, a, b)
        b = a
    return None


# --- the two mapping rules ------------------------------------------------------------

def _fixed_instant(wall: dt.datetime, tz: ZoneInfo) -> int:
    """The one instant a fixed-time expression fires for ``wall``: a repeated wall time
    at its first occurrence, a skipped one at the transition."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(_UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(_UTC)
    if first == second or first.astimezone(tz).replace(tzinfo=None) == wall:
        return int(min(first, second).timestamp())
    return _switch(tz, int(min(first, second).timestamp()), int(max(first, second).timestamp()))


def _fold_end(tz: ZoneInfo, local: dt.datetime) -> dt.datetime:
    """For ``local`` in the second pass of a repeated hour: the naive wall time at which
    the repeated stretch ends (03:00 for Berlin's 02:00-03:00)."""
    wall = local.replace(tzinfo=None)
    first = int(wall.replace(tzinfo=local.tzinfo, fold=0).astimezone(_UTC).timestamp())
    change = _switch(tz, first, int(local.timestamp()))
    return _wall(change, _offset(tz, change - 1))


def _next_fixed(text: str, tz: ZoneInfo, after: int) -> int:
    local = _at(after).astimezone(tz)
    # Walls map to instants in order (a repeated wall to its first occurrence), so the
    # first wall after ``after``'s own whose instant is later is the answer.
    if local.fold:
        it = _walls(text, _fold_end(tz, local) - _SECOND)
    else:
        it = _walls(text, local.replace(tzinfo=None))
    for _ in range(_MAX_CANDIDATES):
        instant = _fixed_instant(it.get_next(dt.datetime), tz)
        if instant > after:
            return instant
    raise ValueError(f"no fire time found after {_at(after).isoformat()}")


def _prev_fixed(text: str, tz: ZoneInfo, before: int) -> int:
    local = _at(before).astimezone(tz)
    start = _fold_end(tz, local) if local.fold else local.replace(tzinfo=None)
    it = _walls(text, start)
    for _ in range(_MAX_CANDIDATES):
        instant = _fixed_instant(it.get_prev(dt.datetime), tz)
        if instant < before:
            return instant
    raise ValueError(f"no fire time found before {_at(before).isoformat()}")


def _next_real(text: str, tz: ZoneInfo, after: int) -> int:
    # Within a stretch of constant offset, instants and walls differ by that offset:
    # find the next wall there; if the stretch ends first, go on from its end.
    start, inclusive = after, False
    for _ in range(_MAX_CANDIDATES):
        offset = _offset(tz, start)
        wall = _wall(start, offset) - (_SECOND if inclusive else dt.timedelta(0))
        candidate = _seconds(_walls(text, wall).get_next(dt.datetime), offset)
        change = _first_change(tz, start, candidate)
        if change is None:
            return candidate
        start, inclusive = change, True
    raise ValueError(f"no fire time found after {_at(after).isoformat()}")


def _prev_real(text: str, tz: ZoneInfo, before: int) -> int:
    end = before
    for _ in range(_MAX_CANDIDATES):
        offset = _offset(tz, end - 1)
        candidate = _seconds(_walls(text, _wall(end, offset)).get_prev(dt.datetime), offset)
        change = _segment_start(tz, candidate, end)
        if change is None:
            return candidate
        end = change
    raise ValueError(f"no fire time found before {_at(before).isoformat()}")


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, found naive {value!r}")
    return value.astimezone(_UTC)


def next_fire(expr: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time strictly after ``after`` (aware), in UTC.

    Error handling: :class:`CronError` for a bad expression or zone; croniter's
    ``CroniterBadDateError`` (a ValueError) for an expression that never fires.
    """
    text, every_hour = _compile(expr)
    tz = zone(timezone)
    # Fires are whole seconds: "after 12:00:05.3" is "after 12:00:05".
    seconds = math.floor(_aware(after, "after").timestamp())
    found = (_next_real if every_hour else _next_fixed)(text, tz, seconds)
    return _at(found)


def prev_fire(expr: str, timezone: str, before: dt.datetime) -> dt.datetime:
    """The last fire time strictly before ``before`` (aware), in UTC.

    Error handling: as :func:`next_fire`.
    """
    text, every_hour = _compile(expr)
    tz = zone(timezone)
    # "before 12:00:05.3" is "before 12:00:06".
    seconds = math.ceil(_aware(before, "before").timestamp())
    found = (_prev_real if every_hour else _prev_fixed)(text, tz, seconds)
    return _at(found)


def last_fire(expr: str, timezone: str, until: dt.datetime) -> dt.datetime:
    """The last fire time at or before ``until`` (aware), in UTC."""
    return prev_fire(expr, timezone, _aware(until, "until") + _TICK)
