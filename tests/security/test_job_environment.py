"""Issue 12, item 5: a job process sees no secret of the scheduler.

Job processes (the warm pool's children) get the ordinary variables plus what
SCHEDULER_JOB_ENV names; workers started by ``scheduler up`` get what a worker needs
(the worker token, a loopback COORDINATOR_URL, the settings), never DATABASE_URL nor
the admin, read or client tokens. Checked on real processes: a job that returns its
own environment, and ``/proc/<pid>/environ`` of the job process and of up's worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler_core.runtime import child_env
from scheduler_core.runtime.config import load_config
from scheduler_core.runtime.errors import ConfigError
from tests.security.up_process import Up, secret_settings
from tests.support import Coordinator, Worker, wait_until

HANDLERS = "tests.security.env_handlers"
SECRET_NAMES = ("DATABASE_URL", "SCHEDULER_ADMIN_TOKEN", "SCHEDULER_READ_TOKEN",
                "SCHEDULER_WORKER_TOKEN", "SCHEDULER_TOKEN")


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def leaked(environ: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """The secret settings whose value appears anywhere in ``environ`` (names or values)."""
    text = "\n".join(f"{k}={v}" for k, v in environ.items())
    return [name for name, value in secrets.items() if value in text]


def run_env_dump(url: str, admin_token: str) -> dict[str, Any]:
    """Submit an env_dump job and return its result once it succeeded."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        resp = client.post("/api/jobs", json={"type": "env_dump", "payload": {}})
        assert 201 == resp.status_code, resp.text
        job_id = resp.json()["id"]

        def finished() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
            return job if job["status"] in ("Succeeded", "DeadLetter") else None

        job = wait_until(finished, timeout=60, what="the env_dump job to finish")
    assert "Succeeded" == job["status"], job
    return dict(job["result"])


# -- the allow-lists, as functions ---------------------------------------------------------


def test_a_job_gets_the_ordinary_variables_and_the_named_ones_only() -> None:
    environ = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "TZ": "UTC", "MY_VAR": "1",
               "OTHER": "2", "DATABASE_URL": "postgresql://u:p@h/d",
               "SCHEDULER_ADMIN_TOKEN": "a" * 20, "SCHEDULER_LOG_LEVEL": "debug"}
    assert ({"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "TZ": "UTC", "MY_VAR": "1"}
            == child_env.job_env(environ, ["MY_VAR", "DATABASE_URL"]))


def test_a_worker_of_up_gets_its_settings_and_token_but_no_other_secret() -> None:
    environ = {"PATH": "/bin", "DATABASE_URL": "postgresql://u:p@h/d",
               "SCHEDULER_ADMIN_TOKEN": "a" * 20, "SCHEDULER_READ_TOKEN": "r" * 20,
               "SCHEDULER_TOKEN": "c" * 20, "SCHEDULER_WORKER_TOKEN": f"{'o' * 20},{'w' * 20}",
               "SCHEDULER_WORKER_SLOTS": "3", "MY_VAR": "1", "OTHER": "2"}
    assert ({"PATH": "/bin", "SCHEDULER_WORKER_SLOTS": "3", "MY_VAR": "1",
             "COORDINATOR_URL": "http://127.0.0.1:5000", "SCHEDULER_WORKER_TOKEN": "o" * 20}
            == child_env.worker_env(environ, coordinator_url="http://127.0.0.1:5000",
                                    worker_token="o" * 20, job_env_names=["MY_VAR"]))


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_job_env_naming_a_secret_is_a_config_error_naming_the_setting(name: str) -> None:
    with pytest.raises(ConfigError, match=f"SCHEDULER_JOB_ENV must not name {name}"):
        load_config({"SCHEDULER_JOB_ENV": f"HOME,{name}"})


def test_job_env_with_something_not_a_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SCHEDULER_JOB_ENV must be comma-separated"):
        load_config({"SCHEDULER_JOB_ENV": "A=B"})


# -- real processes -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_process_of_a_worker_with_every_secret_sees_none_of_them(
        processes: list[Coordinator | Worker], db_dsn: str) -> None:
    secrets = {k: v for k, v in secret_settings(db_dsn).items() if not k.startswith("_")}
    coordinator = Coordinator(db_dsn, env=secrets, extra=["--handlers", HANDLERS])
    processes.append(coordinator)
    coordinator.wait_healthy()
    worker = Worker(coordinator.url, env={
        **secrets, "SCHEDULER_HANDLERS": HANDLERS, "SCHEDULER_JOB_ENV": "SC_JOB_VISIBLE",
        "SC_JOB_VISIBLE": "for the job", "SC_JOB_UNLISTED": "not for the job"})
    processes.append(worker)
    result = run_env_dump(coordinator.url, secrets["SCHEDULER_ADMIN_TOKEN"])
    seen = result["environ"]
    assert [] == leaked(seen, secrets)
    assert "for the job" == seen.get("SC_JOB_VISIBLE")
    assert "SC_JOB_UNLISTED" not in seen
    assert "PATH" in seen
    # The job process lives on in the warm pool: the kernel's view of its environment.
    from_proc = proc_environ(result["pid"])
    assert [] == leaked(from_proc, secrets)
    assert "for the job" == from_proc.get("SC_JOB_VISIBLE")


@pytest.mark.slow
def test_a_worker_of_up_and_its_job_processes_get_no_database_url_nor_admin_or_read_token(
        db_dsn: str, tmp_path: Path, processes: list[Any],
        start_coordinator: Callable[..., Coordinator]) -> None:
    secrets = {k: v for k, v in secret_settings(db_dsn).items() if not k.startswith("_")}
    up = Up(tmp_path, {**secrets, "SCHEDULER_HANDLERS": HANDLERS})
    processes.append(up)
    up.wait_up()
    [worker_pid] = up.started("worker-1")
    environ = proc_environ(worker_pid)
    assert ["SCHEDULER_WORKER_TOKEN"] == leaked(environ, secrets)
    assert secrets["SCHEDULER_WORKER_TOKEN"] == environ["SCHEDULER_WORKER_TOKEN"]
    assert up.url == environ["COORDINATOR_URL"]
    # Loopback, so SCHEDULER_HTTP_ALLOW_PRIVATE=auto lets http_get reach private
    # addresses: up says so at start (issue 12, item 10).
    [said] = [e for e in up.events() if e.get("event") == "http_private_allowed"]
    assert up.url == said["coordinator_url"]
    result = run_env_dump(up.url, secrets["SCHEDULER_ADMIN_TOKEN"])
    assert [] == leaked(result["environ"], secrets)
    assert [] == leaked(proc_environ(result["pid"]), secrets)
