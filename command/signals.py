"""The two-signal shutdown rule of every process the ``scheduler`` command runs: the
first SIGTERM or SIGINT asks for a graceful stop (cancel the tree, or drain first), the
second for an immediate one. Each root opens the receiver before it starts anything,
so a signal during start-up waits to be read instead of killing the process, and says
what the two signals do; :func:`handle_two_signals` is the one loop that reads them.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import trio

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def open_shutdown_signals() -> AbstractContextManager[AsyncIterator[int]]:
    """A trio signal receiver for SIGTERM and SIGINT: while it is open, neither kills
    the process (SIGINT raises no KeyboardInterrupt); they queue until read."""
    return trio.open_signal_receiver(*SHUTDOWN_SIGNALS)


async def handle_two_signals(signals: AsyncIterator[int], log: Any, *,
                             on_first: Callable[[], object],
                             on_second: Callable[[], object]) -> None:
    """Read ``signals``: call ``on_first`` for the first, ``on_second`` for the second,
    then return. Each is logged on ``log`` as ``signal_received`` with its name and
    count.

    Cancellation: safe at any point (nothing is called half-way).
    """
    count = 0
    async for signum in signals:
        count += 1
        log.info("signal_received", signal=signal.Signals(signum).name, count=count)
        if count == 1:
            on_first()
        else:
            on_second()
            return
