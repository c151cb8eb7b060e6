"""The worker's side of the protocol without a coordinator: the request encoding and
the lean HTTP/1.1 client (actors/worker/http11.py) against a scripted loopback server."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import msgspec
import pytest
import trio

from scheduler_core.actors.worker.coordinator_link import encode
from scheduler_core.actors.worker.http11 import Http11Client, HttpError
from scheduler_core.schema import wire
from tests.unit.fake_http import read_request


def test_nul_in_an_outcome_is_sent_as_a_replacement_character() -> None:
    completion = wire.Completion(run_id=uuid.uuid4(), lease_token=uuid.uuid4(),
                                 outcome="Failed", error="bad\x00thing",
                                 result={"k": "v\x00", "literal": "x\\u0000"})
    sent = msgspec.json.decode(encode(completion))
    assert ("bad\ufffdthing", {"k": "v\ufffd", "literal": "x\\u0000"}) == (
        sent["error"], sent["result"])
    assert b"\\u0000" not in encode(completion).replace(b"\\\\u0000", b"")


Script = list[bytes]


async def serve(script: list[Script], closed: trio.Event,
                task_status: trio.TaskStatus[int]) -> None:
    """Each accepted connection answers the next script: one response per request,
    then closes (and sets ``closed``)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle(stream: trio.SocketStream) -> None:
        responses = script.pop(0)
        buffer: bytes | None = b""
        for response in responses:
            buffer = await read_request(stream, buffer or b"")
            assert buffer is not None, "the client hung up before its request"
            await stream.send_all(response)
        await stream.aclose()
        closed.set()

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


async def with_server(script: list[Script],
                      body: Callable[[Http11Client, trio.Event], Awaitable[None]]) -> None:
    closed = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, script, closed)
        client = Http11Client("127.0.0.1", port)
        try:
            await body(client, closed)
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_the_client_reads_sized_and_chunked_bodies_on_one_kept_connection() -> None:
    script = [[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
               b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
               b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\nConnection: close\r\n\r\nno"],
              [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]]

    async def body(client: Http11Client, closed: trio.Event) -> None:
        assert (200, b"hello") == await client.post("/a", b"{}", timeout=5)
        assert (201, b"abcde") == await client.post("/a", b"{}", timeout=5)
        assert (409, b"no") == await client.post("/a", b"{}", timeout=5)
        # "Connection: close": the next request opens the second connection.
        assert (200, b"ok") == await client.post("/a", b"{}", timeout=5)

    await with_server(script, body)


async def test_a_kept_connection_closed_by_the_server_is_retried_once_on_a_new_one() -> None:
    script = [[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"],  # then closes
              [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2"]]

    async def body(client: Http11Client, closed: trio.Event) -> None:
        assert (200, b"1") == await client.post("/a", b"{}", timeout=5)
        await closed.wait()  # the kept connection is closed by the server now
        assert (200, b"2") == await client.post("/a", b"{}", timeout=5)

    await with_server(script, body)


async def test_a_refused_connection_is_an_http_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nothing listens there now
    with pytest.raises(HttpError):
        await Http11Client("127.0.0.1", port).post("/a", b"{}", timeout=5)
