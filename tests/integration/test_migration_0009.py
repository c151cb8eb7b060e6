"""Migration 0009 on a live system: a database written by the old schema (0001-0008,
runs in job_runs) keeps every job, run and schedule, and its Running jobs' live leases
carry on under the new one (the lease in the job's row, ended runs in run_history).

The old system is played by SQL alone: the migrations up to 0008 applied as
``scheduler migrate`` applied them, jobs claimed by that schema's own claim function,
a worker row with a known secret. Then ``scheduler migrate`` applies 0009, and a real
coordinator and worker of today's code take over.
"""

from __future__ import annotations

import hashlib
import json
import uuid

import psycopg

from scheduler_core.schema.migrate import available
from tests.integration.test_migrations import run_migrate
from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    job_row,
    query,
    runs_of,
    scalar,
    wait_until,
)

OLD_WORKER = "old-worker"
OLD_SECRET = "the-old-workers-secret"


def apply_old_schema(dsn: str) -> None:
    """Migrations 0001-0008, recorded in schema_migrations as migrate() records them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("""CREATE TABLE schema_migrations (
                            version integer PRIMARY KEY, name text NOT NULL,
                            applied_at timestamptz NOT NULL DEFAULT now())""")
        for m in available():
            if m.version > 8:
                break
            with conn.transaction():
                conn.execute(m.sql.encode())
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (m.version, m.name))


def insert_job(conn: psycopg.Connection, status: str = "Pending", **extra: object) -> uuid.UUID:
    job_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO jobs (id, type, payload, status, queue, run_at, max_attempts,
                             timeout_seconds, schedule_id, fire_time)
           VALUES (%s, 'noop', %s, %s, 'default', now() - interval '1 s', 3, 60, %s, %s)""",
        (job_id, json.dumps(extra.get("payload", {})), status, extra.get("schedule_id"),
         extra.get("fire_time")))
    return job_id


