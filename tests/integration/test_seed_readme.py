"""The curls of the seed README's "API Usage" section, run with the real ``curl``
binary against a real coordinator, exactly as written except for the address (and
``<jobId>``, filled in with a real job).

The commands are read from the README itself, so the test follows the document.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import Coordinator, submit

SEED_README = Path("/work/shared/seed/scheduler-core-README.md")
README_BASE = "http://localhost:5000"
Curls = dict[str, list[list[str]]]

pytestmark = [
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary"),
    pytest.mark.skipif(not SEED_README.exists(), reason=f"needs {SEED_README}"),
]


def readme_curls() -> Curls:
    """``{"Submit job": [argv, ...], ...}`` from the API Usage section."""
    text = SEED_README.read_text()
    section = text.split("## API Usage", 1)[1].split("\n## ", 1)[0]
    out: Curls = {}
    for heading, body in re.findall(r"^### (.+?)\n(.*?)(?=^### |\Z)", section, re.M | re.S):
        for block in re.findall(r"```bash\n(.*?)```", body, re.S):
            pending = ""
            for line in block.replace("\\\n", " ").splitlines(keepends=True):
                pending += line
                try:  # a quoted argument (the -d JSON) may span lines
                    argv = shlex.split(pending)
                except ValueError:
                    continue
                pending = ""
                if argv and argv[0] == "curl":
                    out.setdefault(heading.strip(), []).append(argv)
            assert not pending, f"unbalanced quotes in the README under {heading!r}"
    return out


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def curls() -> Curls:
    return readme_curls()


def run_curl(argv: list[str], api: Coordinator, job_id: str | None = None) -> tuple[int, Any]:
    """Run one README curl against ``api``; return (HTTP status, decoded JSON body)."""
    args = [a.replace(README_BASE, api.url) for a in argv]
    if job_id is not None:
        args = [a.replace("<jobId>", job_id) for a in args]
    assert "curl" == args[0]
    done = subprocess.run([args[0], "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                           *args[1:]], capture_output=True, text=True, timeout=20, check=False)
    assert 0 == done.returncode, done.stderr
    body, status = done.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


# -- the tests ---------------------------------------------------------------------------


def test_the_readme_has_the_seven_curls_this_module_runs(
        curls: Curls) -> None:
    assert {"Submit job": 1, "Schedule recurring job": 1, "Query job": 2,
            "Cancel or retry": 2, "Seed demo job": 1} == {k: len(v) for k, v in curls.items()}


def test_the_submit_curl_creates_the_job_as_written(
        api: Coordinator, curls: Curls) -> None:
    status, job = run_curl(curls["Submit job"][0], api)
    assert 201 == status
    assert ("http_get", {"url": "https://example.com"}, "2025-01-01T00:00:00Z", 3, 30,
            "example-http-1") == (job["type"], job["payload"], job["runAt"],
                                  job["maxAttempts"], job["timeoutSeconds"],
                                  job["idempotencyKey"])
    assert "Pending" == job["status"]  # its runAt is in the past: due at once


def test_the_recurring_curl_creates_a_schedule_every_five_minutes(
        api: Coordinator, curls: Curls) -> None:
    status, schedule = run_curl(curls["Schedule recurring job"][0], api)
    next_fire = dt.datetime.fromisoformat(schedule["nextFireAt"].replace("Z", "+00:00"))
    assert 201 == status
    assert ("schedule", "*/5 * * * *", "cpu", {"durationSeconds": 2}, "cpu-every-5min") == (
        schedule["kind"], schedule["cron"], schedule["type"], schedule["payload"],
        schedule["idempotencyKey"])
    assert (0, 0) == (next_fire.minute % 5, next_fire.second)


def test_the_status_query_curl_lists_running_jobs_only(
        api: Coordinator, http: httpx.Client, module_dsn: str, curls: Curls) -> None:
    running = submit(http)
    submit(http)  # Pending: must not be listed
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'Running' WHERE id = %s", (running["id"],))
    status, page = run_curl(curls["Query job"][0], api)
    assert 200 == status
    assert [running["id"]] == [j["id"] for j in page["items"]]
    assert ["Running"] == [j["status"] for j in page["items"]]
    assert page["nextCursor"] is None


def test_the_status_query_curl_pages_at_take(
        api: Coordinator, http: httpx.Client, module_dsn: str, curls: Curls) -> None:
    ids = [submit(http)["id"] for _ in range(26)]
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET status = 'Running' WHERE id = ANY(%s)", (ids,))
    status, page = run_curl(curls["Query job"][0], api)
    assert (200, 25) == (status, len(page["items"]))
    assert page["nextCursor"] is not None


def test_the_show_curl_returns_the_job_with_its_runs(
        api: Coordinator, http: httpx.Client, curls: Curls) -> None:
    job = submit(http)
    status, shown = run_curl(curls["Query job"][1], api, job["id"])
    assert (200, job["id"], "noop", []) == (status, shown["id"], shown["type"], shown["runs"])


def test_the_cancel_curl_cancels_a_pending_job(
        api: Coordinator, http: httpx.Client, curls: Curls) -> None:
    job = submit(http)
    status, cancelled = run_curl(curls["Cancel or retry"][0], api, job["id"])
    assert (200, "Cancelled") == (status, cancelled["status"])


def test_the_retry_curl_requeues_a_cancelled_job_with_the_reason(
        api: Coordinator, http: httpx.Client, curls: Curls) -> None:
    job = submit(http)
    http.post(f"/api/jobs/{job['id']}/cancel").raise_for_status()
    status, retried = run_curl(curls["Cancel or retry"][1], api, job["id"])
    assert (200, "Pending", "manual") == (status, retried["status"], retried["retryReason"])


def test_the_seed_curl_creates_a_demo_job_of_every_built_in_type(
        api: Coordinator, curls: Curls) -> None:
    status, body = run_curl(curls["Seed demo job"][0], api)
    assert 201 == status
    assert ["cpu", "file_write", "http_get", "noop", "sleep"] == sorted(
        j["type"] for j in body["items"])
    assert {"Pending"} == {j["status"] for j in body["items"]}
