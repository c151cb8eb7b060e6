"""``scheduler jobs list|retry|cancel|delete`` with the search filter, against a real
coordinator (one for the module): the filter's options reach the API, a bulk action
without ``--yes`` only counts, with it walks ``next`` a step at a time. Jobs whose
state matters (DeadLetter) are inserted by SQL; each test has a queue of its own."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
import psycopg
import pytest

from tests.support import CliRun, Coordinator, run_cli, submit

Run = CliRun


Scheduler = Callable[..., Run]


@pytest.fixture
def scheduler(api: Coordinator, capsys: pytest.CaptureFixture[str],
              monkeypatch: pytest.MonkeyPatch) -> Scheduler:
    """Run ``scheduler ARGS`` in this process against the module's coordinator."""
    def run(*args: str) -> Run:
        return run_cli(args, api.url, capsys, monkeypatch)
    return run


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


def dead_jobs(dsn: str, queue: str, customers: list[int], status: str = "DeadLetter") -> None:
    """One job of ``queue`` per entry in ``status`` (DeadLetter, or Scheduled far ahead),
    its payload ``{"customerId": c}``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, type, payload, status, queue, run_at, attempts, "
            "max_attempts, timeout_seconds, finished_at, last_error) "
            "SELECT gen_random_uuid(), 'noop', jsonb_build_object('customerId', c), %s, %s, "
            "CASE WHEN %s = 'DeadLetter' THEN now() ELSE '2999-01-01' END, 3, 3, 60, "
            "CASE WHEN %s = 'DeadLetter' THEN now() END, 'boom' FROM unnest(%s::int[]) c",
            (status, queue, status, status, customers))


def statuses(http: httpx.Client, queue: str) -> list[str]:
    resp = http.get("/api/jobs", params={"queue": queue, "take": 500})
    assert 200 == resp.status_code, resp.text
    return sorted(j["status"] for j in resp.json()["items"])


def test_jobs_list_sends_where_and_tag(
        http: httpx.Client, scheduler: Scheduler) -> None:
    queue = new_queue()
    far = "2999-01-01T00:00:00Z"
    wanted = submit(http, "fail", {"message": "c42"}, queue=queue, tags=["eu"], runAt=far)
    submit(http, "fail", {"message": "c42"}, queue=queue, runAt=far)
    submit(http, "fail", {"message": "c7"}, queue=queue, tags=["eu"], runAt=far)
    done = scheduler("jobs", "list", "--queue", queue, "--where", "payload.message=c42",
                     "--tag", "eu")
    assert 0 == done.returncode, done.stderr
    assert [wanted["id"]] == re.findall(r"^([0-9a-f-]{36}) ", done.stdout, re.MULTILINE)


def test_a_bulk_retry_without_yes_counts_changes_nothing_and_exits_1(
        http: httpx.Client, module_dsn: str, scheduler: Scheduler) -> None:
    queue = new_queue()
    dead_jobs(module_dsn, queue, [42, 42, 42, 7])
    dead_jobs(module_dsn, queue, [42], status="Scheduled")
    done = scheduler("jobs", "retry", "--queue", queue, "--where", "payload.customerId=42")
    assert 1 == done.returncode
    assert done.stdout.startswith("would retry 3 of 4 matching job(s)\n")
    assert re.search(r"^not retryable: Scheduled\s+1$", done.stdout, re.MULTILINE)
    assert "add --yes to retry 3 job(s)" in done.stderr
    assert ["DeadLetter"] * 4 + ["Scheduled"] == statuses(http, queue)


def test_a_bulk_retry_with_yes_goes_on_in_steps_showing_progress(
        http: httpx.Client, module_dsn: str, scheduler: Scheduler) -> None:
    queue = new_queue()
    dead_jobs(module_dsn, queue, [42] * 5 + [7])
    done = scheduler("jobs", "retry", "--queue", queue, "--where", "payload.customerId=42",
                     "--reason", "fixed", "--per-request", "2", "--yes")
    assert 0 == done.returncode, done.stderr
    assert ["retry: 2/5", "retry: 4/5", "retry: 5/5"] == done.stderr.splitlines()
    assert "retried 5 job(s)\n" == done.stdout
    assert ["DeadLetter"] + ["Pending"] * 5 == statuses(http, queue)


def test_a_bulk_cancel_reports_what_it_skipped(
        http: httpx.Client, module_dsn: str, scheduler: Scheduler) -> None:
    queue = new_queue()
    dead_jobs(module_dsn, queue, [1])
    for _ in range(2):
        submit(http, queue=queue, runAt="2999-01-01T00:00:00Z")
    done = scheduler("jobs", "cancel", "--queue", queue, "--yes")
    assert 0 == done.returncode, done.stderr
    assert done.stdout.startswith("cancelled 2 job(s)\n")
    assert re.search(r"^not cancellable: DeadLetter\s+1$", done.stdout, re.MULTILINE)
    assert ["Cancelled", "Cancelled", "DeadLetter"] == statuses(http, queue)


def test_jobs_delete_by_filter_and_by_id(
        http: httpx.Client, module_dsn: str, scheduler: Scheduler) -> None:
    queue = new_queue()
    dead_jobs(module_dsn, queue, [1, 2, 3])
    waiting = submit(http, queue=queue, runAt="2999-01-01T00:00:00Z")
    done = scheduler("jobs", "delete", "--queue", queue, "--where", "payload.customerId>=2",
                     "--yes", "--json")
    assert 0 == done.returncode, done.stderr
    assert '"count": 2' in done.stdout
    assert ["DeadLetter", "Scheduled"] == statuses(http, queue)
    refused = scheduler("jobs", "delete", waiting["id"])
    assert (1, f"scheduler: job {waiting['id']} not deleted: not deletable: Scheduled\n") == (
        refused.returncode, refused.stderr)
    scheduler("jobs", "cancel", waiting["id"])
    assert (0, f"deleted {waiting['id']}\n") == scheduler("jobs", "delete", waiting["id"])[:2]
    assert ["DeadLetter"] == statuses(http, queue)


@pytest.mark.parametrize(("args", "complaint"), [
    (["jobs", "list", "--where", "payload.a==1"], "argument --where: expected a value"),
    (["jobs", "list", "--where", "headers.a=1"], "argument --where: expected payload."),
    (["jobs", "list", "--created-after", "yesterday"], "argument --created-after: expected "
                                                       "an ISO-8601 date-time"),
    (["jobs", "list", "--finished-before", "2030-01-01T00:00:00"],
     "argument --finished-before: expected a time zone"),
    (["jobs", "list", "--status", "Done"], "argument --status: expected one of Waiting"),
    (["jobs", "retry"], "jobs retry: give a job id, or a filter"),
    (["jobs", "cancel", str(uuid.uuid4()), "--queue", "q"], "not both"),
    (["jobs", "delete", str(uuid.uuid4()), "--yes"], "argument --yes: only with a filter"),
    (["jobs", "delete", "--queue", "q", "--per-request", "0"], "argument --per-request"),
], ids=["where_double_equals", "where_column", "created_after_text",
        "finished_before_no_zone", "status_unknown", "retry_nothing", "cancel_id_and_filter",
        "delete_id_and_yes", "per_request_zero"])
def test_bad_filter_arguments_exit_2_naming_the_option(
        scheduler: Scheduler, args: list[str], complaint: str) -> None:
    done = scheduler(*args)
    assert (2, "") == (done.returncode, done.stdout)
    assert complaint in done.stderr


def test_a_filter_the_api_refuses_exits_1_naming_the_field(scheduler: Scheduler) -> None:
    done = scheduler("jobs", "cancel", "--tag", "x" * 65)
    assert 1 == done.returncode
    assert "HTTP 400" in done.stderr and "(field: filter.tag)" in done.stderr
