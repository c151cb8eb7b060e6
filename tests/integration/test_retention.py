"""Retention: finished jobs past their age are deleted with their runs, in batches;
everything else stays. ``scheduler prune`` on demand, the pruner actor in the
coordinator."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable

import psycopg

from scheduler_core.actors.coordinator import pruner
from scheduler_core.runtime import db
from scheduler_core.schema.retention_store import RetentionPolicy, RetentionStore
from tests.support import ROOT, Coordinator, wait_until


def insert_job(dsn: str, status: str, *, finished_days_ago: float | None,
               created_days_ago: float = 60.0, runs: int = 1) -> uuid.UUID:
    """A job as the system would have left it, with ``runs`` finished runs."""
    job_id = uuid.uuid4()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO jobs (id, type, payload, status, run_at, attempts, max_attempts,
                                 timeout_seconds, created_at, finished_at)
               VALUES (%(id)s, 'noop', '{}', %(status)s,
                       now() - make_interval(days => %(created)s::int), %(runs)s, 3, 60,
                       now() - make_interval(days => %(created)s::int),
                       now() - make_interval(secs => %(finished)s::float8 * 86400))""",
            {"id": job_id, "status": status, "created": int(created_days_ago), "runs": runs,
             "finished": finished_days_ago})
        for attempt in range(1, runs + 1):
            conn.execute(
                """INSERT INTO run_history (id, job_id, attempt, worker_id, lease_token,
                                            lease_expires_at, finished_at, outcome)
                   VALUES (%s, %s, %s, 'w-1', %s, now(), now(), 'Failed')""",
                (uuid.uuid4(), job_id, attempt, uuid.uuid4()))
    return job_id


def job_ids(dsn: str) -> set[uuid.UUID]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM jobs").fetchall()}


def run_job_ids(dsn: str) -> set[uuid.UUID]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT job_id FROM job_runs").fetchall()}


def scheduler(dsn: str, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduler_core.command.cli", *args], cwd=ROOT, text=True,
        capture_output=True, timeout=60,
        env={**os.environ, "DATABASE_URL": dsn, "SCHEDULER_LOG_FORMAT": "json", **(env or {})})


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    """What ``scheduler prune`` prints last (its log lines come before)."""
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_prune_deletes_exactly_the_finished_jobs_past_their_retention_with_their_runs(
        db_dsn: str) -> None:
    old = {
        insert_job(db_dsn, "Succeeded", finished_days_ago=8),
        insert_job(db_dsn, "Cancelled", finished_days_ago=8, runs=0),
        insert_job(db_dsn, "DeadLetter", finished_days_ago=31, runs=3),
    }
    kept = {
        insert_job(db_dsn, "Succeeded", finished_days_ago=6),
        insert_job(db_dsn, "Cancelled", finished_days_ago=1),
        insert_job(db_dsn, "DeadLetter", finished_days_ago=10),  # DeadLetter: 30 days
        insert_job(db_dsn, "Pending", finished_days_ago=None, runs=0),
        insert_job(db_dsn, "Scheduled", finished_days_ago=None, runs=0),
        insert_job(db_dsn, "Running", finished_days_ago=None),
        insert_job(db_dsn, "Failed", finished_days_ago=None),
    }

    done = scheduler(db_dsn, "prune")

    assert (0, "pruned jobs: 3 (batches: 2)") == (done.returncode, last_line(done)), done.stderr
    assert kept == job_ids(db_dsn)
    assert set() == run_job_ids(db_dsn) & old
    assert {j for j in kept if j in run_job_ids(db_dsn)} == run_job_ids(db_dsn)


def test_zero_days_keeps_those_jobs_forever(db_dsn: str) -> None:
    succeeded = insert_job(db_dsn, "Succeeded", finished_days_ago=3650)
    dead = insert_job(db_dsn, "DeadLetter", finished_days_ago=3650)

    done = scheduler(db_dsn, "prune", env={"SCHEDULER_RETENTION_SUCCEEDED_DAYS": "0"})

    assert 0 == done.returncode, done.stderr
    assert {succeeded} == job_ids(db_dsn)
    assert dead not in run_job_ids(db_dsn)


