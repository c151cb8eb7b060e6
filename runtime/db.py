"""A trio-native PostgreSQL connection and pool on top of psycopg 3.

psycopg's async code is written for asyncio. :class:`TrioConnection` subclasses
``psycopg.AsyncConnection`` and replaces the three places where asyncio leaks in: the
fd waits (``wait`` and the connect/cancel waits, done here with
``trio.lowlevel.wait_readable/wait_writable``), the connection lock (a ``trio.Lock``)
and the connect attempts (resolved without asyncio's resolver). Everything else,
cursors, transactions, adaptation, ``notifies()``, is psycopg's own code. Why this
route and what it measured: docs/decisions/0001-psycopg-under-trio.md.

It leans on semi-private psycopg internals (``_connect_gen``, ``pgconn``,
``waiting.Wait/Ready``), so psycopg is pinned to one minor version in pyproject.toml
and tests/integration/test_db.py covers cancel, notify and connection loss.

Cancellation: a query cancelled by trio is cancelled on the server too; the
connection is drained (shielded, bounded) and stays usable. If the server does not
end the query in time the connection is closed and the pool discards it.

Error handling: psycopg's own exceptions pass through. :class:`Pool` discards any
connection that is closed or broken when it comes back, and rolls back one returned
inside a transaction.
"""

from __future__ import annotations

import select
from collections import deque
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar

import msgspec
import psycopg
import trio
from psycopg import capabilities, pq
from psycopg import errors as e
from psycopg._conninfo_attempts import conninfo_attempts
from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo
from psycopg.rows import AsyncRowFactory, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg.waiting import Ready, Wait

from scheduler_core.runtime.errors import DatabaseUnavailable

RV = TypeVar("RV")

_ACTIVE = pq.TransactionStatus.ACTIVE
_IDLE = pq.TransactionStatus.IDLE
_CANCEL_DRAIN_SECONDS = 5.0


def _poll_now(fileno: int, want: int) -> int:
    """Readiness of ``fileno`` for ``want`` right now, without blocking (0: none)."""
    p = select.poll()
    p.register(fileno, (select.POLLIN if want & Wait.R else 0)
               | (select.POLLOUT if want & Wait.W else 0))
    ready = 0
    for _fd, ev in p.poll(0):
        if want & Wait.R and ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
            ready |= Ready.R
        if want & Wait.W and ev & (select.POLLOUT | select.POLLERR | select.POLLHUP):
            ready |= Ready.W
    return ready


async def _wait_fd(fileno: int, want: int) -> int:
    """Wait until ``fileno`` is ready for what ``want`` (a psycopg ``Wait``) asks."""
    if want == Wait.R:
        await trio.lowlevel.wait_readable(fileno)
        return Ready.R
    if want == Wait.W:
        await trio.lowlevel.wait_writable(fileno)
        return Ready.W
    # Read-or-write: usually the socket is writable at once; race the two otherwise.
    ready = _poll_now(fileno, want)
    if ready:
        await trio.lowlevel.checkpoint()
        return ready
    result = 0
    async with trio.open_nursery() as nursery:

        async def wait(kind: int) -> None:
            nonlocal result
            if kind == Ready.R:
                await trio.lowlevel.wait_readable(fileno)
            else:
                await trio.lowlevel.wait_writable(fileno)
            result |= kind
            nursery.cancel_scope.cancel()

        nursery.start_soon(wait, Ready.R)
        nursery.start_soon(wait, Ready.W)
    return result


class _GenState:
    """What a psycopg generator last asked to wait for (needed to drain it)."""

    __slots__ = ("want",)

    def __init__(self) -> None:
        self.want = 0


async def _wait_gen(
    gen: Generator[Any, Any, RV], fileno: int, limit: float | None, state: _GenState
) -> RV:
    """Drive a psycopg PQGen on ``fileno`` to completion."""
    try:
        state.want = next(gen)
    except StopIteration as ex:
        await trio.lowlevel.checkpoint()
        return ex.value  # type: ignore[no-any-return]
    with trio.move_on_after(limit if limit is not None else float("inf")):
        while True:
            ready = await _wait_fd(fileno, state.want)
            try:
                state.want = gen.send(ready)
            except StopIteration as ex:
                return ex.value  # type: ignore[no-any-return]
    raise e._WaitTimeout()


async def _wait_conn_gen(gen: Generator[Any, Any, RV], limit: float | None) -> RV:
    """Drive a psycopg PQGenConn (yields ``(fileno, wait)`` pairs) to completion."""
    try:
        fileno, want = next(gen)
    except StopIteration as ex:
        await trio.lowlevel.checkpoint()
        return ex.value  # type: ignore[no-any-return]
    with trio.move_on_after(limit if limit is not None else float("inf")):
        while True:
            ready = await _wait_fd(fileno, want)
            try:
                fileno, want = gen.send(ready)
            except StopIteration as ex:
                return ex.value  # type: ignore[no-any-return]
    raise e._WaitTimeout()


