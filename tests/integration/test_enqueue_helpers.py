"""client/sql_enqueue.py's helpers on each driver an application uses: psycopg 3 (a
Connection, a Cursor, and their async forms), SQLAlchemy 2 (a Session and a Connection,
and their async forms on psycopg) and Django (``connection`` and ``connections[alias]``
inside ``transaction.atomic()``, in a process of its own), against a real database, as
a login role that is only a member of scheduler_enqueuer, as an application's would be.

Each driver plays one scenario (tests/enqueue_scenario.py) once; the tests below read
the rows it left (through the admin's connection: the application's role may not).
No coordinator runs for those, so the jobs stay as the function wrote them, unvalidated;
the last test runs one through a coordinator and a worker.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from scheduler_core.client import enqueue
from tests.enqueue_scenario import BAD_QUEUE, RUN_AT, Driver, async_driver, play
from tests.support import ROOT, Coordinator, Worker, query, wait_until

DRIVERS = ["psycopg", "psycopg-cursor", "psycopg-async", "psycopg-async-cursor",
           "sqlalchemy-session", "sqlalchemy-connection", "sqlalchemy-async-session",
           "sqlalchemy-async-connection", "django-connection", "django-connections-alias"]
ERRORS = {"psycopg": "psycopg.errors.InvalidParameterValue",
          "sqlalchemy": "sqlalchemy.exc.DataError",
          "django": "django.db.utils.DataError"}
HANDLERS = {"SCHEDULER_HANDLERS": "tests.sql_handlers"}


class TallyPayload(msgspec.Struct):
    """tests/sql_handlers.py's payload of ``tally``, spelled again: importing that module
    here would register its job types on this process's registry (the coordinator and
    worker processes load it by SCHEDULER_HANDLERS)."""

    n: int
    path: str


def as_role(dsn: str, role: str) -> str:
    return make_conninfo(dsn, user=role, password="")


def sqlalchemy_url(dsn: str) -> Any:
    from sqlalchemy.engine import URL

    params = conninfo_to_dict(dsn)
    return URL.create("postgresql+psycopg", username=params.get("user"),
                      password=params.get("password") or None, host=params.get("host"),
                      port=int(params["port"]) if params.get("port") else None,
                      database=params.get("dbname"))


@contextmanager
def psycopg_driver(dsn: str, cursor: bool) -> Iterator[Driver]:
    with psycopg.connect(dsn) as conn:
        @contextmanager
        def transaction() -> Iterator[None]:
            try:
                yield
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        with conn.cursor() as cur:
            yield Driver(cur if cursor else conn, transaction)


@contextmanager
def sqlalchemy_driver(dsn: str, session: bool) -> Iterator[Driver]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(sqlalchemy_url(dsn))
    try:
        if session:
            with Session(engine) as s:
                yield Driver(s, s.begin)
        else:
            with engine.connect() as c:
                yield Driver(c, c.begin)
    finally:
        engine.dispose()


@contextmanager
def psycopg_async_driver(dsn: str, cursor: bool) -> Iterator[Driver]:
    loop = asyncio.new_event_loop()
    try:
        conn = loop.run_until_complete(psycopg.AsyncConnection.connect(dsn))
        cur = conn.cursor()

        async def begin() -> None:
            pass  # psycopg begins a transaction at the first statement

        try:
            yield async_driver(loop, cur if cursor else conn, begin, conn.commit, conn.rollback)
        finally:
            loop.run_until_complete(cur.close())
            loop.run_until_complete(conn.close())
    finally:
        loop.close()


@contextmanager
def sqlalchemy_async_driver(dsn: str, session: bool) -> Iterator[Driver]:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    loop = asyncio.new_event_loop()
    try:
        engine = create_async_engine(sqlalchemy_url(dsn))
        if session:
            held: Any = AsyncSession(engine)
        else:
            held = loop.run_until_complete(engine.connect())

        async def begin() -> None:
            await held.begin()

        try:
            yield async_driver(loop, held, begin, held.commit, held.rollback)
        finally:
            loop.run_until_complete(held.close())
            loop.run_until_complete(engine.dispose())
    finally:
        loop.close()


def play_in_django(dsn: str, tag: str, variant: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "tests.enqueue_scenario", dsn, tag, variant],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert 0 == done.returncode, done.stderr[-3000:]
    outcome: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return outcome


@pytest.fixture(scope="module", params=DRIVERS)
def outcome(request: pytest.FixtureRequest, module_dsn: str,
            app_role: str) -> dict[str, Any]:
    """The scenario played once on one driver: the ids it got (as text), the error it
    saw, and ``driver`` and ``tag``."""
    driver: str = request.param
    tag = f"{driver}-{uuid.uuid4().hex[:8]}"
    dsn = as_role(module_dsn, app_role)
    makers: dict[str, Callable[[], Any]] = {
        "psycopg": lambda: psycopg_driver(dsn, cursor=False),
        "psycopg-cursor": lambda: psycopg_driver(dsn, cursor=True),
        "psycopg-async": lambda: psycopg_async_driver(dsn, cursor=False),
        "psycopg-async-cursor": lambda: psycopg_async_driver(dsn, cursor=True),
        "sqlalchemy-session": lambda: sqlalchemy_driver(dsn, session=True),
        "sqlalchemy-connection": lambda: sqlalchemy_driver(dsn, session=False),
        "sqlalchemy-async-session": lambda: sqlalchemy_async_driver(dsn, session=True),
        "sqlalchemy-async-connection": lambda: sqlalchemy_async_driver(dsn, session=False),
    }
    if driver.startswith("django"):
        played = play_in_django(dsn, tag, "proxy" if driver == "django-connection" else "alias")
    else:
        with makers[driver]() as d:
            played = play(d, tag)
    return {**played, "driver": driver, "tag": tag}


def job(dsn: str, job_id: str) -> dict[str, Any] | None:
    rows = query(dsn, "SELECT * FROM jobs WHERE id = %s", job_id)
    return rows[0] if rows else None


def test_a_committed_enqueue_writes_the_job_with_the_options_given(
        outcome: dict[str, Any], module_dsn: str) -> None:
    row = job(module_dsn, outcome["committed"])
    assert row is not None
    tag = outcome["tag"]
    assert ("noop", {"tag": tag}, "helpers", 7, 2, 9, RUN_AT, f"{tag}-tenant") == (
        row["type"], row["payload"], row["queue"], row["priority"], row["max_attempts"],
        row["timeout_seconds"], row["run_at"], row["concurrency_key"])
    # Waiting for the validator (no coordinator here), with no default left to fill.
    assert ("Waiting", []) == (row["status"], row["validation"])


def test_options_not_given_take_the_databases_defaults(
        outcome: dict[str, Any], module_dsn: str) -> None:
    row = job(module_dsn, outcome["defaults"])
    assert row is not None
    assert ({}, "default", 0, None) == (row["payload"], row["queue"], row["priority"],
                                        row["concurrency_key"])
    # The job type's defaults come from the validator after the commit.
    assert ["queue", "max_attempts", "timeout_seconds"] == row["validation"]
    assert row["created_at"] == row["run_at"]  # now(): the transaction's start


def test_a_rolled_back_enqueue_leaves_no_job(outcome: dict[str, Any], module_dsn: str) -> None:
    assert "rolled_back" in outcome  # the call itself succeeded
    assert job(module_dsn, outcome["rolled_back"]) is None


def test_a_struct_payload_is_stored_as_msgspec_encodes_it(
        outcome: dict[str, Any], module_dsn: str) -> None:
    row = job(module_dsn, outcome["struct"])
    assert row is not None
    assert ("file_write", {"fileName": f"{outcome['tag']}.txt", "content": "hi"}) == (
        row["type"], row["payload"])


def test_enqueue_many_returns_the_ids_in_the_order_given(
        outcome: dict[str, Any], module_dsn: str) -> None:
    ids = outcome["many"]
    assert 5 == len(ids)
    assert ids[2] == ids[4]  # one idempotency key, one job
    assert [uuid.UUID(i) for i in ids[:4]] == sorted(uuid.UUID(i) for i in ids[:4])
    rows = {str(r["id"]): r for r in query(module_dsn, "SELECT * FROM jobs WHERE id = ANY(%s)",
                                           [uuid.UUID(i) for i in ids])}
    tag = outcome["tag"]
    assert [{"i": 0, "tag": tag}, {"fileName": "one.txt", "content": tag}, {"i": 2},
            {"i": 3}, {"i": 2}] == [rows[i]["payload"] for i in ids]
    assert ("helpers", (RUN_AT, 4)) == (
        rows[ids[0]]["queue"], (rows[ids[1]]["run_at"], rows[ids[1]]["max_attempts"]))
    assert [uuid.UUID(outcome["committed"])] == [r["parent"] for r in query(
        module_dsn, "SELECT parent FROM job_deps WHERE child = %s", uuid.UUID(ids[3]))]


def test_a_known_idempotency_key_returns_the_same_id(
        outcome: dict[str, Any], module_dsn: str) -> None:
    first, second = outcome["same_key"]
    assert first == second
    assert 1 == len(query(module_dsn, "SELECT id FROM jobs WHERE idempotency_key = %s",
                          f"{outcome['tag']}-key"))


def test_a_held_unique_key_returns_the_holders_id(
        outcome: dict[str, Any], module_dsn: str) -> None:
    ids = outcome["same_unique"]
    assert 3 == len(ids) and 1 == len(set(ids))
    assert 1 == len(query(module_dsn, "SELECT id FROM jobs WHERE unique_key LIKE %s",
                          f"{outcome['tag']}-unique@%"))


def test_a_refusal_of_the_function_is_the_drivers_own_exception(
        outcome: dict[str, Any]) -> None:
    expected = ERRORS[outcome["driver"].split("-")[0]]
    assert expected == outcome["error"]["class"]
    assert (f"scheduler.enqueue: queue: expected 1 to 64 of A-Z a-z 0-9 _ . -, found "
            f"'{BAD_QUEUE}'") in outcome["error"]["message"]


# -- run by a worker ----------------------------------------------------------------------


def test_a_job_enqueued_through_sqlalchemy_with_its_struct_runs_once_committed(
        db_dsn: str, app_role: str, tmp_path: Path,
        start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    coordinator = start_coordinator(env=HANDLERS)
    start_worker(coordinator.url, slots=1, env=HANDLERS)
    tally = tmp_path / "tally.jsonl"
    engine = create_engine(sqlalchemy_url(as_role(db_dsn, app_role)))
    try:
        with Session(engine) as session, session.begin():
            job_id = enqueue(session, "tally", TallyPayload(n=5, path=str(tally)))
    finally:
        engine.dispose()

    def succeeded() -> dict[str, Any] | None:
        row = job(db_dsn, str(job_id))
        return row if row is not None and row["status"] == "Succeeded" else None

    done = wait_until(succeeded, timeout=30, what=f"job {job_id} Succeeded")
    assert ({"n": 5}, 1) == (done["result"], done["attempts"])
    assert [f'{{"n":5,"path":"{tally}"}}'] == tally.read_text().splitlines()
