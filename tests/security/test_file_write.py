"""file_write against things planted in the data folder, end to end (issue 12, item 9):
a real coordinator, a real ``scheduler worker`` whose job processes run the handler,
real PostgreSQL.

Each job gets a 300 s timeout, so a write that blocks (a FIFO opened for writing waits
for a reader) would hold its job Running for minutes; every wait below polls with a
deadline far shorter than that. tests/unit/test_handlers.py covers the same cases on
the handler function itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Coordinator, Worker, job_row, wait_until

JOB_TIMEOUT = 300
WAIT = 60.0  # far less than JOB_TIMEOUT: a blocked write cannot end in time


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the worker's data folder, a folder outside it)."""
    base = tmp_path_factory.mktemp("file_write")
    data, outside = base / "data", base / "outside"
    data.mkdir()
    outside.mkdir()
    return data, outside


@pytest.fixture(scope="module")
def worker(api: Coordinator, folders: tuple[Path, Path]) -> Iterator[Worker]:
    w = Worker(api.url, env={"SCHEDULER_WORKER_DATA_DIR": str(folders[0])})
    try:
        yield w
    finally:
        w.stop()


def run_file_write(url: str, dsn: str, name: str, content: str) -> dict[str, Any]:
    """Submit a file_write job and wait until it ends; its row."""
    resp = httpx.post(url + "/api/jobs", timeout=10, json={
        "type": "file_write", "payload": {"fileName": name, "content": content},
        "timeoutSeconds": JOB_TIMEOUT, "maxAttempts": 1})
    assert 201 == resp.status_code, resp.text
    job_id = resp.json()["id"]
    return wait_until(
        lambda: (row := job_row(dsn, job_id))["status"] in ("Succeeded", "DeadLetter") and row,
        timeout=WAIT, what=f"file_write job {job_id} to end")


def test_a_planted_hard_link_is_replaced_and_the_file_outside_is_unchanged(
        api: Coordinator, module_dsn: str, worker: Worker, folders: tuple[Path, Path]) -> None:
    data, outside = folders
    secret = outside / "secret.txt"
    secret.write_text("keep me")
    os.link(secret, data / "linked.txt")
    row = run_file_write(api.url, module_dsn, "linked.txt", "overwritten")
    assert "Succeeded" == row["status"], row["last_error"]
    assert "keep me" == secret.read_text()
    assert "overwritten" == (data / "linked.txt").read_text()
    assert not os.path.samefile(secret, data / "linked.txt")


def test_a_planted_symlink_to_a_file_outside_is_refused(
        api: Coordinator, module_dsn: str, worker: Worker, folders: tuple[Path, Path]) -> None:
    data, outside = folders
    target = outside / "target.txt"
    target.write_text("keep me")
    (data / "link.txt").symlink_to(target)
    row = run_file_write(api.url, module_dsn, "link.txt", "overwritten")
    assert "DeadLetter" == row["status"]
    assert "inside the data folder" in row["last_error"]
    assert "keep me" == target.read_text()


@pytest.mark.parametrize(("plant", "kind"), [(os.mkfifo, "a FIFO"), (os.mkdir, "a folder")],
                         ids=["fifo", "folder"])
def test_a_planted_target_that_is_not_a_regular_file_fails_the_job_at_once(
        api: Coordinator, module_dsn: str, worker: Worker, folders: tuple[Path, Path],
        plant: Any, kind: str) -> None:
    """Dead-lettered (retrying cannot help) well before the job's 300 s timeout; a
    FIFO used to hold the job process until then."""
    data, _ = folders
    name = f"planted-{kind.split()[-1].lower()}"
    plant(data / name)
    row = run_file_write(api.url, module_dsn, name, "x")
    assert "DeadLetter" == row["status"]
    assert f"expected a regular file, found {kind} at {name!r}" in row["last_error"]
    assert 1 == row["attempts"]
