"""The worker's HTTP link to the coordinator (the worker protocol, client side).

    LinkError                 the coordinator did not answer, or answered 5xx
     └─ SecretRefused         403 naming X-Worker-Secret: register again

Worker identity: :meth:`Link.register` keeps the secret the coordinator answers and
every later request sends it as ``X-Worker-Secret`` (never logged). A coordinator
that does not know it (its database was reset, or another registration took the id
meanwhile) refuses with :class:`SecretRefused`; the heartbeat then registers again.
A link made with ``queues`` (the worker's claim list, the one its claimer sends) tells
the coordinator at each registration which queues this worker takes jobs from.

Failover: a link may know several coordinators (COORDINATOR_URL lists them). It sends
every request to the current one; when a request to it gets no answer (refused,
reset, timed out) or a 5xx, that request still fails with :class:`LinkError` (it is
never resent elsewhere: the callers retry with backoff, and know what is safe to
resend) and the link moves to the next URL, round robin, for the requests that
follow. Nothing else changes on a move: workers, runs and lease tokens live in the
shared database, so every coordinator knows this worker already (a heartbeat answered
``known=False`` makes the heartbeat actor register again, as with one coordinator).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog
import trio

from scheduler_core.actors.worker.http11 import Http11Client, HttpError
from scheduler_core.runtime.backoff import delay as exponential_delay
from scheduler_core.schema import wire

T = TypeVar("T")

_encoder = msgspec.json.Encoder()

log = structlog.get_logger("actors.coordinator_link")


class LinkError(Exception):
    """The coordinator could not be reached or failed; try again later."""


class SecretRefused(LinkError):
    """The coordinator did not accept this worker's secret: register again."""


SECRET_HEADER = "X-Worker-Secret"


class _Endpoint:
    """One coordinator: its base URL and its HTTP client, made once. A plain http://
    coordinator is spoken to by the lean client (actors/worker/http11.py), https:// (or a
    base URL with a path) by httpx."""

    __slots__ = ("base_url", "http", "lean")

    def __init__(self, base_url: str, *, timeout: float, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        url = urlsplit(self.base_url)
        self.lean: Http11Client | None = None
        self.http: httpx.AsyncClient | None = None
        if url.scheme == "http" and url.hostname and not url.path.strip("/"):
            self.lean = Http11Client(url.hostname, url.port or 80, headers=headers)
        else:
            self.http = httpx.AsyncClient(
                base_url=self.base_url, timeout=timeout, headers=headers,
                limits=httpx.Limits(max_connections=8, max_keepalive_connections=8))

    async def aclose(self) -> None:
        if self.lean is not None:
            await self.lean.aclose()
        if self.http is not None:
            await self.http.aclose()


class Link:
    def __init__(self, base_urls: str | Sequence[str], *, timeout: float = 10.0,
                 token: str | None = None, queues: Sequence[str] | None = None) -> None:
        """``base_urls``: one coordinator's base URL, or several to fail over between
        (in this order, starting with the first). ``token``: SCHEDULER_WORKER_TOKEN,
        sent as ``Authorization: Bearer``. ``queues``: the queues the worker claims
        from (names or ``*``, as its claimer sends them), sent with each registration
        that names none itself; None sends none (as an older worker)."""
        urls = (base_urls,) if isinstance(base_urls, str) else tuple(base_urls)
        if not urls:
            raise ValueError("expected at least one coordinator URL, found none")
        self.timeout = timeout
        self._endpoints = tuple(_Endpoint(u, timeout=timeout, token=token) for u in urls)
        self._current = 0
        self.secret = ""  # from the last registration; sent as X-Worker-Secret
        self.queues = list(queues) if queues is not None else None

    @property
    def base_url(self) -> str:
        """The coordinator the next request goes to."""
        return self._endpoints[self._current].base_url

    @property
    def base_urls(self) -> tuple[str, ...]:
        return tuple(e.base_url for e in self._endpoints)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for endpoint in self._endpoints:
                await endpoint.aclose()

    def _fail_over(self, at: int, path: str, error: str) -> None:
        """Move on from endpoint ``at`` after a request to it failed. Only the first
        failure moves the link: the other requests in flight to the same coordinator
        fail too, and must not carry it past the next one."""
        if at != self._current or len(self._endpoints) == 1:
            return
        self._current = (at + 1) % len(self._endpoints)
        log.warning("coordinator_failed_over", from_url=self._endpoints[at].base_url,
                    to_url=self._endpoints[self._current].base_url, path=path, error=error)

    async def _post(self, path: str, body: object, reply: type[T], *,
                    read_timeout: float | None = None, ok: tuple[int, ...] = (200, 201)) -> T:
        timeout = read_timeout if read_timeout is not None else self.timeout
        data = encode(body)
        at = self._current
        endpoint = self._endpoints[at]
        secret = {SECRET_HEADER: self.secret} if self.secret else None
        if endpoint.lean is not None:  # plain http: the lean client (actors/worker/http11.py)
            try:
                status, content = await endpoint.lean.post(path, data, headers=secret,
                                                           timeout=timeout)
            except HttpError as exc:
                self._fail_over(at, path, str(exc))
                raise LinkError(f"{path}: {exc}") from exc
        else:
            assert endpoint.http is not None
            try:
                resp = await endpoint.http.post(
                    path, content=data,
                    headers={"content-type": "application/json", **(secret or {})},
                    timeout=timeout)
            except httpx.HTTPError as exc:
                self._fail_over(at, path, f"{type(exc).__name__}: {exc}")
                raise LinkError(f"{path}: {type(exc).__name__}: {exc}") from exc
            status, content = resp.status_code, resp.content
        if status not in ok:
            text = content[:300].decode(errors="replace")
            if status >= 500:  # a 4xx would be the same from any coordinator
                self._fail_over(at, path, f"HTTP {status}")
            if status == 403 and _names_secret(content):
                raise SecretRefused(f"{path}: HTTP 403: {text}")
            raise LinkError(f"{path}: HTTP {status}: {text}")
        try:
            return msgspec.json.decode(content, type=reply)
        except msgspec.MsgspecError as exc:
            raise LinkError(f"{path}: unexpected reply: {exc}") from exc

    async def register(self, body: wire.RegisterWorker) -> wire.RegisteredWorker:
        """Register; the secret answered is sent with every request from now on. A
        body without ``queues`` gets the link's (when it was made with some)."""
        if body.queues is None and self.queues is not None:
            body = msgspec.structs.replace(body, queues=list(self.queues))
        reply = await self._post("/api/workers/register", body, wire.RegisteredWorker)
        self.secret = reply.worker_secret
        return reply

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


def _names_secret(content: bytes) -> bool:
    """Whether an error body names X-Worker-Secret as its field."""
    try:
        body = msgspec.json.decode(content)
    except msgspec.MsgspecError:
        return False
    return isinstance(body, dict) and body.get("field") == SECRET_HEADER


def backoff(attempt: int, *, base: float = 0.1, cap: float = 5.0) -> float:
    """The worker's reconnect policy: the delay after ``attempt`` consecutive failures
    (runtime/backoff.py; no jitter needed: each worker's failures start at a different
    moment)."""
    return exponential_delay(max(attempt - 1, 0), base=base, cap=cap)
