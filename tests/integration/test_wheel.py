"""The wheel (issue 13's acceptance): built with ``python -m build`` from a copy of the
sources (so the checkout gets no build/ folder), installed into a fresh virtual
environment outside the checkout next to the PyPI package ``schema``. Both import,
nothing but ``scheduler_core`` comes from the wheel, ``scheduler migrate`` applies the
migrations shipped in it, and ``scheduler up`` started from that environment in a
folder outside the checkout serves the API and the dashboard, runs a job on its
workers and stops on SIGINT with exit code 0.

One build and one install per module (``installed``), one ``scheduler up`` for the
``up`` tests; the last test stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from scheduler_core.schema.wire import TERMINAL
from tests.support import free_port, submit, wait_until

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "web" / "static"
LAYER_FOLDERS = ("web", "handlers", "runtime", "actors", "command", "client")

pytestmark = pytest.mark.slow


def clean_env(**env: str) -> dict[str, str]:
    """This process's environment without what would point a child at the checkout or
    configure it (PYTHONPATH, the virtual environment, DATABASE_URL, every SCHEDULER_*
    setting), plus ``env``."""
    kept = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL", "COORDINATOR_URL")
            and not k.startswith("SCHEDULER_")}
    return {**kept, **env}


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=clean_env(**env), text=True,
                          capture_output=True, timeout=600, check=False)


def files_under(folder: Path, pattern: str = "*") -> set[str]:
    """Every file below ``folder`` (at any depth) matching ``pattern``, as POSIX paths
    relative to it (no byte code)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob(pattern)
            if p.is_file() and "__pycache__" not in p.parts}


def copy_sources(target: Path) -> Path:
    """pyproject.toml, the readme and the folders pyproject maps into the package:
    all a wheel is built from, and nothing of the checkout's build state."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target.mkdir()
    for name in ("pyproject.toml", project["project"]["readme"]):
        shutil.copy2(ROOT / name, target / name)
    for folder in project["tool"]["setuptools"]["package-dir"].values():
        shutil.copytree(ROOT / folder, target / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


class Installed(NamedTuple):
    wheel: Path
    venv: Path
    python: Path
    scheduler: Path
    workdir: Path  # empty, outside the checkout: the commands run here


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    assert ROOT not in tmp.parents
    source = copy_sources(tmp / "src")
    dist = tmp / "dist"
    built = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(source)],
                cwd=tmp)
    assert 0 == built.returncode, built.stderr[-3000:]
    (wheel,) = dist.glob("scheduler_core-*.whl")

    venv = tmp / "venv"
    created = run([sys.executable, "-m", "venv", str(venv)], cwd=tmp)
    assert 0 == created.returncode, created.stderr[-3000:]
    python = venv / "bin" / "python"
    pip = run([str(python), "-m", "pip", "install", "--quiet", str(wheel), "schema"], cwd=tmp)
    assert 0 == pip.returncode, pip.stderr[-3000:]
    workdir = tmp / "work"
    workdir.mkdir()
    return Installed(wheel, venv, python, venv / "bin" / "scheduler", workdir)


def test_the_wheel_holds_only_scheduler_core(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as z:
        tops = {name.split("/", 1)[0] for name in z.namelist()}
    metadata = {t for t in tops if t.startswith("scheduler_core-") and t.endswith(".dist-info")}
    assert (1, {"scheduler_core"}) == (len(metadata), tops - metadata)


@pytest.mark.parametrize(("package", "folder", "pattern"), [
    ("schema", "migrations", "*.sql"), ("schema", "queries", "*.sql"), ("web", "static", "*")])
def test_the_wheel_holds_every_data_file(installed: Installed, package: str, folder: str,
                                         pattern: str) -> None:
    prefix = f"scheduler_core/{package}/{folder}/"
    with zipfile.ZipFile(installed.wheel) as z:
        shipped = {n.removeprefix(prefix) for n in z.namelist()
                   if n.startswith(prefix) and not n.endswith("/")
                   and Path(n).match(pattern)}
    expected = files_under(ROOT / package / folder, pattern)
    assert expected  # the comparison means something
    assert expected == shipped


def test_scheduler_core_and_the_pypi_schema_both_import(installed: Installed) -> None:
    probe = run([str(installed.python), "-c",
                 "import schema, scheduler_core, scheduler_core.schema.wire, "
                 "scheduler_core.handlers\n"
                 "from importlib import resources\n"
                 "print(schema.Schema(int).validate(1), "
                 "resources.files('scheduler_core.web').joinpath('static/app.js').is_file(), "
                 f"scheduler_core.schema.wire.__file__.startswith({str(installed.venv)!r}), "
                 f"schema.__file__.startswith({str(installed.venv)!r}))"],
                cwd=installed.workdir)
    assert ("1 True True True", "") == (probe.stdout.strip(), probe.stderr.strip())


def test_no_layer_folder_is_importable_by_its_bare_name(installed: Installed) -> None:
    probe = run([str(installed.python), "-c",
                 "import importlib.util\n"
                 f"print([n for n in {list(LAYER_FOLDERS)!r} "
                 "if importlib.util.find_spec(n) is not None])"],
                cwd=installed.workdir)
    assert ("[]", "") == (probe.stdout.strip(), probe.stderr.strip())


def test_scheduler_help_lists_the_commands(installed: Installed) -> None:
    helped = run([str(installed.scheduler), "--help"], cwd=installed.workdir)
    assert 0 == helped.returncode, helped.stderr
    assert "migrate" in helped.stdout and "up" in helped.stdout


def test_scheduler_migrate_applies_the_shipped_migrations(
    installed: Installed, empty_database: str
) -> None:
    migrated = run([str(installed.scheduler), "migrate"], cwd=installed.workdir,
                   DATABASE_URL=empty_database)
    assert 0 == migrated.returncode, migrated.stderr[-3000:]
    with psycopg.connect(empty_database) as conn:
        row = conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone()
    assert (True,) == row


# -- scheduler up from the wheel ---------------------------------------------------------


@pytest.fixture(scope="module")
def up_database(pg_admin_dsn: str) -> Iterator[str]:
    """A database with no migrations applied, for the module's ``scheduler up`` (which
    applies the wheel's own)."""
    name = f"sc_wheel_up_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    yield make_conninfo(pg_admin_dsn, dbname=name)
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


