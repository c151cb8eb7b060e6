"""Enqueue inside the application's own transaction (issue 17; migration 0016,
docs/decisions/0022-sql-enqueue.md): ``scheduler.enqueue`` and
``scheduler.enqueue_many`` called on real connections, a real coordinator validating
after the commit, a real worker running what passed.

Every wait is a poll with a deadline; the one pause is the scenario's own (a
transaction held open for 5 s).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from tests.support import Coordinator, Worker, query, running_coordinator, wait_until

HANDLERS = {"SCHEDULER_HANDLERS": "tests.sql_handlers"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env={"SCHEDULER_CLAIM_WAIT_SECONDS": "5",
                                              **HANDLERS}) as c:
        yield c


@pytest.fixture(scope="module")
def worker(api: Coordinator) -> Iterator[Worker]:
    w = Worker(api.url, slots=4, env=HANDLERS, extra=["--queues", "*"])
    yield w
    w.stop()


@pytest.fixture
def tally_file(tmp_path: Path) -> Path:
    return tmp_path / "tally.jsonl"


def tallied(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def job_of(dsn: str, job_id: uuid.UUID) -> dict[str, Any] | None:
    rows = query(dsn, "SELECT * FROM jobs WHERE id = %s", job_id)
    return rows[0] if rows else None


def wait_status(dsn: str, job_id: uuid.UUID, *statuses: str,
                timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        row = job_of(dsn, job_id)
        return row if row is not None and row["status"] in statuses else None
    return wait_until(reached, timeout=timeout, what=f"job {job_id} {statuses}")


def enqueue(conn: psycopg.Connection[Any], job_type: str, payload: Any,
            **options: Any) -> uuid.UUID:
    names = ["type", "payload", *options]
    call = sql.SQL("SELECT scheduler.enqueue({})").format(sql.SQL(", ").join(
        [sql.Placeholder(), sql.Placeholder()]
        + [sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder()) for k in options]))
    row = conn.execute(call, [job_type, Jsonb(payload), *options.values()]).fetchone()
    assert row is not None, names
    return uuid.UUID(str(row[0]))


def runs_of(dsn: str, job_id: uuid.UUID) -> int:
    return int(query(dsn, "SELECT count(*) AS n FROM job_runs WHERE job_id = %s",
                     job_id)[0]["n"])


# -- transactions -------------------------------------------------------------------------


def test_a_rolled_back_enqueue_leaves_nothing_and_wakes_nobody_a_committed_one_runs(
        api: Coordinator, worker: Worker, module_dsn: str, tally_file: Path) -> None:
    with psycopg.connect(module_dsn, autocommit=True) as listener:
        listener.execute("LISTEN scheduler_validate")
        with psycopg.connect(module_dsn) as app:
            gone = enqueue(app, "tally", {"n": 1, "path": str(tally_file)})
            app.rollback()
            kept = enqueue(app, "tally", {"n": 2, "path": str(tally_file)})
            app.commit()
            app.execute("NOTIFY scheduler_validate, 'sentinel'")
            app.commit()
        heard = []
        for note in listener.notifies(timeout=30):
            heard.append(note.payload)
            if note.payload == "sentinel":
                break
    assert ["", "sentinel"] == heard  # the committed enqueue's, and not the other's
    assert job_of(module_dsn, gone) is None
    done = wait_status(module_dsn, kept, "Succeeded")
    assert {"n": 2} == done["result"]
    assert [2] == [t["n"] for t in tallied(tally_file)]


def test_a_transaction_held_open_delays_its_job_by_that_long_and_no_more(
        api: Coordinator, worker: Worker, module_dsn: str, tally_file: Path) -> None:
    with psycopg.connect(module_dsn) as app, psycopg.connect(module_dsn,
                                                             autocommit=True) as other:
        job_id = enqueue(app, "tally", {"n": 3, "path": str(tally_file)})
        time.sleep(5)  # the scenario: the application's transaction stays open 5 s
        assert 0 == other.execute("SELECT count(*) FROM jobs WHERE id = %s",
                                  (job_id,)).fetchone()[0]  # type: ignore[index]
        assert [] == tallied(tally_file)
        row = app.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        committed_at = row[0]
        app.commit()
    done = wait_status(module_dsn, job_id, "Succeeded")
    waited = (done["started_at"] - committed_at).total_seconds()
    # Not before the commit, and not another 5 s after it: the NOTIFY at commit wakes
    # the validator (without it, its next look is 30 s away).
    assert 0 <= waited < 5, waited
    assert done["created_at"] < committed_at  # the transaction's start


def test_enqueue_many_keeps_the_order_and_the_keys(
        api: Coordinator, worker: Worker, module_dsn: str) -> None:
    with psycopg.connect(module_dsn) as app:
        first = enqueue(app, "noop", {}, idempotency_key=f"k-{uuid.uuid4()}",
                        queue="nowhere")
        with app.cursor() as cur:
            key = f"m-{uuid.uuid4()}"
            cur.execute("SELECT scheduler.enqueue_many(%s)", (Jsonb([
                {"type": "noop", "queue": "nowhere"},
                {"type": "noop", "queue": "nowhere", "idempotencyKey": key},
                {"type": "noop", "queue": "nowhere", "priority": 5, "maxAttempts": 2},
                {"type": "noop", "queue": "nowhere", "idempotencyKey": key},
                {"type": "noop", "queue": "nowhere", "dependsOn": [str(first)]},
            ]),))
            row = cur.fetchone()
            assert row is not None
            ids = [uuid.UUID(str(i)) for i in row[0]]
        app.commit()
    assert 5 == len(ids)
    assert ids[1] == ids[3]  # one key, one job
    assert ids[0] < ids[1] < ids[2] < ids[4]  # time-ordered in the array's order
    rows = {r["id"]: r for r in query(module_dsn, "SELECT * FROM jobs WHERE id = ANY(%s)",
                                      ids)}
    assert 4 == len(rows)
    assert (5, 2) == (rows[ids[2]]["priority"], rows[ids[2]]["max_attempts"])
    # The worker serves every queue: all run, the dependent one after its parent.
    done = {j: wait_status(module_dsn, j, "Succeeded") for j in [first, *ids]}
    assert done[ids[4]]["started_at"] >= done[first]["finished_at"]
    assert [first] == [r["parent"] for r in query(
        module_dsn, "SELECT parent FROM job_deps WHERE child = %s", ids[4])]


# -- validation after commit ---------------------------------------------------------------


def test_an_invalid_job_is_dead_lettered_before_any_worker_sees_it(
        api: Coordinator, worker: Worker, module_dsn: str, tally_file: Path) -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    with psycopg.connect(module_dsn) as app:
        bad_field = enqueue(app, "tally", {"n": "seven", "path": str(tally_file)})
        unknown = enqueue(app, "no_such_type", {})
        too_deep = enqueue(app, "tally", {"n": 1, "path": str(tally_file), "x": deep})
        good = enqueue(app, "tally", {"n": 4, "path": str(tally_file)})
        app.commit()
    refused = {jid: wait_status(module_dsn, jid, "DeadLetter")
               for jid in (bad_field, unknown, too_deep)}
    assert "payload.n" in refused[bad_field]["last_error"]
    assert "refused at validation" in refused[bad_field]["last_error"]
    assert "unknown job type 'no_such_type'" in refused[unknown]["last_error"]
    assert "nested at most" in refused[too_deep]["last_error"]
    for row in refused.values():
        assert 0 == row["attempts"] and row["finished_at"] is not None
        assert 0 == runs_of(module_dsn, row["id"])  # never claimed
    wait_status(module_dsn, good, "Succeeded")
    assert [4] == [t["n"] for t in tallied(tally_file)]  # the handler saw only the valid one


def test_settings_left_out_take_the_types_defaults_as_the_api_gives_them(
        api: Coordinator, module_dsn: str) -> None:
    with psycopg.connect(module_dsn) as app:
        defaulted = enqueue(app, "slow_default", {})
        explicit = enqueue(app, "slow_default", {}, queue="sqlq-other", max_attempts=2,
                           timeout_seconds=9)
        app.commit()
    wait_until(lambda: all(job_of(module_dsn, j)["validation"] is None  # type: ignore[index]
                           for j in (defaulted, explicit)), what="validated")
    d, e = job_of(module_dsn, defaulted), job_of(module_dsn, explicit)
    assert d is not None and e is not None
    assert ("sqlq", 7, 42) == (d["queue"], d["max_attempts"], d["timeout_seconds"])
    assert ("sqlq-other", 2, 9) == (e["queue"], e["max_attempts"], e["timeout_seconds"])


def test_the_functions_check_what_the_database_can_and_write_nothing(
        api: Coordinator, module_dsn: str) -> None:
    before = query(module_dsn, "SELECT count(*) AS n FROM jobs")[0]["n"]
    cases: list[tuple[str, tuple[Any, ...], str]] = [
        ("SELECT scheduler.enqueue(%s, %s)", ("", Jsonb({})), "type"),
        ("SELECT scheduler.enqueue(%s, %s)", ("noop", Jsonb([1])), "payload"),
        ("SELECT scheduler.enqueue(%s, %s, queue => %s)", ("noop", Jsonb({}), "a b"), "queue"),
        ("SELECT scheduler.enqueue(%s, %s, priority => %s)", ("noop", Jsonb({}), 101),
         "priority"),
        ("SELECT scheduler.enqueue(%s, %s, max_attempts => %s)", ("noop", Jsonb({}), 0),
         "max_attempts"),
        ("SELECT scheduler.enqueue(%s, %s, timeout_seconds => %s)", ("noop", Jsonb({}), 86401),
         "timeout_seconds"),
        ("SELECT scheduler.enqueue(%s, %s, idempotency_key => %s)", ("noop", Jsonb({}), ""),
         "idempotency_key"),
        ("SELECT scheduler.enqueue(%s, %s, concurrency_key => %s)",
         ("noop", Jsonb({}), "k" * 201), "concurrency_key"),
        ("SELECT scheduler.enqueue(%s, %s, depends_on => %s)",
         ("noop", Jsonb({}), [uuid.uuid4()]), "depends_on"),
        ("SELECT scheduler.enqueue_many(%s)", (Jsonb({"type": "noop"}),), "JSON array"),
        ("SELECT scheduler.enqueue_many(%s)", (Jsonb([{"type": "noop"}, {"tipe": "noop"}]),),
         "jobs[1]"),
        ("SELECT scheduler.enqueue_many(%s)",
         (Jsonb([{"type": "noop"}, {"type": "noop", "priority": -101}]),), "jobs[1].priority"),
    ]
    for statement, params, named in cases:
        with psycopg.connect(module_dsn) as app:
            with pytest.raises(psycopg.Error) as info:
                app.execute(statement.encode(), params)
            assert named in str(info.value), (statement, params, str(info.value))
    assert before == query(module_dsn, "SELECT count(*) AS n FROM jobs")[0]["n"]


# -- the role -------------------------------------------------------------------------------


def test_the_enqueuer_role_may_call_the_functions_and_touch_no_table(
        api: Coordinator, module_dsn: str, app_role: str) -> None:
    as_app = make_conninfo(module_dsn, user=app_role, password="")
    with psycopg.connect(as_app) as app:
        job_id = enqueue(app, "noop", {}, queue="nowhere")
        row = app.execute("SELECT scheduler.enqueue_many(%s)",
                          (Jsonb([{"type": "noop", "queue": "nowhere"}]),)).fetchone()
        assert row is not None and 1 == len(row[0])
        app.commit()
    assert job_of(module_dsn, job_id) is not None
    attempts = [
        "SELECT count(*) FROM jobs", "SELECT * FROM job_runs LIMIT 1",
        "SELECT * FROM run_history LIMIT 1", "SELECT * FROM schedules LIMIT 1",
        "SELECT * FROM queues LIMIT 1", "SELECT * FROM workers LIMIT 1",
        "SELECT * FROM sessions LIMIT 1", "SELECT * FROM job_deps LIMIT 1",
        "SELECT * FROM job_keys LIMIT 1", "SELECT * FROM workflows LIMIT 1",
        "SELECT * FROM audit LIMIT 1", "SELECT * FROM job_releases LIMIT 1",
        f"UPDATE jobs SET priority = 1 WHERE id = '{job_id}'",
        f"DELETE FROM jobs WHERE id = '{job_id}'",
        "INSERT INTO jobs (id, type, status, run_at, max_attempts, timeout_seconds) "
        "VALUES (gen_random_uuid(), 'noop', 'Pending', now(), 1, 1)",
        "UPDATE queues SET paused = true",
        "TRUNCATE jobs",
        # the helpers behind the functions run as the caller: no way around them
        "SELECT scheduler_enqueue_one(gen_random_uuid(), 'noop', '{}', now(), NULL, NULL, "
        "NULL, NULL, NULL, NULL, NULL)",
    ]
    for statement in attempts:
        with psycopg.connect(as_app) as app:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement.encode())
    assert job_of(module_dsn, job_id) is not None
