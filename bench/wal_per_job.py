"""What PostgreSQL writes per job on the hot path: EXPLAIN (ANALYZE, BUFFERS, WAL) of the
three statements a job costs (the batch insert, the claim, the completion).

    .venv/bin/python bench/wal_per_job.py [--dsn URL] [--jobs 1000] [--plans]
        [--drop-index NAME ...]

In a fresh database (dropped at the end) migrated by ``scheduler migrate``: after a
CHECKPOINT and one unmeasured round (so full-page images and cold caches do not count),
``--jobs`` noop jobs are inserted with ``insert_jobs``, claimed by one ``claim_jobs`` and
completed (Succeeded) by one ``complete_runs``, each under EXPLAIN (ANALYZE, BUFFERS, WAL).
Prints WAL records, bytes and full-page images per job for each statement and in total;
``--plans`` also prints the text plans; ``--drop-index`` measures the same statements
without some of the indexes of ``jobs`` (a what-if: docs/decisions/0031). The
statements are the named queries the coordinator runs (schema/queries/), with the
parameters its store passes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import psycopg.sql
from psycopg.rows import dict_row

from scheduler_core.schema import wire
from scheduler_core.schema.queries import q
from scheduler_core.schema.store import NewJob, complete_runs_params, insert_jobs_params, uuid7_many

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
WORKER = "bench-wal"


def explain(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any],
            plans: bool) -> dict[str, float]:
    if plans:
        text = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL) " + sql, params).fetchall()
        print("\n".join(next(iter(r.values())) for r in text), end="\n\n")
        conn.rollback()
    row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + sql,
                       params).fetchone()
    assert row is not None
    top = next(iter(row.values()))[0]
    conn.commit()
    plan = top["Plan"]
    return {"records": plan.get("WAL Records", 0), "bytes": plan.get("WAL Bytes", 0),
            "fpi": plan.get("WAL FPI", 0), "ms": top["Execution Time"]}


def round_trip(conn: psycopg.Connection[Any], n: int, *, measure: bool,
               plans: bool) -> dict[str, dict[str, float]]:
    params = insert_jobs_params([NewJob(type="noop", payload={}) for _ in range(n)],
                                uuid7_many(n))  # what the coordinator sends
    claim = {"worker_id": WORKER, "queues": ["default"], "limit": n, "lease_seconds": 30.0}
    out: dict[str, dict[str, float]] = {}
    if measure:
        out["insert"] = explain(conn, q("insert_jobs"), params, plans)
        out["claim"] = explain(conn, q("claim_jobs"), claim, plans)
    else:
        conn.execute(q("insert_jobs"), params)
        conn.execute(q("claim_jobs"), claim)
        conn.commit()
    runs = conn.execute("SELECT id, lease_token FROM job_runs WHERE finished_at IS NULL "
                        "AND worker_id = %s", (WORKER,)).fetchall()
    complete = complete_runs_params(  # what the coordinator sends
        [wire.Completion(run_id=r["id"], lease_token=r["lease_token"], outcome="Succeeded")
         for r in runs], worker_id=WORKER, base=2.0, cap=300.0, max_snoozes=100)
    if measure:
        out["complete"] = explain(conn, q("complete_runs"), complete, plans)
    else:
        conn.execute(q("complete_runs"), complete)
        conn.commit()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL", DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--plans", action="store_true", help="print the text plans too")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                        help="what if: drop this index of jobs after migrating (repeatable)")
    args = parser.parse_args(argv)
    name = f"scbench_wal_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(args.dsn, dbname=name)
    try:
        subprocess.run([sys.executable, "-m", "scheduler_core.command.cli", "migrate"],
                       check=True, capture_output=True, env={**os.environ, "DATABASE_URL": dsn})
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            for index in args.drop_index:
                conn.execute(psycopg.sql.SQL("DROP INDEX {}").format(
                    psycopg.sql.Identifier(index)))
            conn.execute(q("register_worker"), {
                "id": WORKER, "hostname": "bench", "pid": os.getpid(), "capacity": args.jobs,
                "secret_hash": b"x", "presented": b"x", "queues": None})
            conn.commit()
            conn.autocommit = True
            conn.execute("CHECKPOINT")
            conn.autocommit = False
            round_trip(conn, args.jobs, measure=False, plans=False)
            figures = round_trip(conn, args.jobs, measure=True, plans=args.plans)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    n = args.jobs
    print(f"{'statement':<10} {'WAL records/job':>16} {'WAL bytes/job':>14} {'FPI':>5} "
          f"{'ms/1000 jobs':>13}")
    for stage, f in [*figures.items(), ("total", {
            k: sum(v[k] for v in figures.values()) for k in ("records", "bytes", "fpi", "ms")})]:
        print(f"{stage:<10} {f['records'] / n:>16.1f} {f['bytes'] / n:>14.0f} "
              f"{f['fpi']:>5.0f} {f['ms'] * 1000 / n:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