class Up(NamedTuple):
    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def up(installed: Installed, up_database: str) -> Iterator[Up]:
    """``scheduler up`` of the wheel's environment, in its empty working folder, on a
    free loopback port with one worker; ready when /health/ready answers 200."""
    port = free_port()
    log_path = installed.workdir.parent / "up.log"
    log: IO[bytes] = open(log_path, "wb")  # closed once the process has ended
    popen = subprocess.Popen(
        [str(installed.scheduler), "up", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=installed.workdir, stdout=log, stderr=subprocess.STDOUT,
        env=clean_env(DATABASE_URL=up_database, SCHEDULER_DRAIN_TIMEOUT_SECONDS="5"))
    started = Up(popen, f"http://127.0.0.1:{port}", log_path)
    try:
        def ready() -> bool:
            if popen.poll() is not None:
                raise AssertionError(f"up exited {popen.returncode}:\n"
                                     + started.output()[-3000:])
            return ("scheduler-core is up" in started.output()
                    and httpx.get(started.url + "/health/ready", timeout=2).status_code == 200)
        try:
            wait_until(ready, timeout=120, what="scheduler up to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlog:\n{started.output()[-3000:]}") from None
        yield started
    finally:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)
        log.close()


def test_up_answers_ready(up: Up) -> None:
    resp = httpx.get(up.url + "/health/ready", timeout=10)
    assert (200, "ready") == (resp.status_code, resp.json()["status"])


def test_up_serves_the_dashboard_page(up: Up) -> None:
    resp = httpx.get(up.url + "/", timeout=10)
    assert 200 == resp.status_code
    assert resp.headers["content-type"].startswith("text/html")
    assert (STATIC / "index.html").read_text() == resp.text


@pytest.mark.parametrize("name", sorted(files_under(STATIC)))
def test_up_serves_every_static_file(up: Up, name: str) -> None:
    resp = httpx.get(f"{up.url}/dashboard/static/{name}", timeout=10)
    assert 200 == resp.status_code
    assert (STATIC / name).read_bytes() == resp.content
    if name.endswith(".js"):
        assert resp.headers["content-type"].startswith("text/javascript")


def test_a_noop_job_submitted_to_up_runs_to_succeeded(up: Up) -> None:
    job = submit(up.url, "noop")

    def finished() -> str | None:
        found = str(httpx.get(f"{up.url}/api/jobs/{job['id']}", timeout=5).json()["status"])
        return found if found in TERMINAL else None
    assert "Succeeded" == wait_until(finished, timeout=60, what="the noop job to finish")


def test_sigint_stops_up_with_exit_code_0(up: Up) -> None:
    """Last in the module: the other ``up`` tests use the process this one stops."""
    up.popen.send_signal(signal.SIGINT)
    wait_until(lambda: up.popen.poll() is not None, timeout=60, what="up to exit")
    assert 0 == up.popen.returncode, up.output()[-3000:]
