"""The worker's HTTP link to the coordinator (the worker protocol, client side).

    LinkError                 the coordinator did not answer, or answered 5xx
    Fenced                    409 on a completion: the run is no longer ours
"""

from __future__ import annotations

import re
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from actors.http11 import Http11Client, HttpError
from schema import wire

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class LinkError(Exception):
    """The coordinator could not be reached or failed; try again later."""


class Link:
    def __init__(self, base_url: str, *, timeout: float = 10.0,
                 token: str | None = None) -> None:
        """``token``: SCHEDULER_WORKER_TOKEN, sent as ``Authorization: Bearer``."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout,
            headers={"Authorization": f"Bearer {token}"} if token else None,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8))
        # A plain http:// coordinator is spoken to by the lean client, https:// by httpx.
        url = urlsplit(self.base_url)
        self._lean: Http11Client | None = None
        if url.scheme == "http" and url.hostname and not url.path.strip("/"):
            self._lean = Http11Client(
                url.hostname, url.port or 80,
                headers={"Authorization": f"Bearer {token}"} if token else None)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self._lean is not None:
                await self._lean.aclose()
            await self._http.aclose()

    async def _post(self, path: str, body: object, reply: type[T], *,
                    read_timeout: float | None = None, ok: tuple[int, ...] = (200, 201)) -> T:
        timeout = read_timeout if read_timeout is not None else self.timeout
        data = encode(body)
        if self._lean is not None:  # plain http: the lean client (actors/http11.py)
            try:
                status, content = await self._lean.post(path, data, timeout=timeout)
            except HttpError as exc:
                raise LinkError(f"{path}: {exc}") from exc
        else:
            try:
                resp = await self._http.post(
                    path, content=data, headers={"content-type": "application/json"},
                    timeout=timeout)
            except httpx.HTTPError as exc:
                raise LinkError(f"{path}: {type(exc).__name__}: {exc}") from exc
            status, content = resp.status_code, resp.content
        if status not in ok:
            text = content[:300].decode(errors="replace")
            raise LinkError(f"{path}: HTTP {status}: {text}")
        try:
            return msgspec.json.decode(content, type=reply)
        except msgspec.MsgspecError as exc:
            raise LinkError(f"{path}: unexpected reply: {exc}") from exc

    async def register(self, body: wire.RegisterWorker) -> wire.RegisteredWorker:
        return await self._post("/api/workers/register", body, wire.RegisteredWorker)

    async def heartbeat(self, body: wire.Heartbeat) -> wire.HeartbeatReply:
        return await self._post("/api/workers/heartbeat", body, wire.HeartbeatReply)

    async def deregister(self, worker_id: str) -> None:
        await self._post("/api/workers/deregister", wire.Heartbeat(worker_id=worker_id),
                         dict)

    async def claim(self, body: wire.Claim) -> wire.ClaimReply:
        return await self._post("/api/workers/claim", body, wire.ClaimReply,
                                read_timeout=body.wait_seconds + self.timeout)

    async def complete(self, body: wire.Complete) -> wire.CompleteReply:
        """Both 200 (all accepted) and 409 (some fenced off) carry per-item results."""
        return await self._post("/api/workers/complete", body, wire.CompleteReply,
                                ok=(200, 409))


# A JSON escape of NUL that is not an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def encode(body: object) -> bytes:
    """The request body as JSON, NUL characters (a job's error text or result may hold
    them) replaced by U+FFFD: the coordinator refuses NUL, which PostgreSQL cannot
    store, and a completion refused that way would be retried forever."""
    data = _encoder.encode(body)
    if b"\\u0000" in data:
        data = _NUL_ESCAPE.sub(rb"\1\\ufffd", data)
    return data


def backoff(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Reconnect delay after ``attempt`` consecutive failures (no jitter needed: each
    worker's failures start at a different moment)."""
    return float(min(cap, base * 2 ** max(attempt - 1, 0)))


def decode_any(raw: bytes) -> Any:
    return msgspec.json.decode(raw)
