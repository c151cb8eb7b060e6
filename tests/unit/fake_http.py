"""The server side of tests' fake HTTP/1.1 peers: read one request off a stream."""

from __future__ import annotations

import trio


async def read_request(stream: trio.abc.ReceiveStream, buffer: bytes) -> bytes | None:
    """Read one request (head, then a Content-Length body) from ``buffer`` and then
    ``stream``; what was read past it, or None if the peer closed before a request."""
    got = await read_request_body(stream, buffer)
    return None if got is None else got[1]


async def read_request_body(stream: trio.abc.ReceiveStream,
                            buffer: bytes) -> tuple[bytes, bytes] | None:
    """The same, answering the request's body and what was read past it."""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        buffer += chunk
    head, buffer = buffer.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(buffer) < length:
        buffer += await stream.receive_some(4096)
    return buffer[:length], buffer[length:]
