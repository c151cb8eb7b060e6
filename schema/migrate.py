"""Apply the numbered SQL migrations in schema/migrations/, in order.

Each file runs in its own transaction and records its version in
``schema_migrations``. The whole run holds a session advisory lock, so two processes
migrating at the same moment serialise: the second finds everything applied and does
nothing. Re-running is a no-op.
"""

from __future__ import annotations

import re
from importlib import resources

import msgspec

from scheduler_core.runtime.db import TrioConnection

# An arbitrary constant naming "scheduler-core migrations" for pg_advisory_lock.
_LOCK_KEY = 7_246_113_508_931


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this version, ordered by number."""
    out = []
    folder = resources.files("scheduler_core.schema").joinpath("migrations")
    for entry in folder.iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number: {versions}")
    return out


async def applied(conn: TrioConnection) -> set[int]:
    cur = await conn.execute(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
    row = await cur.fetchone()
    if not row or not row["present"]:
        return set()
    cur = await conn.execute("SELECT version FROM schema_migrations")
    return {r["version"] for r in await cur.fetchall()}


async def pending(conn: TrioConnection) -> list[Migration]:
    done = await applied(conn)
    return [m for m in available() if m.version not in done]


async def migrate(conn: TrioConnection) -> list[int]:
    """Apply what is pending; return the versions applied by this call.

    ``conn`` must be in autocommit mode (each migration opens its own transaction).
    """
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())""")
        done = await applied(conn)
        ran = []
        for m in available():
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (m.version, m.name))
            ran.append(m.version)
        return ran
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
