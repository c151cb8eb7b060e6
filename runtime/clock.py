"""The one source of wall-clock time.

Intervals and deadlines read trio's clock (``trio.current_time()``), so tests drive them
with ``trio.testing.MockClock``. Wall-clock instants (for payload timestamps and log
lines) come from :func:`utcnow`, which tests can replace with :func:`set_wall_clock`.
Leases and heartbeats are decided by the database clock (``now()`` in SQL), never here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

WallClock = Callable[[], dt.datetime]


def _system_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_wall_clock: WallClock = _system_utcnow


def utcnow() -> dt.datetime:
    """Return the current wall-clock time as an aware UTC datetime."""
    return _wall_clock()


def set_wall_clock(clock: WallClock | None) -> None:
    """Replace the wall clock (``None`` restores the system clock). For tests."""
    global _wall_clock
    _wall_clock = clock if clock is not None else _system_utcnow
