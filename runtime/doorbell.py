"""A doorbell: wake tasks that wait for "something may have changed".

``ring()`` wakes every current waiter; a waiter that read :attr:`generation` before
looking for work and then calls ``wait_since(gen)`` returns at once if a ring happened
in between, so no ring is ever lost between "looked, found nothing" and "waiting".
"""

from __future__ import annotations

import trio


class Doorbell:
    def __init__(self) -> None:
        self._event = trio.Event()
        self.generation = 0
        self.waiters = 0

    def ring(self) -> None:
        """Wake every waiter (a no-op costing nothing when nobody waits)."""
        self.generation += 1
        if self.waiters:
            self._event.set()
            self._event = trio.Event()

    async def wait_since(self, generation: int) -> None:
        """Return once a ring newer than ``generation`` has happened.

        Cancellation: cancel it (e.g. with ``trio.move_on_after``) to bound the wait.
        """
        if self.generation != generation:
            await trio.lowlevel.checkpoint()
            return
        self.waiters += 1
        try:
            await self._event.wait()
        finally:
            self.waiters -= 1


class EchoFilter:
    """Notifications this process caused and has already acted upon.

    A coordinator that makes jobs due rings its own doorbell the moment its statement
    commits; PostgreSQL then echoes the same news back through LISTEN a fraction of a
    millisecond later, and ringing again would send one more claim query looking
    for jobs that were already taken. Before such a statement the store calls
    :meth:`expect` with its connection's backend pid (the payload the notification
    will carry); the listener drops a notification whose payload :meth:`take` finds
    expected. Expecting *before* the statement means the echo can never arrive
    first and be lost. A statement that fails calls :meth:`cancel` (and rings
    anyway); a reconnected listener calls :meth:`clear`, since whatever it missed
    is lost and it rings once on its own.
    """

    def __init__(self) -> None:
        self._expected: dict[str, int] = {}

    def expect(self, key: str) -> None:
        self._expected[key] = self._expected.get(key, 0) + 1

    def cancel(self, key: str) -> None:
        n = self._expected.get(key, 0) - 1
        if n > 0:
            self._expected[key] = n
        else:
            self._expected.pop(key, None)

    def take(self, key: str) -> bool:
        """True (and forget it) when ``key`` is an expected echo."""
        if key not in self._expected:
            return False
        self.cancel(key)
        return True

    def clear(self) -> None:
        self._expected.clear()
