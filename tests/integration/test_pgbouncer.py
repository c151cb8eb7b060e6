"""The coordinator behind a real PgBouncer in transaction pooling mode (issue 19).

A module's PgBouncer (/usr/sbin/pgbouncer, started here, stopped and its folder removed
by the fixture's finaliser) pools the module's database with two server connections,
so the coordinator's four pool connections share them. The coordinator runs with
``SCHEDULER_DB_POOLER=transaction`` and its LISTEN on the direct URL
(command/db_routes.py, docs/decisions/0028-transaction-pooler.md). PgBouncer reaches
PostgreSQL where the test database lives: on TCP with DATABASE_URL, on the embedded
server's Unix socket folder without it. As root it runs as the embedded server's
system user (PgBouncer refuses root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from psycopg import ClientCursor
from psycopg.rows import dict_row

from scheduler_core.command.pgserver.users import SYSTEM_USER, identity, prepare_dir
from scheduler_core.runtime import db
from tests.support import (
    Coordinator,
    Proc,
    Worker,
    free_port,
    query,
    submit,
    submit_batch,
    wait_until,
)

PGBOUNCER = "/usr/sbin/pgbouncer"
POOL_SIZE = 2  # server connections per database and user: fewer than the coordinator's 4

pytestmark = pytest.mark.skipif(not os.path.exists(PGBOUNCER),
                                reason=f"{PGBOUNCER} is not installed (.ci/run installs it)")


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: ``dsn`` reaches the test database through it, ``direct``
    reaches it straight, ``admin`` is PgBouncer's console."""

    dsn: str
    direct: str
    admin: str
    database: str

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the console (simple query protocol only: ClientCursor)."""
        with psycopg.connect(self.admin, autocommit=True, cursor_factory=ClientCursor,
                             row_factory=dict_row) as conn:
            return conn.execute(f"SHOW {what}".encode()).fetchall()

    def rows(self, what: str) -> list[dict[str, Any]]:
        """The rows of ``SHOW <what>`` for the test database."""
        return [r for r in self.show(what) if r.get("database") == self.database]


def _ini(folder: Path, *, port: int, host: str, server_port: int, dbname: str,
         user: str) -> str:
    return "\n".join([
        "[databases]",
        f"{dbname} = host='{host}' port={server_port} dbname='{dbname}'",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",  # TCP only: no socket file in /tmp to collide with
        "auth_type = trust",
        f"auth_file = {folder / 'userlist.txt'}",
        "pool_mode = transaction",
        f"default_pool_size = {POOL_SIZE}",
        "max_client_conn = 50",
        f"admin_users = {user}",
        "",
    ])


@pytest.fixture(scope="module")
def bouncer(module_dsn: str) -> Iterator[Bouncer]:
    with psycopg.connect(module_dsn) as conn:
        info = conn.info
        host, server_port, user, dbname = info.host, info.port, info.user, info.dbname
        password = info.password
    ident = identity(Path("/nonexistent-pgbouncer-data"), SYSTEM_USER)
    folder = Path(tempfile.mkdtemp(prefix="sc-pgbouncer-"))
    prepare_dir(folder, ident)
    port = free_port()
    (folder / "pgbouncer.ini").write_text(_ini(folder, port=port, host=host,
                                               server_port=server_port, dbname=dbname,
                                               user=user))
    # With trust, PgBouncer checks only that the user is listed; a password listed is
    # what it logs in to PostgreSQL with.
    (folder / "userlist.txt").write_text(f'"{user}" "{password or ""}"\n')
    for path in folder.iterdir():
        path.chmod(0o600)
        if ident.switches:
            assert ident.uid is not None and ident.gid is not None
            os.chown(path, ident.uid, ident.gid)
    argv = [PGBOUNCER, *(["-u", SYSTEM_USER] if ident.switches else []),
            str(folder / "pgbouncer.ini")]
    log = open(folder / "pgbouncer.log", "wb")  # closed in the finaliser
    daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    try:
        here = Bouncer(dsn=f"postgresql://{user}@127.0.0.1:{port}/{dbname}",
                       direct=module_dsn, admin=f"postgresql://{user}@127.0.0.1:{port}/pgbouncer",
                       database=dbname)

        def up() -> bool:
            if daemon.poll() is not None:
                raise AssertionError(f"pgbouncer exited {daemon.returncode}: "
                                     + (folder / "pgbouncer.log").read_text()[-2000:])
            return bool(here.show("POOLS"))

        wait_until(up, timeout=15, what="pgbouncer's admin console")
        yield here
    finally:
        daemon.send_signal(signal.SIGTERM)  # PgBouncer's immediate shutdown
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=5)
        log.close()
        shutil.rmtree(folder)


@pytest.fixture
def bounced_coordinator(bouncer: Bouncer, processes: list[Coordinator | Worker]) -> Coordinator:
    """A coordinator whose pool goes through PgBouncer and whose LISTEN goes straight."""
    c = Coordinator(bouncer.dsn, env={"SCHEDULER_DB_POOLER": "transaction",
                                      "SCHEDULER_DIRECT_DATABASE_URL": bouncer.direct})
    processes.append(c)
    c.wait_healthy()
    return c


def _jobs_and_runs(dsn: str, ids: list[str]) -> dict[str, tuple[str, int]]:
    rows = query(dsn, "SELECT j.id::text AS id, j.status, "
                      "(SELECT count(*) FROM job_runs r WHERE r.job_id = j.id) AS runs "
                      "FROM jobs j WHERE j.id = ANY(%s::uuid[])", ids)
    return {r["id"]: (r["status"], r["runs"]) for r in rows}


def _prepared_on_each_server(bouncer: Bouncer) -> dict[int, int]:
    """How many prepared statements each of the pool's server connections holds: one
    open transaction through PgBouncer per server connection, all at once, so each is
    on a server of its own."""
    conns = [psycopg.connect(bouncer.dsn, prepare_threshold=None) for _ in range(POOL_SIZE)]
    try:
        seen: dict[int, int] = {}
        for conn in conns:  # each stays in its transaction until all have looked
            pid, count = conn.execute(
                "SELECT pg_backend_pid(), count(*) FROM pg_prepared_statements").fetchone() or (0, 0)
            seen[pid] = count
        return seen
    finally:
        for conn in conns:
            conn.close()


def test_jobs_succeed_exactly_once_through_a_transaction_pooler(
        bouncer: Bouncer, bounced_coordinator: Coordinator,
        start_worker: Callable[..., Worker]) -> None:
    url = bounced_coordinator.url
    xacts_before = sum(int(r["total_xact_count"]) for r in bouncer.rows("STATS"))
    start_worker(url)
    singles = [submit(url, "noop")["id"] for _ in range(3)]
    batch = submit_batch(url, [{"type": "noop"}] * 5)
    parent = submit(url, "noop")["id"]
    child = submit(url, "noop", dependsOn=[parent])["id"]
    schedule = submit(url, "noop", cron="* * * * * *")["id"]

    def fired() -> list[str]:
        rows = query(bouncer.direct, "SELECT id::text AS id FROM jobs WHERE schedule_id = %s "
                                     "AND status = 'Succeeded'", schedule)
        return [r["id"] for r in rows] if len(rows) >= 2 else []

    wait_until(fired, timeout=20, what="two cron fires succeeded")
    resp = httpx.post(f"{url}/api/schedules/{schedule}/pause", timeout=10)
    assert 200 == resp.status_code, resp.text
    fires = [r["id"] for r in query(bouncer.direct, "SELECT id::text AS id FROM jobs "
                                                    "WHERE schedule_id = %s", schedule)]
    ids = [*singles, *batch, parent, child, *fires]

    def all_done() -> dict[str, tuple[str, int]]:
        seen = _jobs_and_runs(bouncer.direct, ids)
        return seen if all(s == "Succeeded" for s, _ in seen.values()) else {}

    seen = wait_until(all_done, timeout=20, what="every job Succeeded")
    assert {i: ("Succeeded", 1) for i in ids} == seen
    [order] = query(bouncer.direct,
                    "SELECT (SELECT min(started_at) FROM job_runs WHERE job_id = %s) >= "
                    "(SELECT max(finished_at) FROM job_runs WHERE job_id = %s) AS after",
                    child, parent)
    assert order["after"] is True

    # The stores' statements went through PgBouncer, on its shared server connections...
    [pool] = bouncer.rows("POOLS")
    assert "transaction" == pool["pool_mode"]
    xacts = sum(int(r["total_xact_count"]) for r in bouncer.rows("STATS"))
    assert xacts - xacts_before >= len(ids)
    servers = {int(r["remote_pid"]) for r in bouncer.rows("SERVERS")}
    assert 1 <= len(servers) <= POOL_SIZE
    # ...which hold no prepared statement of the coordinator's...
    prepared = _prepared_on_each_server(bouncer)
    assert POOL_SIZE == len(prepared)
    assert {pid: 0 for pid in prepared} == prepared
    # ...and the one backend of the database that is not PgBouncer's is the LISTEN.
    with psycopg.connect(bouncer.direct, autocommit=True, row_factory=dict_row) as conn:
        mine = conn.info.backend_pid
        backends = conn.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> %s", (mine,)).fetchall()
        servers = {int(r["remote_pid"]) for r in bouncer.rows("SERVERS")}
    direct = [b for b in backends if b["pid"] not in servers]
    assert 1 == len(direct), backends
    assert direct[0]["query"].startswith("LISTEN scheduler_")


def test_a_transaction_pooler_without_a_direct_url_is_refused_at_start() -> None:
    """Refused before any connection (so no server is needed), the URL's password not
    shown."""
    secret = f"pw-{uuid.uuid4().hex}"
    dsn = f"postgresql://someone:{secret}@127.0.0.1:{free_port()}/jobs"
    proc = Proc(["coordinator", "--port", str(free_port())],
                {"DATABASE_URL": dsn, "SCHEDULER_DB_POOLER": "transaction"}, "coordinator")
    try:
        assert 1 == proc.wait(timeout=30)
        out = proc.output()
    finally:
        proc.stop()
    assert "SCHEDULER_DIRECT_DATABASE_URL" in out
    assert "LISTEN" in out
    assert secret not in out


async def _alternate(first: db.TrioConnection, second: db.TrioConnection,
                     times: int) -> set[int]:
    """Run one statement on each connection in turn; the server pids they ran on."""
    pids: set[int] = set()
    for _ in range(times):
        for conn in (first, second):
            cur = await conn.execute("SELECT pg_backend_pid() AS pid, %s::int AS n", (1,))
            row = await cur.fetchone()
            assert row is not None
            pids.add(row["pid"])
    return pids


def test_prepared_statements_collide_on_a_shared_server_connection(
        bouncer: Bouncer) -> None:
    """Why SCHEDULER_DB_POOLER=transaction turns them off: psycopg's default (prepare
    after 5 runs) through the pooler names the same statement twice on one server
    connection."""
    async def main() -> None:
        first = await db.connect(bouncer.dsn)
        second = await db.connect(bouncer.dsn)
        try:
            with pytest.raises((psycopg.errors.DuplicatePreparedStatement,
                                psycopg.errors.InvalidSqlStatementName)):
                await _alternate(first, second, 10)
        finally:
            await first.close()
            await second.close()

    trio.run(main)


def test_without_prepared_statements_clients_share_server_connections(
        bouncer: Bouncer) -> None:
    async def main() -> None:
        first = await db.connect(bouncer.dsn, prepare_threshold=None)
        second = await db.connect(bouncer.dsn, prepare_threshold=None)
        try:
            pids = await _alternate(first, second, 10)
        finally:
            await first.close()
            await second.close()
        assert 1 <= len(pids) <= POOL_SIZE

    trio.run(main)


def test_the_session_time_zone_holds_on_shared_server_connections(
        bouncer: Bouncer) -> None:
    """runtime/db.py's ``SET TIME ZONE 'UTC'`` is session state, yet PgBouncer carries
    it: another client's time zone on the same server connection does not leak in."""
    async def main() -> None:
        ours = await db.connect(bouncer.dsn, prepare_threshold=None)
        theirs = await db.connect(bouncer.dsn, prepare_threshold=None)
        await theirs.execute("SET TIME ZONE 'Asia/Tokyo'")
        try:
            shared = False
            for _ in range(5):
                cur = await ours.execute("SELECT pg_backend_pid() AS pid, now() AS now, "
                                         "current_setting('TimeZone') AS tz")
                mine = await cur.fetchone()
                cur = await theirs.execute("SELECT pg_backend_pid() AS pid, "
                                           "current_setting('TimeZone') AS tz")
                other = await cur.fetchone()
                assert mine is not None and other is not None
                assert ("UTC", 0.0) == (mine["tz"], mine["now"].utcoffset().total_seconds())
                assert "Asia/Tokyo" == other["tz"]
                shared = shared or mine["pid"] == other["pid"]
        finally:
            await ours.close()
            await theirs.close()
        assert shared, "the two clients never shared a server connection"

    trio.run(main)
