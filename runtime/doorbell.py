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
