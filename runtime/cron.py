"""Cron expressions: parsing, validation and fire times, as pure functions.

Syntax: the standard 5 fields (minute hour day-of-month month day-of-week), the
shorthands @hourly @daily @weekly @monthly @yearly (@annually, @midnight), and an
optional 6th field for seconds, written FIRST (``*/10 * * * * *`` = every 10 s), the
way Quartz, Hangfire's Cronos and Spring write it. Times are computed in the
schedule's IANA time zone and returned in UTC.

How fire times are found: croniter enumerates the matching *wall-clock* times of the
zone as naive datetimes (plain calendar arithmetic, no offsets), and this module maps
each wall time to real instants. Only around daylight-saving changes is that mapping
not one-to-one, and there the rule is the one Debian's cron and Cronos follow:

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

Every fire instant is a whole second. The functions never read a clock: "now" is
always an argument.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runtime.errors import RuntimeCoreError

__all__ = ["CronError", "last_fire", "next_fire", "normalize", "prev_fire", "validate", "zone"]

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UTC = dt.UTC
_TICK = dt.timedelta(microseconds=1)
_DAY = dt.timedelta(days=1)
# Candidate wall times looked at per call before giving up: far more than any real
# expression needs near a DST change (an every-second expression needs 2 or 3).
_MAX_CANDIDATES = 10_000


class CronError(RuntimeCoreError):
    """An invalid cron expression or time zone; ``field`` is ``cron`` or ``timezone``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: str) -> ZoneInfo:
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
    check = " ".join(fields[1:] + fields[:1]) if has_seconds else text
    if not croniter.is_valid(check):
        raise CronError("cron", f"invalid cron expression {expr!r}")
    return text, has_seconds


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


def _transition(tz: ZoneInfo, before: dt.datetime, after: dt.datetime) -> dt.datetime:
    """The instant in ``(before, after]`` where ``tz`` switches to ``after``'s offset
    (binary search on whole seconds; the zone database has second resolution)."""
    target = after.astimezone(tz).utcoffset()
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, _UTC)


def _instants(wall: dt.datetime, tz: ZoneInfo, every_hour: bool) -> list[dt.datetime]:
    """The UTC instants at which the naive local ``wall`` time fires (module rule)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(_UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(_UTC)
    if first == second:
        return [first]
    if first.astimezone(tz).replace(tzinfo=None) == wall:  # occurs twice (fall back)
        earlier, later = sorted((first, second))
        return [earlier, later] if every_hour else [earlier]
    if every_hour:  # does not exist (spring forward)
        return []
    return [_transition(tz, min(first, second), max(first, second))]


def _offset_bounds(tz: ZoneInfo, at: dt.datetime) -> tuple[dt.timedelta, dt.timedelta]:
    """The least and greatest UTC offset of ``tz`` within a day of ``at``."""
    offsets = [(at + d).astimezone(tz).utcoffset() for d in (-_DAY, dt.timedelta(0), _DAY)]
    known = [o for o in offsets if o is not None]
    return min(known), max(known)


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, found naive {value!r}")
    return value.astimezone(_UTC)


def next_fire(expr: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time strictly after ``after`` (aware), in UTC.

    Error handling: :class:`CronError` for a bad expression or zone; croniter's
    ``CroniterBadDateError`` (a ValueError) for an expression that never fires.
    """
    after = _aware(after, "after")
    text, every_hour = _compile(expr)
    tz = zone(timezone)
    low, high = _offset_bounds(tz, after)
    # No instant later than ``after`` has a wall time at or before ``after + low``.
    it = croniter(text, (after + low).replace(tzinfo=None))
    best: dt.datetime | None = None
    for _ in range(_MAX_CANDIDATES):
        wall: dt.datetime = it.get_next(dt.datetime)
        # Every instant of ``wall`` is at or after ``wall - high``: nothing earlier left.
        if best is not None and (wall - high).replace(tzinfo=_UTC) >= best:
            return best
        for instant in _instants(wall, tz, every_hour):
            if instant > after and (best is None or instant < best):
                best = instant
    if best is None:
        raise ValueError(f"{expr!r} found no fire time after {after.isoformat()}")
    return best


def prev_fire(expr: str, timezone: str, before: dt.datetime) -> dt.datetime:
    """The last fire time strictly before ``before`` (aware), in UTC.

    Error handling: as :func:`next_fire`.
    """
    before = _aware(before, "before")
    text, every_hour = _compile(expr)
    tz = zone(timezone)
    low, high = _offset_bounds(tz, before)
    # No instant earlier than ``before`` has a wall time at or after ``before + high``.
    it = croniter(text, (before + high).replace(tzinfo=None))
    best: dt.datetime | None = None
    for _ in range(_MAX_CANDIDATES):
        wall: dt.datetime = it.get_prev(dt.datetime)
        # Every instant of ``wall`` is at or before ``wall - low``: nothing later left.
        if best is not None and (wall - low).replace(tzinfo=_UTC) <= best:
            return best
        for instant in _instants(wall, tz, every_hour):
            if instant < before and (best is None or instant > best):
                best = instant
    if best is None:
        raise ValueError(f"{expr!r} found no fire time before {before.isoformat()}")
    return best


def last_fire(expr: str, timezone: str, until: dt.datetime) -> dt.datetime:
    """The last fire time at or before ``until`` (aware), in UTC."""
    return prev_fire(expr, timezone, _aware(until, "until") + _TICK)
