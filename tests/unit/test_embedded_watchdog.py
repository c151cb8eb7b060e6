"""The embedded PostgreSQL's watchdog (command/embedded_watchdog.py), on trio's MockClock,
with a stand-in for the server: only its ``pid``, ``start`` and ``data_dir`` are used."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

from scheduler_core.command import embedded_watchdog, pgserver


class FakeServer:
    def __init__(self, pid: int | None, *, fail_starts: int = 0) -> None:
        self.pid = pid
        self.data_dir = Path("/nowhere/pgdata")
        self.starts = 0
        self.fail_starts = fail_starts

    def start(self, *, timeout: float) -> str:
        self.starts += 1
        if self.starts <= self.fail_starts:
            raise pgserver.EmbeddedPostgresError("pre-existing shared memory block in use")
        self.pid = 1000 + self.starts
        return "dsn"


@pytest.fixture(autouse=True)
def blocking_calls_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's calls run in the test's own thread: time spent in a worker thread
    would let the autojumping MockClock run ahead of them."""
    async def inline(fn: Callable[[], object]) -> object:
        await trio.lowlevel.checkpoint()
        return fn()

    monkeypatch.setattr(embedded_watchdog, "_blocking", inline)


def as_server(fake: FakeServer) -> pgserver.EmbeddedPostgres:
    return cast(pgserver.EmbeddedPostgres, fake)


async def test_a_running_server_is_watched_without_being_started(
        autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeServer(42)
    async with trio.open_nursery() as nursery:
        await nursery.start(embedded_watchdog.run, as_server(fake))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert 0 == fake.starts


async def test_a_postmaster_gone_is_a_crash_for_the_supervisor(
        autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeServer(42)

    async def kill_later() -> None:
        await trio.sleep(3)
        fake.pid = None

    with pytest.RaisesGroup(pytest.RaisesExc(pgserver.EmbeddedPostgresGone, match="pid 42")):
        async with trio.open_nursery() as nursery:
            await nursery.start(embedded_watchdog.run, as_server(fake))
            nursery.start_soon(kill_later)
    assert 0 == fake.starts


async def test_a_restarted_watchdog_starts_the_server_before_it_is_ready(
        autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeServer(None)
    async with trio.open_nursery() as nursery:
        await nursery.start(embedded_watchdog.run, as_server(fake))
        assert (1, 1001) == (fake.starts, fake.pid)
        nursery.cancel_scope.cancel()


async def test_a_failed_start_is_a_crash_before_started(
        autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeServer(None, fail_starts=1)
    with pytest.raises(pgserver.EmbeddedPostgresError, match="shared memory"):
        await embedded_watchdog.run(as_server(fake))


async def test_while_stopping_a_server_gone_is_started_again_until_it_starts(
        autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeServer(None, fail_starts=2)
    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(embedded_watchdog.keep_up_while_stopping, as_server(fake))
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert (3, 1003) == (fake.starts, fake.pid)  # after waits of 0.5 s and 1 s
    assert 10 == trio.current_time() - began

