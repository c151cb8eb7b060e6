"""``scheduler migrate`` on real databases: first run, re-run, two at once, and the
physical choices the schema makes (partial claim index, fillfactor)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from scheduler_core.schema.migrate import _LOCK_KEY as MIGRATION_LOCK_KEY
from scheduler_core.schema.migrate import available
from tests.support import ROOT, free_port, wait_until

TABLES = {"jobs", "run_history", "job_runs", "schedules", "workers", "schema_migrations"}


def migrate_process(dsn: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler_core.command.cli", "migrate"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DATABASE_URL": dsn, "SCHEDULER_LOG_FORMAT": "json"})


def run_migrate(dsn: str) -> subprocess.CompletedProcess[str]:
    p = migrate_process(dsn)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode()).fetchall()


def waiting_on_advisory_locks(dsn: str) -> int:
    [(n,)] = query(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                   "AND NOT granted AND database = (SELECT oid FROM pg_database "
                   "WHERE datname = current_database())")
    return int(str(n))


def versions(dsn: str) -> list[int]:
    return [int(str(r[0])) for r in query(
        dsn, "SELECT version FROM schema_migrations ORDER BY version")]


def tables(dsn: str) -> set[str]:
    """The tables, and the views (every run, live or ended: job_runs)."""
    return {str(r[0]) for r in query(
        dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' UNION ALL "
             "SELECT viewname FROM pg_views WHERE schemaname = 'public'")}


def test_migrate_on_an_empty_database_applies_every_migration(empty_database: str) -> None:
    done = run_migrate(empty_database)
    assert (0, "") == (done.returncode, done.stderr)
    assert f"applied migrations: {[m.version for m in available()]}" == done.stdout.strip()
    assert [m.version for m in available()] == versions(empty_database)
    assert TABLES <= tables(empty_database)


def test_migrate_a_second_time_applies_nothing(db_dsn: str) -> None:
    # db_dsn is a clone of a database this same code migrated once already.
    again = run_migrate(db_dsn)
    assert (0, "migrations: up to date") == (again.returncode, again.stdout.strip())
    assert [m.version for m in available()] == versions(db_dsn)


def test_two_migrations_at_the_same_moment_both_succeed_and_apply_each_version_once(
        empty_database: str) -> None:
    # Hold the migration lock until both processes wait on it, then let them race.
    with psycopg.connect(empty_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        first, second = migrate_process(empty_database), migrate_process(empty_database)
        wait_until(lambda: 2 == waiting_on_advisory_locks(empty_database), timeout=30,
                   what="both migrate processes waiting on the migration lock")
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        results = [(*p.communicate(timeout=60), p.returncode) for p in (first, second)]
    assert [0, 0] == [rc for _, _, rc in results], results
    assert [f"applied migrations: {[m.version for m in available()]}",
            "migrations: up to date"] == sorted(out.strip() for out, _, _ in results)
    assert [m.version for m in available()] == versions(empty_database)
    assert TABLES <= tables(empty_database)


def test_migrate_with_postgresql_unreachable_exits_1_with_a_message() -> None:
    done = run_migrate(f"postgresql://nobody@127.0.0.1:{free_port()}/x?connect_timeout=2")
    assert 1 == done.returncode
    assert done.stderr.startswith("scheduler: ")
    assert "Traceback" not in done.stderr


def test_the_claim_index_is_partial(db_dsn: str) -> None:
    [(indexdef,)] = query(db_dsn, "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_claim'")
    assert " WHERE " in str(indexdef)
    assert "status" in str(indexdef).split(" WHERE ", 1)[1]


def test_the_jobs_table_leaves_room_for_hot_updates(db_dsn: str) -> None:
    [(options,)] = query(db_dsn, "SELECT reloptions FROM pg_class WHERE relname = 'jobs'")
    assert isinstance(options, list)
    assert "fillfactor=70" in options
