"""The ``scheduler`` client commands (``submit``, ``jobs ...``, ``schedules ...``)
against a real coordinator (one for the module). A worker (started by the first test
that needs one) takes only the queue ``cli-wait``, so the other tests' jobs stay
where they are.

A few tests run the command as a real process (exit status, stdout, stderr, the entry
point); the rest call ``command.cli.main``, the function the ``scheduler`` command
runs, in this process: the same code, without a second of interpreter start-up each.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support import ROOT, CliRun, Coordinator, Worker, free_port, run_cli, submit, wait_until

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


WAIT_QUEUE = "cli-wait"


@pytest.fixture(scope="module")
def worker(api: Coordinator) -> Iterator[Worker]:
    w = Worker(api.url, slots=2, extra=["--queues", WAIT_QUEUE],
               env={"SCHEDULER_CLAIM_WAIT_SECONDS": "2"})
    yield w
    w.stop()


Run = CliRun


@pytest.fixture
def scheduler(capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Run ``scheduler ARGS`` in this process against ``url``."""
    def run(*args: str, url: str) -> Run:
        return run_cli(args, url, capsys, monkeypatch)
    return run


def scheduler_process(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run ``scheduler ARGS`` as a real process against ``url``."""
    env = {**os.environ, "COORDINATOR_URL": url}
    env.pop("DATABASE_URL", None)  # the client commands must not need it
    return subprocess.run([sys.executable, "-m", "scheduler_core.command.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)


Scheduler = Callable[..., Run]


# -- as real processes -------------------------------------------------------------------


def test_submit_as_a_process_prints_the_new_job_as_a_table(api: Coordinator) -> None:
    done = scheduler_process("submit", "noop", url=api.url)
    lines = done.stdout.splitlines()
    assert (0, "") == (done.returncode, done.stderr)
    assert "created" == lines[0]
    assert ["ID", "TYPE", "STATUS", "QUEUE", "ATTEMPTS", "RUN", "AT", "LAST", "ERROR"] == (
        lines[1].split())
    assert re.fullmatch(rf"{UUID}\s+noop\s+Pending\s+default\s+0\s+\S+", lines[2])


def test_bad_arguments_to_the_process_exit_2_with_a_message_on_stderr() -> None:
    done = scheduler_process("submit", "noop", "--max-attempts", "x", url="http://127.0.0.1:1")
    assert (2, "") == (done.returncode, done.stdout)
    assert ("scheduler: error: argument --max-attempts: expected a whole number, found 'x'"
            == done.stderr.splitlines()[-1])


def test_an_unreachable_coordinator_exits_the_process_1_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = scheduler_process("jobs", "list", url=url)
    assert (1, "") == (done.returncode, done.stdout)
    assert done.stderr.startswith(f"scheduler: cannot reach the coordinator at {url}")
    assert 1 == len(done.stderr.splitlines())


def test_a_closed_stdout_is_not_a_traceback(api: Coordinator, http: httpx.Client) -> None:
    for _ in range(12):
        submit(http)
    env = {**os.environ, "COORDINATOR_URL": api.url}
    with subprocess.Popen([sys.executable, "-m", "scheduler_core.command.cli", "jobs", "list", "--json",
                           "--take", "12"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # the reader went away, as with ``| head -0``
        err = p.stderr.read().decode()
        p.wait(timeout=30)
    assert "" == err


# -- in this process ---------------------------------------------------------------------


def test_submit_json_prints_the_job_as_json(api: Coordinator, scheduler: Scheduler) -> None:
    done = scheduler("submit", "cpu", "--payload", '{"durationSeconds": 1}', "--max-attempts",
                     "2", "--timeout", "9", "--queue", "cli", "--priority", "-3", "--json",
                     url=api.url)
    job = json.loads(done.stdout)
    assert 0 == done.returncode
    assert ("cpu", {"durationSeconds": 1}, 2, 9, "cli", -3) == (
        job["type"], job["payload"], job["maxAttempts"], job["timeoutSeconds"], job["queue"],
        job["priority"])


def test_submit_with_run_at_and_key_sends_them(api: Coordinator, scheduler: Scheduler) -> None:
    key = f"cli-{uuid.uuid4()}"
    done = scheduler("submit", "noop", "--run-at", "2999-01-01T00:00:00Z", "--key", key,
                     "--json", url=api.url)
    job = json.loads(done.stdout)
    assert ("Scheduled", "2999-01-01T00:00:00Z", key) == (job["status"], job["runAt"],
                                                          job["idempotencyKey"])


def test_submit_with_a_known_key_says_it_exists(api: Coordinator, scheduler: Scheduler) -> None:
    key = f"cli-{uuid.uuid4()}"
    scheduler("submit", "noop", "--key", key, url=api.url)
    done = scheduler("submit", "noop", "--key", key, url=api.url)
    assert (0, "exists (idempotency key)") == (done.returncode, done.stdout.splitlines()[0])


def test_submit_with_cron_prints_the_schedule(api: Coordinator, scheduler: Scheduler) -> None:
    done = scheduler("submit", "noop", "--cron", "*/10 * * * *", "--timezone", "Europe/Paris",
                     url=api.url)
    lines = done.stdout.splitlines()
    assert 0 == done.returncode
    assert ["SCHEDULE", "CRON", "TIMEZONE", "TYPE", "NEXT", "FIRE"] == lines[1].split()
    assert re.fullmatch(rf"{UUID}\s+\*/10 \* \* \* \*\s+Europe/Paris\s+noop\s+\S+", lines[2])


def test_jobs_list_prints_the_newest_jobs_first(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    ids = [submit(http, queue=queue)["id"] for _ in range(3)]
    done = scheduler("jobs", "list", "--queue", queue, url=api.url)
    assert 0 == done.returncode
    assert list(reversed(ids)) == [line.split()[0] for line in done.stdout.splitlines()[1:]]


def test_jobs_list_prints_the_cursor_of_the_next_page(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    ids = [submit(http, queue=queue)["id"] for _ in range(3)]
    first = scheduler("jobs", "list", "--queue", queue, "--take", "2", url=api.url)
    rest = scheduler("jobs", "list", "--queue", queue, "--take", "2", "--cursor", ids[1],
                     url=api.url)
    assert f"more: --cursor {ids[1]}" == first.stdout.splitlines()[-1]
    assert [ids[0]] == [line.split()[0] for line in rest.stdout.splitlines()[1:]]


def test_jobs_list_json_prints_the_page(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    job = submit(http, queue=queue)
    job.pop("created")  # the submit's answer says whether it made the job; a list does not
    done = scheduler("jobs", "list", "--queue", queue, "--json", url=api.url)
    assert {"items": [job], "nextCursor": None} == json.loads(done.stdout)


def test_jobs_show_prints_the_job(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    job = submit(http)
    done = scheduler("jobs", "show", job["id"], "--json", url=api.url)
    shown = json.loads(done.stdout)
    assert (0, job["id"], []) == (done.returncode, shown["id"], shown["runs"])


def test_jobs_cancel_cancels_the_job(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    job = submit(http)
    done = scheduler("jobs", "cancel", job["id"], url=api.url)
    assert 0 == done.returncode
    assert re.fullmatch(rf"{job['id']}\s+noop\s+Cancelled\s+.*", done.stdout.splitlines()[1])


def test_jobs_retry_requeues_the_job_with_the_reason(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    job = submit(http)
    scheduler("jobs", "cancel", job["id"], url=api.url)
    done = scheduler("jobs", "retry", job["id"], "--reason", "x", "--json", url=api.url)
    retried = json.loads(done.stdout)
    assert (0, "Pending", "x") == (done.returncode, retried["status"], retried["retryReason"])


@pytest.mark.parametrize(("args", "complaint"), [
    (["submit", "noop", "--max-attempts", "x"], "--max-attempts"),
    (["submit", "noop", "--max-attempts", "0"], "--max-attempts"),
    (["submit", "noop", "--payload", "[1]"], "--payload"),
    (["submit", "noop", "--payload", "{bad"], "--payload"),
    (["submit", "noop", "--priority", "high"], "--priority"),
    (["submit"], "type"),
    (["frobnicate"], "frobnicate"),
    (["jobs", "frobnicate"], "frobnicate"),
    (["jobs", "show", "not-an-id"], "not-an-id"),
    (["jobs", "show", "../../health"], "../../health"),
    (["jobs", "list", "--take", "many"], "--take"),
    (["jobs", "list", "--cursor", "page-2"], "--cursor"),
    (["submit", "noop", "--wait-timeout", "5"], "--wait-timeout: only with --wait"),
    (["submit", "noop", "--wait", "--wait-timeout", "0"], "--wait-timeout"),
    (["submit", "noop", "--wait", "--wait-timeout", "soon"], "--wait-timeout"),
    (["submit", "noop", "--wait", "--cron", "@daily"], "--wait: not with --cron"),
    (["schedules"], "schedules_command"),
    (["schedules", "frobnicate"], "frobnicate"),
    (["schedules", "show", "not-an-id"], "expected a schedule id (a UUID)"),
    (["schedules", "delete"], "id"),
    (["schedules", "list", "--take", "0"], "--take"),
], ids=["max_attempts_text", "max_attempts_zero", "payload_array", "payload_not_json",
        "priority_text", "type_missing", "unknown_command", "unknown_jobs_command",
        "id_not_a_uuid", "id_a_path", "take_text", "cursor_not_a_uuid",
        "wait_timeout_without_wait", "wait_timeout_zero", "wait_timeout_text",
        "wait_with_cron", "schedules_command_missing", "unknown_schedules_command",
        "schedule_id_not_a_uuid", "schedule_id_missing", "schedules_take_zero"])
def test_bad_arguments_exit_2_with_a_message_on_stderr(
        scheduler: Scheduler, args: list[str], complaint: str) -> None:
    done = scheduler(*args, url="http://127.0.0.1:1")
    assert (2, "") == (done.returncode, done.stdout)
    assert done.stderr.splitlines()[-1].startswith("scheduler: error:")
    assert complaint in done.stderr.splitlines()[-1]


def test_an_api_error_exits_1_naming_the_field(api: Coordinator, scheduler: Scheduler) -> None:
    done = scheduler("submit", "launch_rockets", url=api.url)
    assert (1, "") == (done.returncode, done.stdout)
    assert done.stderr.startswith("scheduler: HTTP 400: unknown job type 'launch_rockets'")
    assert done.stderr.rstrip().endswith("(field: type)")


def test_an_invalid_payload_exits_1_naming_the_payload_field(
        api: Coordinator, scheduler: Scheduler) -> None:
    done = scheduler("submit", "cpu", "--payload", '{"durationSeconds": -1}', url=api.url)
    assert 1 == done.returncode
    assert done.stderr.rstrip().endswith("(field: payload.durationSeconds)")


def test_an_unknown_job_exits_1_with_the_404(api: Coordinator, scheduler: Scheduler) -> None:
    done = scheduler("jobs", "show", str(uuid.uuid4()), url=api.url)
    assert 1 == done.returncode
    assert done.stderr.startswith("scheduler: HTTP 404: no job with id")


def test_cancelling_a_finished_job_exits_1_with_the_409(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    job = submit(http)
    scheduler("jobs", "cancel", job["id"], url=api.url)
    done = scheduler("jobs", "cancel", job["id"], url=api.url)
    assert 1 == done.returncode
    assert done.stderr.startswith(f"scheduler: HTTP 409: job {job['id']} is Cancelled")


# -- submit --wait -----------------------------------------------------------------------


def test_submit_wait_as_a_process_exits_0_once_the_job_succeeded(
        api: Coordinator, worker: Worker) -> None:
    done = scheduler_process("submit", "noop", "--queue", WAIT_QUEUE, "--wait", url=api.url)
    lines = done.stdout.splitlines()
    job_id = lines[2].split()[0]
    assert (0, "created") == (done.returncode, lines[0])
    assert re.fullmatch(rf"{job_id}\s+noop\s+Succeeded\s+{WAIT_QUEUE}\s+1\s+\S+", lines[2])
    assert re.fullmatch(rf"job {job_id} Succeeded \(attempt 1/3\) \d+\.\ds",
                        done.stderr.splitlines()[-1])


def test_submit_wait_prints_one_progress_line_per_status_change(
        api: Coordinator, worker: Worker, scheduler: Scheduler) -> None:
    done = scheduler("submit", "sleep", "--payload", '{"seconds": 0.3}', "--queue", WAIT_QUEUE,
                     "--wait", url=api.url)
    statuses = [line.split()[2] for line in done.stderr.splitlines()]
    assert 0 == done.returncode
    assert "Succeeded" == statuses[-1]
    assert len(statuses) == len(set(statuses))  # no repeats: one line per change


def test_submit_wait_exits_1_naming_the_error_of_a_dead_lettered_job(
        api: Coordinator, worker: Worker, scheduler: Scheduler) -> None:
    done = scheduler("submit", "fail", "--payload", '{"permanent": true}', "--max-attempts", "1",
                     "--queue", WAIT_QUEUE, "--wait", url=api.url)
    job_id = done.stdout.splitlines()[2].split()[0]
    assert 1 == done.returncode
    assert (f"scheduler: job {job_id} ended DeadLetter after 1 attempt(s): "
            "PermanentError: failed on purpose") == done.stderr.splitlines()[-1]


def test_submit_wait_json_prints_the_finished_job_only(
        api: Coordinator, worker: Worker, scheduler: Scheduler) -> None:
    done = scheduler("submit", "noop", "--queue", WAIT_QUEUE, "--wait", "--json", url=api.url)
    job = json.loads(done.stdout)
    assert (0, "Succeeded", ["Succeeded"]) == (
        done.returncode, job["status"], [r["outcome"] for r in job["runs"]])


def test_submit_wait_on_a_known_key_of_a_cancelled_job_exits_1(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    key = f"cli-{uuid.uuid4()}"
    job = submit(http, idempotencyKey=key, runAt="2999-01-01T00:00:00Z")
    http.post(f"/api/jobs/{job['id']}/cancel").raise_for_status()
    done = scheduler("submit", "noop", "--key", key, "--wait", url=api.url)
    assert (1, "exists (idempotency key)") == (done.returncode, done.stdout.splitlines()[0])
    assert f"scheduler: job {job['id']} ended Cancelled after 0 attempt(s)" == (
        done.stderr.splitlines()[-1])


def test_submit_wait_past_its_timeout_exits_1_saying_the_job_goes_on(
        api: Coordinator, scheduler: Scheduler) -> None:
    done = scheduler("submit", "noop", "--run-at", "2999-01-01T00:00:00Z", "--wait",
                     "--wait-timeout", "0.3", url=api.url)
    job_id = done.stdout.splitlines()[2].split()[0]
    assert 1 == done.returncode
    assert (f"scheduler: gave up waiting: job {job_id} did not finish within 0.3 s "
            f"(last status: Scheduled); it goes on (scheduler jobs show {job_id})"
            == done.stderr.splitlines()[-1])


# -- schedules ---------------------------------------------------------------------------


def new_schedule(http: httpx.Client, cron: str = "0 0 1 1 *") -> dict[str, Any]:
    return submit(http, cron=cron, queue=f"cli-{uuid.uuid4().hex[:8]}")


def test_schedules_list_prints_a_table_of_schedules(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    schedule = new_schedule(http)
    done = scheduler("schedules", "list", "--take", "500", url=api.url)
    lines = done.stdout.splitlines()
    assert 0 == done.returncode
    assert ["ID", "CRON", "TIMEZONE", "TYPE", "STATE", "NEXT", "FIRE", "LAST", "FIRED"] == (
        lines[0].split())
    row = next(line for line in lines if line.startswith(schedule["id"]))
    assert re.fullmatch(rf"{schedule['id']}\s+0 0 1 1 \*\s+UTC\s+noop\s+active\s+\S+", row)


def test_schedules_list_json_prints_the_items(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    schedule = new_schedule(http)
    done = scheduler("schedules", "list", "--take", "500", "--json", url=api.url)
    assert schedule["id"] in [s["id"] for s in json.loads(done.stdout)["items"]]


def test_schedules_show_prints_the_schedule(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    schedule = new_schedule(http)
    done = scheduler("schedules", "show", schedule["id"], "--json", url=api.url)
    shown = json.loads(done.stdout)
    assert (0, schedule["id"], []) == (done.returncode, shown["id"], shown["recentFires"])


def test_schedules_show_lists_the_recent_fires(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    schedule = new_schedule(http, cron="* * * * * *")
    try:
        wait_until(lambda: http.get(f"/api/schedules/{schedule['id']}").json()["recentFires"],
                   what="a fire")
        done = scheduler("schedules", "show", schedule["id"], url=api.url)
    finally:
        http.delete(f"/api/schedules/{schedule['id']}")
    lines = done.stdout.splitlines()
    assert (0, "") == (done.returncode, lines[2])
    assert ["JOB", "FIRE", "TIME", "STATUS", "CREATED"] == lines[3].split()
    assert re.fullmatch(rf"{UUID}\s+\S+\s+Pending\s+\S+", lines[4])


def test_schedules_pause_and_resume_print_the_new_state(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    schedule = new_schedule(http)
    paused = scheduler("schedules", "pause", schedule["id"], url=api.url)
    resumed = scheduler("schedules", "resume", schedule["id"], url=api.url)
    assert (0, 0) == (paused.returncode, resumed.returncode)
    assert "paused" == paused.stdout.splitlines()[1].split()[8]
    assert "active" == resumed.stdout.splitlines()[1].split()[8]


def test_schedules_delete_prints_the_id_and_the_schedule_is_gone(
        api: Coordinator, http: httpx.Client, scheduler: Scheduler) -> None:
    schedule = new_schedule(http)
    done = scheduler("schedules", "delete", schedule["id"], url=api.url)
    again = scheduler("schedules", "show", schedule["id"], url=api.url)
    assert (0, f"deleted {schedule['id']}") == (done.returncode, done.stdout.strip())
    assert 1 == again.returncode
    assert again.stderr.startswith(f"scheduler: HTTP 404: no schedule with id {schedule['id']}")
    assert again.stderr.rstrip().endswith("(field: id)")


def test_schedules_of_an_unreachable_coordinator_exit_1(scheduler: Scheduler) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = scheduler("schedules", "list", url=url)
    assert (1, "") == (done.returncode, done.stdout)
    assert done.stderr.startswith(f"scheduler: cannot reach the coordinator at {url}")


# -- queues ---------------------------------------------------------------------------------


def test_queues_pause_resume_and_limit_print_the_queue(
        api: Coordinator, scheduler: Scheduler) -> None:
    name = f"cli-q-{uuid.uuid4().hex[:8]}"
    paused = scheduler("queues", "pause", name, url=api.url)
    assert 0 == paused.returncode, paused.stderr
    assert ["QUEUE", "STATE", "LIMIT", "RUNNING", "WAITING"] == paused.stdout.split()[:5]
    assert re.search(rf"^{name}\s+paused\s+-\s+0\s+0$", paused.stdout, re.M), paused.stdout
    limited = scheduler("queues", "limit", name, "4", url=api.url)
    assert re.search(rf"^{name}\s+paused\s+4\s+0\s+0$", limited.stdout, re.M), limited.stdout
    resumed = scheduler("queues", "resume", name, "--json", url=api.url)
    assert (False, 4) == (json.loads(resumed.stdout)["paused"],
                          json.loads(resumed.stdout)["concurrencyLimit"])
    unlimited = scheduler("queues", "limit", name, "none", "--json", url=api.url)
    assert json.loads(unlimited.stdout)["concurrencyLimit"] is None
    listed = scheduler("queues", "list", "--json", url=api.url)
    assert name in [q["name"] for q in json.loads(listed.stdout)["items"]]
    shown = scheduler("queues", "show", name, url=api.url)
    assert re.search(rf"^{name}\s+active\s+-\s+0\s+0$", shown.stdout, re.M), shown.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("queues", "limit", "q1", "0"), "expected a number >= 1"),
    (("queues", "limit", "q1", "100001"), "expected at most 100000"),
    (("queues", "limit", "q1", "lots"), "lots"),
    (("queues", "pause", "bad name"), "expected a queue name"),
    (("queues", "limit", "q1"), "limit"),
    (("queues",), "queues_command"),
])
def test_bad_queue_arguments_exit_2_with_a_message(
        api: Coordinator, scheduler: Scheduler, args: tuple[str, ...], message: str) -> None:
    done = scheduler(*args, url=api.url)
    assert 2 == done.returncode
    assert message in done.stderr, done.stderr
    assert "" == done.stdout
