"""A multi-host DATABASE_URL (libpq's ``host=a,b``) whose first host takes TCP
connections but never answers, as a primary whose machine froze or vanished behind a
live address: the pool (runtime/db.py) walks the hosts one after another, each
attempt bounded by the URL's ``connect_timeout``, or, when the URL has none, by the
pool's own connect deadline shared between the hosts (psycopg's default, 130 s an
attempt, would let the deadline end the walk on the first host).

The unanswering host is a socket that listens and never accepts: the kernel completes
the handshake, nobody reads the startup packet.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scheduler_core.runtime import db
from scheduler_core.runtime.errors import DatabaseUnavailable


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def silent_first(dsn: str, port: int, **params: str) -> str:
    """``dsn`` with the silent port as its first host."""
    found = conninfo_to_dict(dsn)
    return make_conninfo(dsn, host=f"127.0.0.1,{found.get('host') or '127.0.0.1'}",
                         port=f"{port},{found.get('port') or 5432}", **params)


async def test_a_pool_gets_past_a_silent_first_host_with_connect_timeout_in_the_url(
        db_dsn: str) -> None:
    with silent_port() as port:
        async with db.open_pool(silent_first(db_dsn, port, connect_timeout="2"),
                                max_size=1) as pool:
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT current_database() AS name")).fetchone()
    assert conninfo_to_dict(db_dsn)["dbname"] == (row or {}).get("name")


async def test_without_connect_timeout_the_pool_shares_its_deadline_between_the_hosts(
        db_dsn: str) -> None:
    """No connect_timeout in the URL: the pool gives each of the two hosts half of its
    own connect deadline (runtime/db.py with_network_defaults), so the silent first
    host costs 2 s (libpq's floor), not psycopg's 130 s, and the second is reached."""
    with silent_port() as port:
        pool = db.Pool(silent_first(db_dsn, port), max_size=1, connect_timeout=5)
        try:
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT inet_server_port() AS port")).fetchone()
        finally:
            pool.close()
    assert port != (row or {}).get("port")


async def test_what_the_url_sets_wins_over_the_defaults(db_dsn: str) -> None:
    """A connect_timeout in the URL is the URL's: 130 s here (psycopg's own), which the
    pool's 3 s deadline runs out before the second host is tried."""
    with silent_port() as port:
        pool = db.Pool(silent_first(db_dsn, port, connect_timeout="130"), max_size=1,
                       connect_timeout=3)
        try:
            with pytest.raises(DatabaseUnavailable, match="cannot connect"):
                await pool.check()
        finally:
            pool.close()