def test_prune_takes_its_ages_from_the_command_line(db_dsn: str) -> None:
    insert_job(db_dsn, "Succeeded", finished_days_ago=2)
    kept = insert_job(db_dsn, "DeadLetter", finished_days_ago=2)

    done = scheduler(db_dsn, "prune", "--succeeded-days", "1", "--deadletter-days", "3")

    assert (0, "pruned jobs: 1 (batches: 1)") == (done.returncode, last_line(done))
    assert {kept} == job_ids(db_dsn)


def test_prune_refuses_a_negative_age(db_dsn: str) -> None:
    done = scheduler(db_dsn, "prune", "--succeeded-days", "-1")
    assert 2 == done.returncode
    assert "--succeeded-days" in done.stderr


async def test_one_pass_deletes_in_batches_of_at_most_the_batch_size(db_dsn: str) -> None:
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            """INSERT INTO jobs (id, type, status, run_at, max_attempts, timeout_seconds,
                                 finished_at)
               SELECT gen_random_uuid(), 'noop', 'Succeeded', now() - interval '9 days',
                      3, 60, now() - interval '8 days'
               FROM generate_series(1, 35)""")
    recent = insert_job(db_dsn, "Succeeded", finished_days_ago=1)

    async with db.open_pool(db_dsn, max_size=1) as pool:
        result = await pruner.prune_once(RetentionStore(pool), RetentionPolicy(), batch=10)

    assert [10, 10, 10, 5] == result.batch_sizes
    assert {recent} == job_ids(db_dsn)


async def test_a_pass_skips_rows_another_transaction_holds_instead_of_waiting(
        db_dsn: str) -> None:
    held = insert_job(db_dsn, "Succeeded", finished_days_ago=8)
    free = insert_job(db_dsn, "Succeeded", finished_days_ago=8)

    async with db.open_pool(db_dsn, max_size=1) as pool:
        store = RetentionStore(pool)
        with psycopg.connect(db_dsn) as holder:
            holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (held,))
            first = await pruner.prune_once(store, RetentionPolicy(), batch=10)
            assert ({held}, 1) == (job_ids(db_dsn), first.deleted)
            holder.rollback()
        second = await pruner.prune_once(store, RetentionPolicy(), batch=10)

    assert (set(), 1) == (job_ids(db_dsn), second.deleted)
    assert free not in run_job_ids(db_dsn)


def test_the_coordinator_prunes_on_its_own(
        start_coordinator: Callable[..., Coordinator], db_dsn: str) -> None:
    insert_job(db_dsn, "Succeeded", finished_days_ago=8)
    kept = insert_job(db_dsn, "Succeeded", finished_days_ago=1)

    start_coordinator(env={"SCHEDULER_PRUNE_INTERVAL_SECONDS": "0.2"})

    wait_until(lambda: {kept} == job_ids(db_dsn), timeout=10,
               what="the coordinator's pruner to delete the old job")


def test_prune_deletes_keys_that_hold_nothing_and_keeps_the_rest(db_dsn: str) -> None:
    """A job_keys row goes once it has no waiting job, was last served over a day ago
    and holds no RateLimited hold; the others stay (their counts, buckets, turns)."""
    queue = f"prune-{uuid.uuid4().hex[:8]}"
    rows = [  # key, waiting, served days ago, hold (rate_ready) minutes ahead
        ("idle", 0, 2.0, None), ("recent", 0, 0.5, None), ("busy", 3, 2.0, None),
        ("held", 0, 2.0, 30.0)]
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        for key, waiting, days, hold in rows:
            conn.execute(
                "INSERT INTO job_keys (queue, key, waiting, served_at, rate_ready) "
                "VALUES (%s, %s, %s, now() - make_interval(secs => %s), "
                "coalesce(now() + make_interval(secs => %s), '-infinity'))",
                (queue, key, waiting, days * 86400, None if hold is None else hold * 60))
    done = scheduler(db_dsn, "prune")
    assert 0 == done.returncode, done.stderr
    assert "pruned idle concurrency keys: " in done.stdout
    with psycopg.connect(db_dsn) as conn:
        left = {r[0] for r in conn.execute(
            "SELECT key FROM job_keys WHERE queue = %s", (queue,)).fetchall()}
    assert {"recent", "busy", "held"} == left
