"""Custom job types end to end: a package declaring an entry point, and a module named
with ``--handlers``; the coordinator validates them, the workers' job processes run
them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import ROOT, Coordinator, Worker, submit_response, wait_until

EXAMPLE = ROOT / "examples" / "scheduler-example-handlers"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example package pip-installed into a folder of its own, for PYTHONPATH.

    Installed with pip like any distribution (its entry point is found through its
    dist-info), but not into the shared project venv, which other test runs use at the
    same time. Built from a copy, so the build leaves nothing in the source tree.
    """
    tmp = tmp_path_factory.mktemp("example")
    source, site = tmp / "src", tmp / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=120)
    assert 0 == done.returncode, done.stdout + done.stderr
    return str(site)


def with_path(site: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH"))
                                          if p)}


def wait_finished(url: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{url}/api/jobs/{job_id}", timeout=5).json()
        return job if job["status"] in ("Succeeded", "DeadLetter", "Cancelled") else None
    return wait_until(finished, timeout=20, what=f"job {job_id} to finish")


def test_an_installed_package_job_type_runs_with_its_defaults(
        example_site: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    coordinator = start_coordinator(env=with_path(example_site))
    start_worker(coordinator.url, env=with_path(example_site))

    greet = submit_response(coordinator.url, "greet", {"name": "Ada"})
    later = submit_response(coordinator.url, "greet_later", {"name": "Bo", "delaySeconds": 0.05})

    assert (201, 2, 10) == (greet.status_code, greet.json()["maxAttempts"],
                            greet.json()["timeoutSeconds"])
    done = wait_finished(coordinator.url, greet.json()["id"])
    assert ("Succeeded", {"greeting": "hello, Ada"}) == (done["status"], done["result"])
    done = wait_finished(coordinator.url, later.json()["id"])
    assert ("Succeeded", {"greeting": "hello, Bo"}) == (done["status"], done["result"])


BAD_GREET_PAYLOADS: list[tuple[dict[str, Any], str]] = [
    ({}, "payload.name"),
    ({"name": 5}, "payload.name"),
    ({"name": ""}, "payload.name"),
    ({"name": "Ada", "nom": "Ada"}, "payload.nom"),
]


def test_a_bad_payload_for_a_package_job_type_is_a_400_naming_the_field(
        example_site: str, start_coordinator: Callable[..., Coordinator]) -> None:
    coordinator = start_coordinator(env=with_path(example_site))

    answers = [submit_response(coordinator.url, "greet", p)
               for p, _ in BAD_GREET_PAYLOADS]

    assert [(400, field) for _, field in BAD_GREET_PAYLOADS] == [
        (r.status_code, r.json()["field"]) for r in answers]
    assert [] == httpx.get(coordinator.url + "/api/jobs", timeout=5).json()["items"]


def test_a_module_named_with_handlers_is_loaded_by_coordinator_and_worker(
        start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker]) -> None:
    coordinator = start_coordinator(extra=["--handlers", "tests.plugin_handlers"])
    start_worker(coordinator.url, env={"SCHEDULER_HANDLERS": "tests.plugin_handlers"})

    job = submit_response(coordinator.url, "shout", {"text": "hi"})

    assert (201, 1) == (job.status_code, job.json()["maxAttempts"])
    done = wait_finished(coordinator.url, job.json()["id"])
    assert ("Succeeded", {"text": "HI", "attempt": 1}) == (done["status"], done["result"])


def test_a_handlers_module_that_does_not_load_stops_the_command_with_one_line(
        db_dsn: str) -> None:
    for command in ("coordinator", "worker"):
        done = subprocess.run(
            [sys.executable, "-m", "scheduler_core.command.cli", command, "--handlers", "tests.no_such_module"],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
            env={**os.environ, "DATABASE_URL": db_dsn, "SCHEDULER_LOG_FORMAT": "json"})
        assert 1 == done.returncode, (command, done.stderr)
        assert ("scheduler: cannot load job types from handler module 'tests.no_such_module': "
                "ModuleNotFoundError: No module named 'tests.no_such_module'"
                ) == done.stderr.strip().splitlines()[-1], command


def test_without_the_module_the_job_type_is_unknown(coordinator: Coordinator) -> None:
    response = submit_response(coordinator.url, "shout", {"text": "hi"})
    assert (400, "type") == (response.status_code, response.json()["field"])
