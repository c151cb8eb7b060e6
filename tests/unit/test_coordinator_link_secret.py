"""The worker's secret on the client side (actors/worker/coordinator_link.py), against a
scripted loopback server: kept from the registration's answer, sent as
X-Worker-Secret on every later request, and a 403 naming it raises SecretRefused."""

from __future__ import annotations

import msgspec
import pytest
import trio

from scheduler_core.actors.worker.coordinator_link import Link, LinkError, SecretRefused
from scheduler_core.schema import wire
from tests.unit.fake_http import read_request


def answer(status: int, body: object) -> bytes:
    data = msgspec.json.encode(body)
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def run_against(responses: list[bytes], body: object) -> list[bytes]:
    """Serve ``responses`` in order on one kept-alive connection; run ``body(link)``;
    the heads of the requests received."""
    heads: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        buffer: bytes | None = b""
        for response in responses:
            before = buffer or b""
            chunk = await stream.receive_some(65536) if b"\r\n\r\n" not in before else b""
            buffer = await read_request(stream, before + chunk)
            heads.append((before + chunk).split(b"\r\n\r\n", 1)[0])
            await stream.send_all(response)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        link = Link(f"http://127.0.0.1:{port}", timeout=5)
        try:
            await body(link)  # type: ignore[operator]
        finally:
            await link.aclose()
            nursery.cancel_scope.cancel()
    return heads


REGISTERED = {"workerId": "w1", "leaseSeconds": 30.0, "heartbeatSeconds": 1.0,
              "workerSecret": "s3cret-" + "x" * 36}
BEAT = {"renewed": [], "cancel": [], "lost": [], "known": True}
REFUSED = {"error": "forbidden", "message": "needs the secret", "field": "X-Worker-Secret"}


async def test_the_secret_registration_answers_goes_with_every_later_request() -> None:
    async def body(link: Link) -> None:
        assert "" == link.secret
        await link.register(wire.RegisterWorker(worker_id="w1", hostname="h", pid=1,
                                                capacity=1))
        await link.heartbeat(wire.Heartbeat(worker_id="w1"))

    heads = await run_against([answer(201, REGISTERED), answer(200, BEAT)], body)
    assert b"x-worker-secret" not in heads[0].lower()
    assert f"X-Worker-Secret: {REGISTERED['workerSecret']}".encode() in heads[1]


async def test_a_403_naming_the_secret_raises_secret_refused() -> None:
    async def body(link: Link) -> None:
        with pytest.raises(SecretRefused):
            await link.heartbeat(wire.Heartbeat(worker_id="w1"))

    await run_against([answer(403, REFUSED)], body)


async def test_another_403_is_a_plain_link_error() -> None:
    async def body(link: Link) -> None:
        with pytest.raises(LinkError) as caught:
            await link.heartbeat(wire.Heartbeat(worker_id="w1"))
        assert not isinstance(caught.value, SecretRefused)

    await run_against([answer(403, {**REFUSED, "field": None})], body)