class TrioConnection(psycopg.AsyncConnection[Any]):
    """A psycopg ``AsyncConnection`` whose waiting is done by trio."""

    def __init__(self, pgconn: Any, row_factory: Any = None) -> None:
        if row_factory is None:
            super().__init__(pgconn)
        else:
            super().__init__(pgconn, row_factory)
        self.lock = trio.Lock()  # type: ignore[assignment]

    @classmethod
    async def connect(
        cls,
        conninfo: str = "",
        *,
        autocommit: bool = False,
        prepare_threshold: int | None = 5,
        row_factory: AsyncRowFactory[Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Open a connection; same arguments as ``psycopg.AsyncConnection.connect``.

        Cancellation: a cancelled connect closes the half-open socket.
        """
        params = await cls._get_connection_params(conninfo, **kwargs)
        timeout = timeout_from_conninfo(params)
        # Host names are resolved in a thread (libpq's own resolution would block).
        attempts = await trio.to_thread.run_sync(conninfo_attempts, params)
        last: Exception | None = None
        conn: Self | None = None
        for attempt in attempts:
            try:
                gen = cls._connect_gen(make_conninfo("", **attempt))
                conn = await _wait_conn_gen(gen, timeout)
                break
            except e._WaitTimeout:
                last = e.ConnectionTimeout("connection timeout expired")
            except e.Error as ex:
                last = ex
        if conn is None:
            assert last is not None
            raise last.with_traceback(None)
        conn._autocommit = autocommit
        conn.prepare_threshold = prepare_threshold
        if row_factory is not None:
            conn.row_factory = row_factory
        return conn

    async def wait(
        self,
        gen: Generator[Any, Any, RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg's signature)
    ) -> RV:
        state = _GenState()
        try:
            return await _wait_gen(gen, self.pgconn.socket, timeout, state)
        except trio.Cancelled:
            if self.pgconn.transaction_status == _ACTIVE:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + _CANCEL_DRAIN_SECONDS
                    await self._cancel_and_drain(gen, state)
                if scope.cancelled_caught:
                    self.pgconn.finish()
            raise

    async def _cancel_and_drain(self, gen: Generator[Any, Any, Any], state: _GenState) -> None:
        """After trio cancelled us mid-query: cancel it on the server, drain the result."""
        try:
            await self.cancel_safe()
            while True:
                ready = await _wait_fd(self.pgconn.socket, state.want)
                try:
                    state.want = gen.send(ready)
                except StopIteration:
                    return
        except e.Error:
            return  # QueryCanceled, as expected; the connection is usable again
        except Exception:
            self.pgconn.finish()

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Cancel the current operation on the server, without blocking trio."""
        if not self._should_cancel():
            return
        if capabilities.has_cancel_safe():
            await _wait_conn_gen(self._cancel_gen(), timeout)
        else:
            await trio.to_thread.run_sync(self.cancel)


class Pool:
    """A small pool of :class:`TrioConnection` (autocommit, dict rows by default).

    Connections are opened lazily up to ``max_size``; ``connection()`` waits when all
    are checked out. A connection that comes back closed or broken is discarded; one
    that comes back inside a transaction is rolled back first.

    ``prepare_threshold``: psycopg's (a statement run that many times on a connection
    becomes a server-side prepared statement); ``None`` prepares nothing, as a
    transaction pooler in front of PostgreSQL needs (docs/decisions/0028).
    """

    def __init__(self, conninfo: str, *, max_size: int = 16, connect_timeout: float = 10.0,
                 prepare_threshold: int | None = 5) -> None:
        self.conninfo = conninfo
        self.max_size = max_size
        self.connect_timeout = connect_timeout
        self.prepare_threshold = prepare_threshold
        self._idle: deque[TrioConnection] = deque()
        self._slots = trio.Semaphore(max_size)
        self._all: set[TrioConnection] = set()
        self._closed = False

    async def _connect(self) -> TrioConnection:
        try:
            with trio.fail_after(self.connect_timeout):
                conn = await connect(self.conninfo, prepare_threshold=self.prepare_threshold,
                                     connect_seconds=self.connect_timeout)
                return conn
        except (psycopg.OperationalError, trio.TooSlowError) as ex:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {ex}") from ex

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[TrioConnection]:
        """Check a connection out for the block.

        Error handling: raises :class:`DatabaseUnavailable` when no connection can be
        opened, or when the connection breaks inside the block (the server went
        away); other errors propagate after the connection is returned (or discarded,
        if it is broken).
        """
        if self._closed:
            raise DatabaseUnavailable("the pool is closed")
        async with self._slots:
            conn = None
            while conn is None and self._idle:
                conn = self._idle.pop()
                if conn.closed or _poll_now(conn.pgconn.socket, Wait.R):
                    # An idle connection has nothing to read unless its server is ending
                    # it (a shutdown's FATAL, or EOF): discard it, not fail the request.
                    self._discard(conn)
                    conn = None
            if conn is None:
                conn = await self._connect()
                self._all.add(conn)
            try:
                yield conn
            except psycopg.OperationalError as exc:
                if conn.closed or conn.broken:
                    # The server went away mid-request (shut down, restarted, killed
                    # backend): to callers that is "unavailable", the same as failing
                    # to connect, so the API answers 503 and actors retry.
                    raise DatabaseUnavailable(f"lost the database connection: {exc}") from exc
                raise
            finally:
                self._give_back(conn)

    def _give_back(self, conn: TrioConnection) -> None:
        status = conn.pgconn.transaction_status
        if conn.closed or conn.broken or status not in (_IDLE, pq.TransactionStatus.INTRANS,
                                                        pq.TransactionStatus.INERROR):
            self._discard(conn)
            return
        if status != _IDLE:
            # Returned mid-transaction (e.g. cancelled inside ``transaction()``): the
            # rollback is a synchronous round trip, cheap on loopback and rare.
            try:
                conn.pgconn.exec_(b"ROLLBACK")
            except Exception:
                self._discard(conn)
                return
            if conn.pgconn.transaction_status != _IDLE:
                self._discard(conn)
                return
        if self._closed:
            self._discard(conn)
        else:
            self._idle.append(conn)

    def _discard(self, conn: TrioConnection) -> None:
        self._all.discard(conn)
        if not conn.closed:
            conn.pgconn.finish()

    async def check(self) -> None:
        """Run ``SELECT 1``; raises :class:`DatabaseUnavailable` or psycopg's error."""
        async with self.connection() as conn:
            await conn.execute("SELECT 1")

    def close(self) -> None:
        self._closed = True
        while self._all:
            self._discard(self._all.pop())
        self._idle.clear()

    def statistics(self) -> dict[str, int]:
        return {"open": len(self._all), "idle": len(self._idle), "max": self.max_size}


@asynccontextmanager
async def open_pool(conninfo: str, *, max_size: int = 16,
                    prepare_threshold: int | None = 5) -> AsyncIterator[Pool]:
    """A :class:`Pool` for the block; every connection is closed on exit."""
    pool = Pool(conninfo, max_size=max_size, prepare_threshold=prepare_threshold)
    try:
        yield pool
    finally:
        pool.close()


# libpq's TCP settings used when the connection string does not give them: a server
# whose machine stopped answering is noticed in about 30 s (keepalive probes on an idle
# connection, such as the listener's; tcp_user_timeout for data sent and never
# acknowledged), not after the kernel's hours or minutes. Ignored on Unix sockets.
TCP_DEFAULTS = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
                "keepalives_count": "3", "tcp_user_timeout": "30000"}
_LEAST_CONNECT_TIMEOUT = 2  # libpq's own floor for connect_timeout, in seconds


def with_network_defaults(conninfo: str, connect_seconds: float) -> str:
    """``conninfo`` with :data:`TCP_DEFAULTS` for what it does not set, and, when it
    names several hosts and no ``connect_timeout``, one that shares ``connect_seconds``
    between them: without it a first host that takes the TCP connection and never
    answers (a frozen primary) holds libpq's attempt for 130 s, and the standby is never
    tried (tests/integration/test_multi_host.py). What the string sets wins."""
    given = conninfo_to_dict(conninfo)
    added = {k: v for k, v in TCP_DEFAULTS.items() if k not in given}
    hosts = len(str(given.get("host") or given.get("hostaddr") or "").split(","))
    if hosts > 1 and "connect_timeout" not in given:
        added["connect_timeout"] = str(max(_LEAST_CONNECT_TIMEOUT,
                                           int(connect_seconds // hosts)))
    return make_conninfo(conninfo, **added) if added else conninfo


async def connect(conninfo: str, *, autocommit: bool = True,
                  prepare_threshold: int | None = 5,
                  connect_seconds: float = 10.0) -> TrioConnection:
    """One standalone connection (dict rows, session time zone UTC), e.g. for LISTEN;
    the TCP settings of :func:`with_network_defaults` where ``conninfo`` has none
    (``connect_seconds``: the whole connect's bound, shared between several hosts).

    The time zone is a plain ``SET``, also behind a transaction pooler: PgBouncer tracks
    TimeZone per client (from the server's ParameterStatus) and sets it again on each
    server connection the client is given (tests/integration/test_pgbouncer.py).
    """
    conn = await TrioConnection.connect(with_network_defaults(conninfo, connect_seconds),
                                        autocommit=autocommit, row_factory=dict_row,
                                        prepare_threshold=prepare_threshold)
    # json/jsonb through msgspec: several times faster than the json module both ways.
    set_json_loads(msgspec.json.decode, conn)
    set_json_dumps(msgspec.json.encode, conn)
    try:
        await conn.execute("SET TIME ZONE 'UTC'")
    except BaseException:
        conn.pgconn.finish()
        raise
    return conn
