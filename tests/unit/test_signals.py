"""command/signals.py: the two-signal shutdown rule shared by the coordinator, the
worker and ``scheduler up``."""

from __future__ import annotations

import os
import signal
from functools import partial
from typing import Any

import trio
import trio.testing

from scheduler_core.command import signals


class Recorder:
    """Stands in for a structlog logger: keeps what was logged."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))


async def test_the_first_signal_asks_for_the_graceful_stop_only() -> None:
    send, receive = trio.open_memory_channel[int](2)
    calls: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(signals.handle_two_signals, receive, Recorder(),
                                   on_first=lambda: calls.append("first"),
                                   on_second=lambda: calls.append("second")))
        await send.send(signal.SIGTERM)
        await trio.testing.wait_all_tasks_blocked()
        assert ["first"] == calls
        nursery.cancel_scope.cancel()


async def test_the_second_signal_asks_for_the_immediate_stop_and_ends_the_watch() -> None:
    send, receive = trio.open_memory_channel[int](3)
    calls: list[str] = []
    log = Recorder()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGINT):
        send.send_nowait(signum)
    await signals.handle_two_signals(receive, log, on_first=lambda: calls.append("first"),
                                     on_second=lambda: calls.append("second"))
    assert ["first", "second"] == calls
    assert [("signal_received", {"signal": "SIGTERM", "count": 1}),
            ("signal_received", {"signal": "SIGINT", "count": 2})] == log.events


async def test_while_open_a_sigint_is_received_not_raised() -> None:
    calls: list[str] = []
    with signals.open_shutdown_signals() as received:
        os.kill(os.getpid(), signal.SIGINT)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(
                signals.handle_two_signals, received, Recorder(),
                on_first=lambda: (calls.append("first"), nursery.cancel_scope.cancel()),
                on_second=lambda: calls.append("second")))
    assert ["first"] == calls
