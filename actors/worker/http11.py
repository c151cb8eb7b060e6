"""A minimal HTTP/1.1 client for the worker protocol: POST a JSON body to one
``http://`` host, read the answer, keep the connection for the next request.

The worker talks to its coordinator only through a handful of small JSON POSTs, a
few hundred a second when it is busy. httpx spent about a millisecond of CPU on each
(a third of a busy worker's CPU, docs/decisions/0009-fast-path.md); this client does
what those requests need and nothing else: no redirects, no cookies, no proxies, no
compression, no TLS (``https://`` coordinators keep httpx, see
actors/worker/coordinator_link.py). It understands ``Content-Length`` and ``chunked``
bodies and ``Connection: close``.

Errors: every failure to get a complete answer (refused, reset, closed early,
malformed, too slow) raises :class:`HttpError`; the connection it happened on is
dropped. A request on a kept connection that the server had closed meanwhile (it
times idle connections out) is retried once on a fresh one, since nothing of it can
have been read.

Cancellation: a request cancelled midway drops its connection (the answer may still
be on its way) and re-raises.
"""

from __future__ import annotations

from collections import deque

import trio

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
_RECEIVE_BYTES = 64 * 1024
_KEEP_IDLE = 8


class HttpError(Exception):
    """No complete answer: connection refused, reset or closed, bad framing, timeout."""


class _ClosedBeforeAnswer(HttpError):
    """The server closed the connection before sending anything."""


class _Connection:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.answered = False  # some of the current answer arrived

    async def _fill(self) -> None:
        try:
            chunk = await self.stream.receive_some(_RECEIVE_BYTES)
        except trio.BrokenResourceError as exc:  # reset by the server
            if not self.answered:
                raise _ClosedBeforeAnswer(f"the connection was reset: {exc}") from exc
            raise
        if not chunk:
            if not self.answered:
                raise _ClosedBeforeAnswer("the server closed the connection")
            raise HttpError("the server closed the connection mid-answer")
        self.buffer += chunk
        self.answered = True

    async def read_until(self, marker: bytes, limit: int) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise HttpError(f"expected {marker!r} within {limit} bytes, found none")
            await self._fill()
        out = bytes(self.buffer[:end])
        del self.buffer[:end + len(marker)]
        return out

    async def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return (status, body, whether the connection may be kept)."""
        self.answered = False
        try:
            await self.stream.send_all(head + body)
        except (trio.BrokenResourceError, OSError) as exc:
            raise _ClosedBeforeAnswer(f"the connection broke while sending: {exc}") from exc
        status_line, *lines = (await self.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)).split(
            b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"expected an HTTP/1.x status line, found {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep = parts[0] == b"HTTP/1.1"
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                    raise HttpError(f"unexpected Content-Length {value[:40]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"connection":
                keep = value != b"close" if keep else value == b"keep-alive"
        if chunked:
            data = await self._read_chunked()
        elif length is not None:
            data = await self.read_exactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:  # delimited by the end of the connection
            data = await self._read_to_end()
            keep = False
        return status, data, keep and not self.buffer

    async def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size_line = await self.read_until(b"\r\n", 1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError(f"expected a chunk size, found {size_line[:40]!r}") from None
            if size == 0:
                while await self.read_until(b"\r\n", MAX_HEAD_BYTES):
                    pass  # trailer fields, up to the empty line
                return bytes(out)
            if len(out) + size > MAX_BODY_BYTES:
                raise HttpError("the chunked body is too large")
            out += await self.read_exactly(size)
            await self.read_exactly(2)

    async def _read_to_end(self) -> bytes:
        while True:
            chunk = await self.stream.receive_some(_RECEIVE_BYTES)
            if not chunk:
                out = bytes(self.buffer)
                self.buffer.clear()
                return out
            self.buffer += chunk
            if len(self.buffer) > MAX_BODY_BYTES:
                raise HttpError("the body is too large")

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class Http11Client:
    """POSTs to one ``host:port``, over kept-alive connections (one request each at a
    time; as many connections as requests in flight, up to 8 kept idle)."""

    def __init__(self, host: str, port: int, *, headers: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head_suffix = f"Host: {host}:{port}\r\n{extra}".encode()
        self._idle: deque[_Connection] = deque()

    # The deadline covers the whole request; trio's idiom of a caller's cancel scope
    # would lose "which request timed out" in the error message.
    async def post(self, path: str, body: bytes, *,
                   content_type: str = "application/json",
                   headers: dict[str, str] | None = None,
                   timeout: float) -> tuple[int, bytes]:  # noqa: ASYNC109
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"POST {path} HTTP/1.1\r\n".encode() + self._head_suffix
                + f"{extra}Content-Type: {content_type}\r\nContent-Length: {len(body)}"
                  "\r\n\r\n".encode())
        try:
            with trio.fail_after(timeout):
                for _ in range(2):
                    conn = self._idle.pop() if self._idle else None
                    reused = conn is not None
                    if conn is None:
                        conn = _Connection(await trio.open_tcp_stream(self.host, self.port))
                    try:
                        status, data, keep = await conn.request(head, body)
                    except _ClosedBeforeAnswer:
                        await conn.aclose()
                        if reused:
                            continue  # closed while idle: nothing was read, send again
                        raise
                    except BaseException:
                        await conn.aclose()
                        raise
                    if keep and len(self._idle) < _KEEP_IDLE:
                        self._idle.append(conn)
                    else:
                        await conn.aclose()
                    return status, data
                raise HttpError("the server closed two connections without answering")
        except trio.TooSlowError:
            raise HttpError(f"no complete answer within {timeout} s") from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        while self._idle:
            await self._idle.pop().aclose()
