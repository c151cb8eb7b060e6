"""The trio-native psycopg connection and pool (runtime/db.py) against a real
PostgreSQL: cancellation, LISTEN/NOTIFY, a killed backend, the pool's bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import psycopg
import pytest
import trio
import trio.testing

from scheduler_core.runtime import db
from scheduler_core.runtime.errors import DatabaseUnavailable


@asynccontextmanager
async def connection(dsn: str) -> AsyncIterator[db.TrioConnection]:
    conn = await db.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def one(conn: db.TrioConnection, sql: str, *params: object) -> Any:
    cur = await conn.execute(sql.encode(), params or None)
    row = await cur.fetchone()
    assert row is not None
    return next(iter(row.values()))


async def running_sleeps(dsn: str) -> int:
    """Backends of this database still running a pg_sleep, other than the asker."""
    async with connection(dsn) as admin:
        return int(await one(admin, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND state = 'active' "
                             "AND query LIKE %s AND pid <> pg_backend_pid()",
                             "%pg_sleep(10)%"))


# -- cancellation ------------------------------------------------------------------------


async def test_a_query_cancelled_by_trio_returns_before_the_query_ends(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        # The bound is well short of the 10 s sleep: the cancellation returned, the
        # query did not run out.
        with trio.fail_after(8):
            with trio.move_on_after(0.1) as scope:
                await conn.execute("SELECT pg_sleep(10)")
        assert scope.cancelled_caught


async def test_the_connection_runs_the_next_query_after_a_cancelled_one(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        with trio.move_on_after(0.1):
            await conn.execute("SELECT pg_sleep(10)")
        with trio.fail_after(8):  # not behind the rest of the 10 s sleep
            assert 1 == await one(conn, "SELECT 1")


async def test_a_query_cancelled_by_trio_is_cancelled_on_the_server_too(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        with trio.move_on_after(0.1):
            await conn.execute("SELECT pg_sleep(10)")
        assert 0 == await running_sleeps(db_dsn)


async def test_a_transaction_cancelled_midway_is_rolled_back_and_the_pool_stays_usable(
        db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=1) as pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE cancelled_tx (x integer)")
        with trio.move_on_after(0.2):
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("INSERT INTO cancelled_tx VALUES (1)")
                await conn.execute("SELECT pg_sleep(10)")
        with trio.fail_after(2):
            async with pool.connection() as conn:
                assert 0 == await one(conn, "SELECT count(*) FROM cancelled_tx")


async def test_an_error_inside_a_transaction_leaves_the_pooled_connection_idle(
        db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=1) as pool:
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with pool.connection() as conn:
                await conn.execute("BEGIN")
                await conn.execute("SELECT 1 / 0")
        async with pool.connection() as conn:
            assert (1, 1) == (await one(conn, "SELECT 1"), pool.statistics()["open"])


# -- LISTEN / NOTIFY ---------------------------------------------------------------------


async def test_a_notification_sent_after_listen_arrives(db_dsn: str) -> None:
    async with connection(db_dsn) as listener, connection(db_dsn) as sender:
        await listener.execute("LISTEN test_channel")
        await sender.execute("SELECT pg_notify('test_channel', 'hello')")
        with trio.fail_after(5):
            async with aclosing(listener.notifies()) as notifies:
                n = await anext(notifies)
        assert ("test_channel", "hello") == (n.channel, n.payload)


async def test_a_notification_wakes_a_waiting_listener(db_dsn: str) -> None:
    got: list[str] = []
    async with connection(db_dsn) as listener, connection(db_dsn) as sender:
        await listener.execute("LISTEN test_channel")

        async def listen() -> None:
            async with aclosing(listener.notifies()) as notifies:
                async for n in notifies:
                    got.append(n.payload)
                    return

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await trio.testing.wait_all_tasks_blocked()
                await sender.execute("SELECT pg_notify('test_channel', 'wake')")
    assert ["wake"] == got


async def test_a_listener_cancelled_while_waiting_can_query_again(db_dsn: str) -> None:
    async with connection(db_dsn) as listener:
        await listener.execute("LISTEN test_channel")
        with trio.move_on_after(0.1):
            async with aclosing(listener.notifies()) as notifies:
                await anext(notifies)
        with trio.fail_after(2):
            assert 1 == await one(listener, "SELECT 1")


# -- a killed backend --------------------------------------------------------------------


async def terminate(dsn: str, pid: int) -> None:
    """Kill backend ``pid`` and wait (up to 5 s, server side) until it is gone."""
    async with connection(dsn) as admin:
        assert await one(admin, "SELECT pg_terminate_backend(%s, 5000)", pid) is True


async def test_a_killed_backend_errors_at_once_on_the_next_query(db_dsn: str) -> None:
    async with connection(db_dsn) as conn:
        await terminate(db_dsn, await one(conn, "SELECT pg_backend_pid()"))
        with trio.fail_after(2), pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")


async def test_the_pool_discards_a_killed_idle_connection_and_serves_a_new_one(
        db_dsn: str) -> None:
    """A pooled connection whose backend was killed while idle has the server's FATAL
    (or EOF) waiting on its socket: the checkout sees it and opens a new connection
    instead of failing the request on the dead one."""
    async with db.open_pool(db_dsn, max_size=1) as pool:
        async with pool.connection() as conn:
            killed = await one(conn, "SELECT pg_backend_pid()")
        await terminate(db_dsn, killed)
        with trio.fail_after(5):
            async with pool.connection() as conn:
                assert killed != await one(conn, "SELECT pg_backend_pid()")
        assert 1 == pool.statistics()["open"]


async def test_a_connection_killed_mid_request_is_unavailable_and_discarded(
        db_dsn: str) -> None:
    async with db.open_pool(db_dsn, max_size=1) as pool:
        with pytest.raises(DatabaseUnavailable) as raised:
            async with pool.connection() as conn:
                killed = await one(conn, "SELECT pg_backend_pid()")
                await terminate(db_dsn, killed)
                await conn.execute("SELECT 1")
        assert isinstance(raised.value.__cause__, psycopg.OperationalError)
        assert 0 == pool.statistics()["open"]
        with trio.fail_after(5):
            async with pool.connection() as conn:
                assert killed != await one(conn, "SELECT pg_backend_pid()")


# -- the pool's bound --------------------------------------------------------------------


async def test_the_pool_never_exceeds_max_size_under_fifty_concurrent_tasks(
        db_dsn: str) -> None:
    in_use = peak_in_use = peak_open = 0
    async with db.open_pool(db_dsn, max_size=4) as pool:

        async def work() -> None:
            nonlocal in_use, peak_in_use, peak_open
            async with pool.connection() as conn:
                in_use += 1
                peak_in_use = max(peak_in_use, in_use)
                peak_open = max(peak_open, pool.statistics()["open"])
                await conn.execute("SELECT pg_sleep(0.01)")
                in_use -= 1

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(work)
        async with pool.connection() as conn:
            backends = await one(conn, "SELECT count(*) FROM pg_stat_activity "
                                 "WHERE datname = current_database() "
                                 "AND backend_type = 'client backend'")
    assert (4, 4, 4) == (peak_in_use, peak_open, backends)


async def test_a_closed_pool_refuses_new_checkouts() -> None:
    async with db.open_pool("postgresql://nobody@127.0.0.1:1/x", max_size=1) as pool:
        pass
    with pytest.raises(DatabaseUnavailable):
        async with pool.connection():
            pass


async def test_an_unreachable_database_is_database_unavailable() -> None:
    pool = db.Pool("postgresql://nobody@127.0.0.1:1/x?connect_timeout=1", max_size=1)
    with trio.fail_after(5), pytest.raises(DatabaseUnavailable):
        await pool.check()
