"""The public jobs API against one real coordinator and its real database.

The tests share a module-scoped coordinator (starting one takes about a second); each
test keeps to its own rows: a queue or idempotency key of its own, or counts taken
before and after.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import psycopg
import pytest
import trio
import trio.testing

from tests.support import Coordinator, scalar, submit

JOB_FIELDS = {
    "id", "type", "payload", "status", "queue", "priority", "runAt", "attempts",
    "maxAttempts", "timeoutSeconds", "idempotencyKey", "scheduleId", "fireTime",
    "cancelRequested", "lastError", "result", "retryReason", "createdAt", "updatedAt",
    "startedAt", "finishedAt",
}  # "runs" only with GET /api/jobs/{id}: submit and list responses leave it out


# -- fixtures and helpers ----------------------------------------------------------------



def execute(dsn: str, sql: str, *params: object) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.encode(), params)


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- submission --------------------------------------------------------------------------


def test_a_new_job_is_201_with_the_full_camel_case_shape(http: httpx.Client) -> None:
    resp = http.post("/api/jobs", json={"type": "cpu", "payload": {"durationSeconds": 2},
                                        "maxAttempts": 4, "timeoutSeconds": 30,
                                        "priority": 5, "queue": new_queue()})
    job = resp.json()
    assert 201 == resp.status_code
    assert JOB_FIELDS | {"created"} == set(job)  # created: false when a key named a job
    assert job["created"] is True
    assert ("cpu", {"durationSeconds": 2}, "Pending", 4, 30, 5, 0) == (
        job["type"], job["payload"], job["status"], job["maxAttempts"],
        job["timeoutSeconds"], job["priority"], job["attempts"])
    assert f"/api/jobs/{job['id']}" == resp.headers["location"]


def test_a_new_job_gets_the_documented_defaults(http: httpx.Client) -> None:
    job = submit(http)
    assert ({}, "default", 0, 3, 300, None, False) == (
        job["payload"], job["queue"], job["priority"], job["maxAttempts"],
        job["timeoutSeconds"], job["idempotencyKey"], job["cancelRequested"])


def test_a_known_idempotency_key_is_200_with_the_same_job_and_writes_nothing(
        http: httpx.Client, module_dsn: str) -> None:
    body = {"type": "noop", "idempotencyKey": f"key-{uuid.uuid4()}"}
    first = http.post("/api/jobs", json=body)
    before = scalar(module_dsn, "SELECT count(*) FROM jobs")
    again = http.post("/api/jobs", json=body)
    assert (201, 200) == (first.status_code, again.status_code)
    assert first.json()["id"] == again.json()["id"]
    assert before == scalar(module_dsn, "SELECT count(*) FROM jobs")


def test_a_known_idempotency_key_returns_the_original_job_even_if_the_body_differs(
        http: httpx.Client) -> None:
    key = f"key-{uuid.uuid4()}"
    first = submit(http, idempotencyKey=key)
    again = http.post("/api/jobs", json={"type": "cpu", "payload": {"durationSeconds": 1},
                                         "idempotencyKey": key})
    assert (200, first["id"], "noop") == (again.status_code, again.json()["id"],
                                          again.json()["type"])


async def test_twenty_racing_submissions_with_one_key_create_exactly_one_job(
        api: Coordinator, module_dsn: str) -> None:
    key = f"race-{uuid.uuid4()}"
    body = {"type": "noop", "idempotencyKey": key}
    responses: list[httpx.Response] = []
    start = trio.Event()
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:

        async def post() -> None:
            await start.wait()
            responses.append(await client.post("/api/jobs", json=body))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(post)
                await trio.testing.wait_all_tasks_blocked()
                start.set()
    statuses = sorted(r.status_code for r in responses)
    assert [200] * 19 + [201] == statuses
    assert 1 == len({r.json()["id"] for r in responses})
    assert 1 == scalar(module_dsn, "SELECT count(*) FROM jobs WHERE idempotency_key = %s", key)


def test_run_at_in_the_future_makes_the_job_scheduled(http: httpx.Client) -> None:
    job = submit(http, runAt="2999-01-01T00:00:00+02:00")
    assert ("Scheduled", dt.datetime(2998, 12, 31, 22, tzinfo=dt.UTC)) == (
        job["status"], parse_time(job["runAt"]))


def test_run_at_in_the_past_makes_the_job_pending(http: httpx.Client) -> None:
    job = submit(http, runAt="2001-02-03T04:05:06Z")
    assert ("Pending", dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.UTC)) == (
        job["status"], parse_time(job["runAt"]))


# -- reading -----------------------------------------------------------------------------


def test_get_by_id_includes_the_runs_as_an_empty_list(http: httpx.Client) -> None:
    job = submit(http)
    resp = http.get(f"/api/jobs/{job['id']}")
    assert (200, job["id"], []) == (resp.status_code, resp.json()["id"], resp.json()["runs"])


def test_get_by_id_lists_the_runs_of_the_job(http: httpx.Client, module_dsn: str) -> None:
    job = submit(http)
    run_id = uuid.uuid4()
    execute(module_dsn, "INSERT INTO run_history (id, job_id, attempt, worker_id, lease_token, "
            "lease_expires_at, finished_at, outcome) VALUES (%s, %s, 1, 'w-1', "
            "gen_random_uuid(), now(), now(), 'Failed')", run_id, job["id"])
    runs = http.get(f"/api/jobs/{job['id']}").json()["runs"]
    assert [(str(run_id), 1, "w-1")] == [(r["id"], r["attempt"], r["workerId"]) for r in runs]


def test_the_list_is_newest_first(http: httpx.Client) -> None:
    queue = new_queue()
    ids = [submit(http, queue=queue)["id"] for _ in range(5)]
    page = http.get("/api/jobs", params={"queue": queue}).json()
    assert (list(reversed(ids)), None) == ([j["id"] for j in page["items"]],
                                           page["nextCursor"])


def test_keyset_paging_covers_every_job_exactly_once(http: httpx.Client) -> None:
    queue = new_queue()
    ids = {submit(http, queue=queue)["id"] for _ in range(120)}
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"queue": queue, "take": 50}
    while True:
        page = http.get("/api/jobs", params=params).json()
        pages += 1
        seen += [j["id"] for j in page["items"]]
        if page["nextCursor"] is None:
            break
        params["cursor"] = page["nextCursor"]
    assert (3, 120, ids) == (pages, len(seen), set(seen))
    assert sorted(seen, reverse=True) == seen


def test_a_page_that_ends_exactly_at_the_last_job_has_no_next_cursor(
        http: httpx.Client) -> None:
    queue = new_queue()
    for _ in range(2):
        submit(http, queue=queue)
    page = http.get("/api/jobs", params={"queue": queue, "take": 2}).json()
    assert (2, None) == (len(page["items"]), page["nextCursor"])


def test_the_list_filters_by_status(http: httpx.Client) -> None:
    queue = new_queue()
    submit(http, queue=queue)
    later = submit(http, queue=queue, runAt="2999-01-01T00:00:00Z")
    page = http.get("/api/jobs", params={"queue": queue, "status": "Scheduled"}).json()
    assert [later["id"]] == [j["id"] for j in page["items"]]


def test_the_list_filters_by_type(http: httpx.Client) -> None:
    queue = new_queue()
    submit(http, queue=queue)
    cpu = submit(http, "cpu", queue=queue, payload={"durationSeconds": 1})
    page = http.get("/api/jobs", params={"queue": queue, "type": "cpu"}).json()
    assert [cpu["id"]] == [j["id"] for j in page["items"]]


def test_the_list_filters_by_queue(http: httpx.Client) -> None:
    mine, other = new_queue(), new_queue()
    job = submit(http, queue=mine)
    submit(http, queue=other)
    page = http.get("/api/jobs", params={"queue": mine}).json()
    assert [job["id"]] == [j["id"] for j in page["items"]]


# -- cancel ------------------------------------------------------------------------------


def test_cancel_makes_a_pending_job_cancelled(http: httpx.Client) -> None:
    job = submit(http)
    resp = http.post(f"/api/jobs/{job['id']}/cancel")
    body = resp.json()
    assert (200, "Cancelled", True) == (resp.status_code, body["status"],
                                        body["cancelRequested"])
    assert body["finishedAt"] is not None


def test_cancel_makes_a_scheduled_job_cancelled(http: httpx.Client) -> None:
    job = submit(http, runAt="2999-01-01T00:00:00Z")
    resp = http.post(f"/api/jobs/{job['id']}/cancel")
    assert (200, "Cancelled") == (resp.status_code, resp.json()["status"])


def test_cancel_makes_a_job_waiting_for_its_retry_cancelled(
        http: httpx.Client, module_dsn: str) -> None:
    job = submit(http)
    execute(module_dsn, "UPDATE jobs SET status = 'Failed', attempts = 1, "
            "run_at = now() + interval '1 hour' WHERE id = %s", job["id"])
    resp = http.post(f"/api/jobs/{job['id']}/cancel")
    assert (200, "Cancelled") == (resp.status_code, resp.json()["status"])


def test_cancel_flags_a_running_job_for_its_worker(http: httpx.Client, module_dsn: str) -> None:
    job = submit(http)
    execute(module_dsn, "UPDATE jobs SET status = 'Running' WHERE id = %s", job["id"])
    resp = http.post(f"/api/jobs/{job['id']}/cancel")
    assert (200, "Running", True) == (resp.status_code, resp.json()["status"],
                                      resp.json()["cancelRequested"])


@pytest.mark.parametrize("status", ["Cancelled", "Succeeded", "DeadLetter"])
def test_cancel_of_a_terminal_job_is_409_and_changes_nothing(
        http: httpx.Client, module_dsn: str, status: str) -> None:
    job = submit(http)
    execute(module_dsn, "UPDATE jobs SET status = %s WHERE id = %s", status, job["id"])
    before = scalar(module_dsn, "SELECT to_jsonb(jobs) FROM jobs WHERE id = %s", job["id"])
    resp = http.post(f"/api/jobs/{job['id']}/cancel")
    assert (409, "conflict", status) == (resp.status_code, resp.json()["error"],
                                         resp.json()["current"]["status"])
    assert before == scalar(module_dsn, "SELECT to_jsonb(jobs) FROM jobs WHERE id = %s",
                            job["id"])


def test_cancel_of_an_unknown_job_is_404(http: httpx.Client) -> None:
    resp = http.post(f"/api/jobs/{uuid.uuid4()}/cancel")
    assert (404, "not_found", "id") == (resp.status_code, resp.json()["error"],
                                        resp.json()["field"])


# -- retry -------------------------------------------------------------------------------


def test_retry_makes_a_cancelled_job_pending_and_records_the_reason(
        http: httpx.Client) -> None:
    job = submit(http)
    http.post(f"/api/jobs/{job['id']}/cancel")
    resp = http.post(f"/api/jobs/{job['id']}/retry", json={"reason": "operator asked"})
    body = resp.json()
    assert (200, "Pending", "operator asked", False, None) == (
        resp.status_code, body["status"], body["retryReason"], body["cancelRequested"],
        body["finishedAt"])


def test_retry_without_a_body_is_allowed(http: httpx.Client) -> None:
    job = submit(http)
    http.post(f"/api/jobs/{job['id']}/cancel")
    resp = http.post(f"/api/jobs/{job['id']}/retry")
    assert (200, "Pending", None) == (resp.status_code, resp.json()["status"],
                                      resp.json()["retryReason"])


def test_retry_of_a_dead_letter_job_allows_one_more_attempt(
        http: httpx.Client, module_dsn: str) -> None:
    job = submit(http, maxAttempts=2)
    execute(module_dsn, "UPDATE jobs SET status = 'DeadLetter', attempts = 2 WHERE id = %s",
            job["id"])
    body = http.post(f"/api/jobs/{job['id']}/retry", json={"reason": "fixed"}).json()
    assert ("Pending", 3) == (body["status"], body["maxAttempts"])


def test_retry_of_a_pending_job_is_409_and_changes_nothing(
        http: httpx.Client, module_dsn: str) -> None:
    job = submit(http)
    resp = http.post(f"/api/jobs/{job['id']}/retry", json={"reason": "x"})
    assert (409, "Pending") == (resp.status_code, resp.json()["current"]["status"])
    assert scalar(module_dsn, "SELECT retry_reason FROM jobs WHERE id = %s", job["id"]) is None


def test_retry_of_an_unknown_job_is_404(http: httpx.Client) -> None:
    resp = http.post(f"/api/jobs/{uuid.uuid4()}/retry", json={"reason": "x"})
    assert (404, "id") == (resp.status_code, resp.json()["field"])


# -- schedules ---------------------------------------------------------------------------


def test_a_cron_submission_returns_a_schedule_with_its_next_fire_time(
        http: httpx.Client) -> None:
    resp = http.post("/api/jobs", json={"type": "noop", "cron": "*/5 * * * *",
                                        "idempotencyKey": f"cron-{uuid.uuid4()}"})
    body = resp.json()
    next_fire = parse_time(body["nextFireAt"])
    assert (201, "schedule", "*/5 * * * *", "UTC") == (
        resp.status_code, body["kind"], body["cron"], body["timezone"])
    assert (0, 0, 0) == (next_fire.minute % 5, next_fire.second, next_fire.microsecond)
    assert dt.timedelta(0) < next_fire - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=5)


def test_a_cron_submission_does_not_create_a_job(http: httpx.Client, module_dsn: str) -> None:
    before = scalar(module_dsn, "SELECT count(*) FROM jobs")
    http.post("/api/jobs", json={"type": "noop", "cron": "@hourly"})
    assert before == scalar(module_dsn, "SELECT count(*) FROM jobs")


def test_a_cron_schedule_honours_its_time_zone(http: httpx.Client) -> None:
    body = http.post("/api/jobs", json={"type": "noop", "cron": "30 9 * * *",
                                        "timezone": "Asia/Kolkata"}).json()
    next_fire = parse_time(body["nextFireAt"])
    assert ("Asia/Kolkata", (4, 0)) == (body["timezone"], (next_fire.hour, next_fire.minute))


def test_the_same_key_and_cron_again_is_200_with_the_same_schedule(
        http: httpx.Client, module_dsn: str) -> None:
    body = {"type": "noop", "cron": "0 * * * *", "idempotencyKey": f"cron-{uuid.uuid4()}"}
    first = http.post("/api/jobs", json=body)
    again = http.post("/api/jobs", json=body)
    assert (201, 200) == (first.status_code, again.status_code)
    assert first.json()["id"] == again.json()["id"]
    assert 1 == scalar(module_dsn, "SELECT count(*) FROM schedules WHERE idempotency_key = %s",
                       body["idempotencyKey"])


def test_the_same_key_with_a_different_definition_is_409(
        http: httpx.Client, module_dsn: str) -> None:
    key = f"cron-{uuid.uuid4()}"
    first = http.post("/api/jobs", json={"type": "noop", "cron": "0 * * * *",
                                         "idempotencyKey": key})
    resp = http.post("/api/jobs", json={"type": "noop", "cron": "15 * * * *",
                                        "idempotencyKey": key})
    assert (409, "conflict", first.json()["id"], "0 * * * *") == (
        resp.status_code, resp.json()["error"], resp.json()["current"]["id"],
        resp.json()["current"]["cron"])
    assert "0 * * * *" == scalar(module_dsn, "SELECT cron FROM schedules "
                                 "WHERE idempotency_key = %s", key)

