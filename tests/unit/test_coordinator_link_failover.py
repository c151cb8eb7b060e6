"""actors/worker/coordinator_link.py with several coordinator URLs: the link stays on one,
moves to the next (round robin) after a request to it fails, and never resends the
failed request itself. The coordinators are loopback HTTP/1.1 listeners answering
heartbeats."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import structlog
import trio
import trio.testing

from scheduler_core.actors.worker.coordinator_link import Link, LinkError
from scheduler_core.schema import wire
from tests.unit.fake_http import read_request

REPLY = b'{"renewed": [], "cancel": [], "lost": [], "known": true}'
BEAT = wire.Heartbeat(worker_id="w1")


class FakeCoordinator:
    """Answers every POST with ``status`` (a heartbeat reply when 200), after
    ``gate`` is set when there is one; counts the requests it read in ``hits``."""

    def __init__(self) -> None:
        self.status = 200
        self.hits = 0
        self.gate: trio.Event | None = None
        self.url = ""
        self._scope: trio.CancelScope | None = None

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.CancelScope() as self._scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            task_status.started()
            await trio.serve_listeners(self._handle, listeners)

    def stop(self) -> None:
        """Die: stop listening and drop every connection."""
        assert self._scope is not None
        self._scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            buffer: bytes | None = b""
            while True:
                buffer = await read_request(stream, buffer or b"")
                if buffer is None:
                    return
                self.hits += 1
                if self.gate is not None:
                    await self.gate.wait()
                body = REPLY if self.status == 200 else b'{"error": "test"}'
                await stream.send_all(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                                      % (self.status, len(body), body))


@asynccontextmanager
async def coordinators(n: int) -> AsyncIterator[list[FakeCoordinator]]:
    fakes = [FakeCoordinator() for _ in range(n)]
    async with trio.open_nursery() as nursery:
        for fake in fakes:
            await nursery.start(fake.serve)
        yield fakes
        nursery.cancel_scope.cancel()


_HELD: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _release_held_ports() -> Iterator[None]:
    yield
    while _HELD:
        _HELD.pop().close()


async def refusing_url() -> str:
    """A loopback URL nothing listens on. Its port stays bound (never listening) until
    the test ends, so a fake coordinator started later cannot be given it."""
    await trio.lowlevel.checkpoint()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _HELD.append(sock)
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def open_link(urls: list[str]) -> AsyncIterator[Link]:
    link = Link(urls, timeout=5.0)
    try:
        yield link
    finally:
        await link.aclose()


def failovers(logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [(e["from_url"], e["to_url"]) for e in logs
            if e["event"] == "coordinator_failed_over"]


async def test_a_refused_connection_fails_the_request_and_the_next_goes_to_the_second_url(
        ) -> None:
    dead = await refusing_url()
    async with coordinators(1) as [second], open_link([dead, second.url]) as link:
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)
            assert 0 == second.hits  # the failed request was not resent
            assert True is (await link.heartbeat(BEAT)).known
        assert (1, second.url) == (second.hits, link.base_url)
        assert [(dead, second.url)] == failovers(logs)


async def test_the_link_stays_on_a_url_that_answers() -> None:
    async with coordinators(2) as [first, second], open_link([first.url, second.url]) as link:
        for _ in range(3):
            await link.heartbeat(BEAT)
        assert (3, 0) == (first.hits, second.hits)


async def test_the_link_rotates_round_robin_when_the_second_dies_too() -> None:
    async with coordinators(2) as [first, second], open_link([first.url, second.url]) as link:
        with structlog.testing.capture_logs() as logs:
            first.status = 503
            with pytest.raises(LinkError, match="HTTP 503"):
                await link.heartbeat(BEAT)
            await link.heartbeat(BEAT)
            assert second.url == link.base_url
            second.stop()
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)
            first.status = 200
            await link.heartbeat(BEAT)
        assert (2, 1) == (first.hits, second.hits)
        assert [(first.url, second.url), (second.url, first.url)] == failovers(logs)


async def test_an_https_url_that_refuses_fails_over_too() -> None:
    dead = (await refusing_url()).replace("http://", "https://")
    async with coordinators(1) as [second], open_link([dead, second.url]) as link:
        with pytest.raises(LinkError, match="ConnectError"):
            await link.heartbeat(BEAT)
        await link.heartbeat(BEAT)
        assert (1, second.url) == (second.hits, link.base_url)


async def test_a_4xx_answer_does_not_fail_over() -> None:
    async with coordinators(2) as [first, second], open_link([first.url, second.url]) as link:
        first.status = 401
        with pytest.raises(LinkError, match="HTTP 401"):
            await link.heartbeat(BEAT)
        assert first.url == link.base_url


async def test_requests_failing_together_move_the_link_one_url_only() -> None:
    async with coordinators(3) as fakes, open_link([f.url for f in fakes]) as link:
        first, second, _ = fakes
        first.status, first.gate = 503, trio.Event()

        async def beat_fails() -> None:
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)

        with structlog.testing.capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(beat_fails)
                nursery.start_soon(beat_fails)
                await trio.testing.wait_all_tasks_blocked()
                assert 2 == first.hits
                first.gate.set()
        assert second.url == link.base_url
        assert [(first.url, second.url)] == failovers(logs)


async def test_a_late_failure_from_a_url_already_left_does_not_move_the_link_back() -> None:
    async with coordinators(3) as fakes, open_link([f.url for f in fakes]) as link:
        first, second, third = fakes
        gate = trio.Event()
        first.status, first.gate = 503, gate

        async def slow_beat_fails() -> None:
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_beat_fails)  # held by the first coordinator
            await trio.testing.wait_all_tasks_blocked()
            first.gate = None
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)  # 503 at once: on to the second
            second.status = 503
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)  # on to the third
            gate.set()  # the held request fails now, from the first coordinator
        assert third.url == link.base_url


async def test_a_single_url_is_kept_after_a_failure() -> None:
    async with coordinators(1) as [only], open_link([only.url]) as link:
        with structlog.testing.capture_logs() as logs:
            only.status = 503
            with pytest.raises(LinkError):
                await link.heartbeat(BEAT)
            only.status = 200
            await link.heartbeat(BEAT)
        assert (2, only.url) == (only.hits, link.base_url)
        assert [] == failovers(logs)


async def test_a_single_url_may_be_given_as_a_string() -> None:
    async with coordinators(1) as [only], open_link([only.url]) as listed:
        alone = Link(only.url + "/")
        try:
            await alone.heartbeat(BEAT)
        finally:
            await alone.aclose()
        assert ((only.url,), (only.url,)) == (alone.base_urls, listed.base_urls)
