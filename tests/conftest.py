"""Shared fixtures.

The database is ``DATABASE_URL`` when set, else one embedded PostgreSQL started for the
session. Migrations run once into a template database; every integration test gets a
fresh database cloned from it (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from psycopg.conninfo import make_conninfo

from tests.support import OUTPUT, Coordinator, Worker, running_coordinator

_SESSION_TAG = uuid.uuid4().hex[:8]
_FAULTS = Path(__file__).resolve().parent / "faults"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/faults (kill -9, PostgreSQL restarts: minutes long) runs by ``just
    test-faults`` (SCHEDULER_FAULTS=1) or when named on the command line, never as
    part of the default run."""
    if collection_path != _FAULTS or os.environ.get("SCHEDULER_FAULTS") == "1":
        return None
    here = config.invocation_params.dir
    for arg in config.args:
        named = (here / arg.split("::")[0]).resolve()
        if named == _FAULTS or _FAULTS in named.parents:
            return None
    return True


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A DSN with the right to create databases."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from scheduler_core.command import pgserver

    with pgserver.temporary_server() as server:
        yield server.dsn_for("postgres")


def _admin_exec(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for s in statements:
            conn.execute(s.encode())


@pytest.fixture(scope="session")
def template_dsn(pg_admin_dsn: str) -> Iterator[str]:
    name = f"sc_template_{_SESSION_TAG}"
    _admin_exec(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    dsn = make_conninfo(pg_admin_dsn, dbname=name)

    from scheduler_core.command.compose import migrate

    trio.run(migrate, dsn)
    yield dsn
    _admin_exec(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fresh_database(pg_admin_dsn: str, template_dsn: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh migrated databases (most tests want exactly one: ``db_dsn``)."""
    created: list[str] = []
    template = psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"]

    def make() -> str:
        name = f"sc_test_{_SESSION_TAG}_{uuid.uuid4().hex[:10]}"
        _admin_exec(pg_admin_dsn, f"CREATE DATABASE {name} TEMPLATE {template}")
        created.append(name)
        return make_conninfo(pg_admin_dsn, dbname=name)

    yield make
    for name in created:
        _admin_exec(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_dsn(fresh_database: Callable[[], str]) -> str:
    return fresh_database()


@pytest.fixture(scope="module")
def module_dsn(pg_admin_dsn: str, template_dsn: str) -> Iterator[str]:
    """One migrated database shared by a module's tests (``db_dsn`` is one per test):
    for modules whose tests only add independent jobs and share one coordinator."""
    name = f"sc_module_{_SESSION_TAG}_{uuid.uuid4().hex[:10]}"
    template = psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"]
    _admin_exec(pg_admin_dsn, f"CREATE DATABASE {name} TEMPLATE {template}")
    yield make_conninfo(pg_admin_dsn, dbname=name)
    _admin_exec(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_database(pg_admin_dsn: str) -> Iterator[str]:
    """A database with no migrations applied."""
    name = f"sc_empty_{_SESSION_TAG}_{uuid.uuid4().hex[:10]}"
    _admin_exec(pg_admin_dsn, f"CREATE DATABASE {name}")
    yield make_conninfo(pg_admin_dsn, dbname=name)
    _admin_exec(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    """One coordinator shared by a module's tests, on ``module_dsn``. A module that needs
    other settings overrides it with ``running_coordinator(module_dsn, env=...)``."""
    with running_coordinator(module_dsn) as c:
        yield c


@pytest.fixture(scope="module")
def http(api: Coordinator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        yield client


@pytest.fixture
def processes() -> Iterator[list[Coordinator | Worker]]:
    """Every process a test starts goes here and is stopped after it."""
    started: list[Coordinator | Worker] = []
    yield started
    for p in reversed(started):
        p.stop(timeout=10)


@pytest.fixture
def start_coordinator(processes: list[Coordinator | Worker],
                      db_dsn: str) -> Callable[..., Coordinator]:
    def start(dsn: str | None = None, **kw: object) -> Coordinator:
        c = Coordinator(dsn or db_dsn, **kw)  # type: ignore[arg-type]
        processes.append(c)
        c.wait_healthy()
        return c
    return start


@pytest.fixture
def coordinator(start_coordinator: Callable[..., Coordinator]) -> Coordinator:
    return start_coordinator()


@pytest.fixture
def start_worker(processes: list[Coordinator | Worker]) -> Callable[..., Worker]:
    def start(coordinator_url: str, **kw: object) -> Worker:
        w = Worker(coordinator_url, **kw)  # type: ignore[arg-type]
        processes.append(w)
        return w
    return start


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="module")
def app_role(pg_admin_dsn: str) -> Iterator[str]:
    """A login role that is a member of scheduler_enqueuer and has nothing else, as an
    application's would be (migration 0016; roles belong to the server, so one serves
    every test database)."""
    from psycopg import sql

    name = f"sc_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        admin.execute(sql.SQL("GRANT scheduler_enqueuer TO {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
