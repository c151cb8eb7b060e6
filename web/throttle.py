"""Failed sign-ins per client address: after a few, a lockout that doubles each time.

Tokens are long random strings, so guessing one is hopeless, but nothing should let a
client try thousands a second either. :class:`AuthThrottle` counts the failed token
checks (bearer headers, the dashboard's cookie, the login form) of each client address:

    failures 1 .. free-1     nothing happens
    failure  free            locked out for ``base`` seconds
    each failure after it    (once the lockout is over) locked out for twice as long
                             as the last time, up to ``cap``
    a recognised token       forgets the address

While an address is locked out every request of it that presents credentials is
answered 429 with ``Retry-After``, the right token too (otherwise the lockout would
only slow a guesser down, not stop one), and is not checked or counted.

The state lives in this coordinator process only (each coordinator throttles on its
own: an attacker spreading guesses over N coordinators gets N times the rate, still
exponentially slowed), bounded to ``max_addresses`` entries: the least recently
failing address is dropped first, so a flood of addresses cannot grow the memory.
An address with no failure for ``forget_after`` seconds starts afresh. Time is
``clock()``, trio's by default, so tests drive the schedule with a fake clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import trio

from scheduler_core.runtime import backoff

__all__ = ["AuthThrottle", "lockout_seconds", "retry_after_header"]


def lockout_seconds(failures: int, *, free: int, base: float, cap: float) -> float:
    """How long an address is locked out after its ``failures``-th failure in a row
    (0 below ``free``): ``min(cap, base * 2 ** (failures - free))``."""
    if free <= 0 or failures < free:
        return 0.0
    return backoff.delay(failures - free, base=base, cap=cap)


class _Entry:
    __slots__ = ("failures", "last_failure", "locked_until")

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = 0.0
        self.locked_until = 0.0


class AuthThrottle:
    """``free``: failures allowed before the first lockout (0: never throttle).
    ``base``, ``cap``: the first and the longest lockout, in seconds."""

    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 300.0,
                 max_addresses: int = 10_000, forget_after: float | None = None,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.free = free
        self.base = base
        self.cap = cap
        self.max_addresses = max_addresses
        self.forget_after = forget_after if forget_after is not None else max(900.0, 2 * cap)
        self.clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0.0 when it is not locked out."""
        entry = self._entries.get(address)
        if entry is None:
            return 0.0
        now = self.clock()
        if now < entry.locked_until:
            return entry.locked_until - now
        if now - entry.last_failure >= self.forget_after:
            del self._entries[address]
        return 0.0

    def failed(self, address: str) -> int | None:
        """Count a failed token check of ``address``. Returns the failure count when
        this failure starts a burst of lockouts (the first since the address was last
        forgotten: the moment to log it, once), else None."""
        if self.free <= 0:
            return None
        self.retry_after(address)  # forgets a stale entry
        entry = self._entries.get(address)
        if entry is None:
            entry = self._entries[address] = _Entry()
            while len(self._entries) > self.max_addresses:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(address)
        now = self.clock()
        entry.failures += 1
        entry.last_failure = now
        delay = lockout_seconds(entry.failures, free=self.free, base=self.base, cap=self.cap)
        if delay > 0:
            entry.locked_until = now + delay
        return entry.failures if entry.failures == self.free else None

    def succeeded(self, address: str) -> None:
        """A recognised token from ``address``: its failures are forgotten."""
        self._entries.pop(address, None)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (at least 1)."""
    return str(max(1, math.ceil(seconds)))
