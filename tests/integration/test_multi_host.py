"""A multi-host DATABASE_URL (libpq's ``host=a,b``) whose first host takes TCP
connections but never answers, as a primary whose machine froze or vanished behind a
live address: the pool (runtime/db.py) walks the hosts one after another, each
attempt bounded by the URL's ``connect_timeout``. With it, the pool reaches the next
host; without it, psycopg waits 130 s an attempt and the pool's own connect deadline
ends the walk on the first host (why docs/operations.md asks for it).

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


async def test_without_connect_timeout_a_silent_first_host_uses_up_the_pools_deadline(
        db_dsn: str) -> None:
    with silent_port() as port:
        pool = db.Pool(silent_first(db_dsn, port), max_size=1, connect_timeout=3)
        try:
            with pytest.raises(DatabaseUnavailable, match="cannot connect"):
                await pool.check()
        finally:
            pool.close()
