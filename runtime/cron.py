"""Cron expressions: parsing, validation and fire times, as pure functions.

Syntax: the standard 5 fields (minute hour day-of-month month day-of-week), the
shorthands @hourly @daily @weekly @monthly @yearly (@annually, @midnight), and an
optional 6th field for seconds, written FIRST (``*/10 * * * * *`` = every 10 s), the
way Quartz, Hangfire's Cronos and Spring write it. Times are computed in the
schedule's IANA time zone and returned in UTC.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from runtime.errors import RuntimeCoreError

_SHORTHANDS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


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


def _iter(expr: str, tz: ZoneInfo, start: dt.datetime) -> croniter:
    text, has_seconds = normalize(expr)
    if has_seconds:
        fields = text.split(" ")
        text = " ".join(fields[1:] + fields[:1])  # croniter wants seconds last
    return croniter(text, start.astimezone(tz))


def next_fire(expr: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first fire time strictly after ``after`` (aware), in UTC."""
    it = _iter(expr, zone(timezone), after)
    nxt: dt.datetime = it.get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


def validate(expr: str, timezone: str) -> None:
    """Raise :class:`CronError` naming the field when ``expr`` or ``timezone`` is bad."""
    zone(timezone)
    normalize(expr)