def populate_old(dsn: str) -> dict[str, object]:
    """Finished jobs with runs, waiting jobs, a schedule, and two Running jobs claimed by
    the old claim function: one with a live lease, one whose lease has expired."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        schedule_id = uuid.uuid4()
        conn.execute(
            """INSERT INTO schedules (id, cron, job_type, max_attempts, timeout_seconds,
                                      next_fire_at)
               VALUES (%s, '0 3 * * *', 'noop', 3, 60, now() + interval '1 day')""",
            (schedule_id,))
        conn.execute(
            """INSERT INTO workers (id, hostname, pid, capacity, secret_hash)
               VALUES (%s, 'old-host', 1, 4, %s)""",
            (OLD_WORKER, hashlib.sha256(OLD_SECRET.encode()).digest()))
        live = insert_job(conn)
        expired = insert_job(conn)
        claimed = conn.execute(
            "SELECT id, run_id, lease_token FROM scheduler_claim(%s, ARRAY['default'], 2, 600)",
            (OLD_WORKER,)).fetchall()
        assert {live, expired} == {r[0] for r in claimed}
        tokens = {r[0]: (r[1], r[2]) for r in claimed}
        # The second one's worker stopped renewing it long ago.
        conn.execute("UPDATE job_runs SET lease_expires_at = now() - interval '1 minute' "
                     "WHERE job_id = %s", (expired,))
        done = insert_job(conn, "Succeeded", schedule_id=schedule_id,
                          fire_time="2026-11-30 03:00+00")
        conn.execute(
            """INSERT INTO job_runs (id, job_id, attempt, worker_id, lease_token,
                                     lease_expires_at, started_at, finished_at, outcome, error)
               VALUES (gen_random_uuid(), %s, 1, 'w-gone', gen_random_uuid(), now(),
                       now() - interval '2 s', now() - interval '1 s', 'Failed', 'boom'),
                      (gen_random_uuid(), %s, 2, 'w-gone', gen_random_uuid(), now(),
                       now() - interval '1 s', now(), 'Succeeded', NULL)""", (done, done))
        conn.execute("UPDATE jobs SET attempts = 2, finished_at = now() WHERE id = %s", (done,))
        waiting = [insert_job(conn) for _ in range(3)]
    return {"live": live, "expired": expired, "done": done, "waiting": waiting,
            "schedule": schedule_id, "tokens": tokens}


def test_an_old_database_with_live_leases_migrates_and_carries_on(empty_database: str) -> None:
    dsn = empty_database
    apply_old_schema(dsn)
    old = populate_old(dsn)
    jobs_before = query(dsn, "SELECT id, status, attempts FROM jobs ORDER BY id")
    runs_before = query(dsn, "SELECT id, job_id, attempt, worker_id, lease_token, started_at, "
                             "finished_at, outcome, error FROM job_runs ORDER BY id")

    done = run_migrate(dsn)
    # 0009 and what came after it.
    after = [m.version for m in available() if m.version >= 9]
    assert (0, f"applied migrations: {after}") == (done.returncode, done.stdout.strip()), \
        done.stderr

    # Every job and run is there as it was; the live ones are the jobs' leases now.
    assert jobs_before == query(dsn, "SELECT id, status, attempts FROM jobs ORDER BY id")
    assert runs_before == query(dsn, "SELECT id, job_id, attempt, worker_id, lease_token, "
                                     "started_at, finished_at, outcome, error FROM job_runs "
                                     "ORDER BY id")
    assert 2 == scalar(dsn, "SELECT count(*) FROM run_history")
    live_run, live_token = old["tokens"][old["live"]]  # type: ignore[index]
    row = job_row(dsn, str(old["live"]))
    assert (live_run, live_token, OLD_WORKER) == (
        row["current_run_id"], row["lease_token"], row["worker_id"])
    assert 1 == scalar(dsn, "SELECT count(*) FROM schedules WHERE id = %s", old["schedule"])

    coordinator = Coordinator(dsn, env={"SCHEDULER_REAP_INTERVAL_SECONDS": "0.2"})
    worker: Worker | None = None
    hand = HandWorker(coordinator.url, OLD_WORKER)
    try:
        coordinator.wait_healthy()
        # The old worker still holds its live run: it renews and completes it as before.
        hand.secret = OLD_SECRET
        hand.http.headers["X-Worker-Secret"] = OLD_SECRET
        beat = hand.heartbeat(str(live_run), str(live_token))
        assert [str(live_run)] == beat["renewed"], beat
        answer = hand.complete((str(live_run), str(live_token), "Succeeded"))
        assert 200 == answer.status_code, answer.text
        assert "Succeeded" == job_row(dsn, str(old["live"]))["status"]
        # The expired one is reaped by the new reaper; a new worker runs it and the rest.
        worker = Worker(coordinator.url)
        wanted = {old["expired"], *old["waiting"]}  # type: ignore[misc]

        def all_succeeded() -> bool:
            rows = query(dsn, "SELECT status FROM jobs WHERE id = ANY(%s)", list(wanted))
            return len(rows) == len(wanted) and all(r["status"] == "Succeeded" for r in rows)
        wait_until(all_succeeded, timeout=60, what="the old jobs to succeed")
    finally:
        hand.close()
        if worker is not None:
            worker.stop()
        coordinator.stop()

    # Each run once: the old ended ones, the live one ended by its own worker, the
    # expired one ended by the reaper and run again.
    assert [("old-worker", "Succeeded")] == [
        (r["worker_id"], r["outcome"]) for r in runs_of(dsn, str(old["live"]))]
    expired_runs = runs_of(dsn, str(old["expired"]))
    assert [(1, OLD_WORKER, "LeaseExpired"), (2, "Succeeded")] == [
        (r["attempt"], r["worker_id"], r["outcome"]) if r["outcome"] == "LeaseExpired"
        else (r["attempt"], r["outcome"]) for r in expired_runs]
    assert [(1, "Failed"), (2, "Succeeded")] == [
        (r["attempt"], r["outcome"]) for r in runs_of(dsn, str(old["done"]))]
    assert 0 == scalar(dsn, "SELECT count(*) FROM job_runs WHERE finished_at IS NULL")
