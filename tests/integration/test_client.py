"""The Python clients (client/) against a real coordinator and a real worker.

One coordinator and one worker (2 slots, queue ``default``) serve the whole module,
as in test_cli.py: starting them takes a few seconds, and every test here makes jobs
of its own. Jobs that must not run go to a queue no worker takes (or far in the
future). ``wait`` itself is the poll-with-deadline of these tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import trio

from scheduler_core.client import ApiFailure, AsyncClient, Client, Unreachable, WaitTimeout
from tests.support import Coordinator, Worker, free_port

FAR_FUTURE = "2999-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def worker(api: Coordinator) -> Iterator[Worker]:
    w = Worker(api.url, slots=2, env={"SCHEDULER_CLAIM_WAIT_SECONDS": "2"})
    yield w
    w.stop()


@pytest.fixture
def client(api: Coordinator) -> Iterator[Client]:
    with Client(api.url, token="not-checked-yet") as c:
        yield c


def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


# -- Client ------------------------------------------------------------------------------


def test_wait_returns_the_succeeded_job_with_its_result(client: Client, worker: Worker) -> None:
    job = client.submit("cpu", {"durationSeconds": 0.05}, max_attempts=1, timeout_seconds=30)
    done = client.wait(job, timeout=30)
    assert ("Succeeded", job["id"], 1) == (done["status"], done["id"], done["attempts"])
    assert done["result"]["iterations"] > 0
    assert ["Succeeded"] == [r["outcome"] for r in done["runs"]]


def test_wait_returns_a_dead_lettered_job_with_its_error(client: Client, worker: Worker) -> None:
    job = client.submit("fail", {"message": "on purpose"}, max_attempts=1)
    done = client.wait(job["id"], timeout=30)
    assert ("DeadLetter", 1) == (done["status"], done["attempts"])
    assert "on purpose" in done["lastError"]


def test_wait_reports_every_poll(client: Client, worker: Worker) -> None:
    seen: list[str] = []
    done = client.wait(client.submit("noop"), timeout=30, on_poll=lambda j: seen.append(j["status"]))
    assert "Succeeded" == seen[-1] == done["status"]


def test_wait_past_its_timeout_raises_wait_timeout_with_the_last_state(client: Client) -> None:
    job = client.submit("noop", run_at=FAR_FUTURE)
    with pytest.raises(WaitTimeout) as caught:
        client.wait(job, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert (job["id"], "Scheduled") == (caught.value.job_id, caught.value.job["status"])
    assert f"job {job['id']} did not finish within 0.3 s" in str(caught.value)


def test_submit_maps_snake_case_options_to_the_api(client: Client) -> None:
    run_at = dt.datetime(2999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    queue = new_queue()
    job = client.submit("sleep", {"seconds": 1}, run_at=run_at, max_attempts=2,
                        timeout_seconds=9, idempotency_key=str(uuid.uuid4()), queue=queue,
                        priority=-4)
    assert ("2999-01-02T03:04:05Z", 2, 9, queue, -4, True) == (
        job["runAt"], job["maxAttempts"], job["timeoutSeconds"], job["queue"],
        job["priority"], job.created)


def test_submit_with_a_known_key_returns_the_existing_job(client: Client) -> None:
    key = str(uuid.uuid4())
    first = client.submit("noop", idempotency_key=key, run_at=FAR_FUTURE)
    again = client.submit("noop", idempotency_key=key, run_at=FAR_FUTURE)
    assert (first["id"], False) == (again["id"], again.created)


def test_the_older_submit_form_returns_the_status_and_body(client: Client) -> None:
    status, job = client.submit({"type": "noop", "runAt": FAR_FUTURE})
    assert (201, "Scheduled") == (status, job["status"])


def test_iter_jobs_follows_the_cursor_over_several_pages(client: Client) -> None:
    queue = new_queue()
    ids = [client.submit("noop", queue=queue)["id"] for _ in range(5)]
    assert 2 == len(client.list(queue=queue, take=2)["items"])
    assert list(reversed(ids)) == [j["id"] for j in client.iter_jobs(queue=queue, take=2)]


def test_cancel_and_retry_change_the_job(client: Client) -> None:
    job = client.submit("noop", queue=new_queue())
    assert "Cancelled" == client.cancel(job)["status"]
    retried = client.retry(job, "again")
    assert ("Pending", "again") == (retried["status"], retried["retryReason"])


def test_schedules_are_listed_read_paused_resumed_and_deleted(client: Client) -> None:
    schedule = client.submit("noop", cron="0 0 1 1 *", timezone="Europe/Paris",
                             queue=new_queue())
    assert ("schedule", "0 0 1 1 *", "Europe/Paris", True) == (
        schedule["kind"], schedule["cron"], schedule["timezone"], schedule.created)
    assert schedule["id"] in [s["id"] for s in client.list_schedules(take=500)]
    assert [] == client.get_schedule(schedule)["recentFires"]
    assert False is client.pause_schedule(schedule)["enabled"]
    assert True is client.resume_schedule(schedule["id"])["enabled"]
    assert schedule["id"] == client.delete_schedule(schedule)["id"]
    with pytest.raises(ApiFailure) as caught:
        client.get_schedule(schedule)
    assert (404, "id") == (caught.value.status, caught.value.field)


def test_an_invalid_payload_is_an_api_failure_naming_the_field(client: Client) -> None:
    with pytest.raises(ApiFailure) as caught:
        client.submit("cpu", {"durationSeconds": -1})
    failure = caught.value
    assert (400, "invalid_payload", "payload.durationSeconds") == (
        failure.status, failure.error, failure.field)
    assert "expected a number > 0" in failure.message
    assert str(failure).endswith("(field: payload.durationSeconds)")


def test_an_unknown_job_is_an_api_failure_404(client: Client) -> None:
    with pytest.raises(ApiFailure) as caught:
        client.get(str(uuid.uuid4()))
    assert (404, "id") == (caught.value.status, caught.value.field)


def test_a_closed_port_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as c, pytest.raises(Unreachable, match=f"cannot reach the coordinator at {url}"):
        c.get(str(uuid.uuid4()))


# -- AsyncClient -------------------------------------------------------------------------


async def test_async_client_under_trio_submits_waits_and_iterates(
        api: Coordinator, worker: Worker) -> None:
    queue = new_queue()
    async with AsyncClient(api.url, token="not-checked-yet") as client:
        done = await client.wait(await client.submit("cpu", {"durationSeconds": 0.05}),
                                 timeout=30)
        failed = await client.wait(
            await client.submit("fail", {"permanent": True, "message": "no"}, max_attempts=1),
            timeout=30)
        ids = [(await client.submit("noop", queue=queue))["id"] for _ in range(3)]
        walked = [j["id"] async for j in client.iter_jobs(queue=queue, take=2)]
    assert ("Succeeded", True) == (done["status"], done["result"]["iterations"] > 0)
    assert ("DeadLetter", "PermanentError: no") == (failed["status"], failed["lastError"])
    assert list(reversed(ids)) == walked


async def test_async_client_under_trio_raises_wait_timeout(api: Coordinator) -> None:
    async with AsyncClient(api.url) as client:
        job = await client.submit("noop", run_at=FAR_FUTURE)
        with trio.fail_after(10), pytest.raises(WaitTimeout) as caught:
            await client.wait(job, timeout=0.3)
    assert "Scheduled" == caught.value.job["status"]


async def test_async_client_under_trio_manages_schedules(api: Coordinator) -> None:
    async with AsyncClient(api.url) as client:
        schedule = await client.submit("noop", cron="@yearly", queue=new_queue())
        listed = [s["id"] for s in await client.list_schedules(take=500)]
        paused = await client.pause_schedule(schedule)
        resumed = await client.resume_schedule(schedule)
        detail = await client.get_schedule(schedule)
        await client.delete_schedule(schedule)
        with pytest.raises(ApiFailure) as caught:
            await client.get_schedule(schedule)
    assert schedule["id"] in listed
    assert (False, True, []) == (paused["enabled"], resumed["enabled"], detail["recentFires"])
    assert 404 == caught.value.status


async def test_async_client_reports_api_failures_and_unreachable(api: Coordinator) -> None:
    async with AsyncClient(api.url) as client:
        with pytest.raises(ApiFailure) as caught:
            await client.submit("launch_rockets")
    assert (400, "unknown_type", "type") == (
        caught.value.status, caught.value.error, caught.value.field)
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(Unreachable):
            await client.get(str(uuid.uuid4()))


def test_async_client_under_asyncio_submits_and_waits(api: Coordinator, worker: Worker) -> None:
    async def main() -> tuple[str, str | None]:
        async with AsyncClient(api.url) as client:
            done = await client.wait(await client.submit("noop"), timeout=30)
            later = await client.submit("noop", run_at=FAR_FUTURE)
            try:
                await client.wait(later, timeout=0.2)
            except WaitTimeout as exc:
                return done["status"], (exc.job or {}).get("status")
        return done["status"], None

    assert ("Succeeded", "Scheduled") == asyncio.run(main())


# -- search and bulk actions (both clients) ----------------------------------------------


def test_list_filters_by_tag_and_payload_and_bulk_cancels_what_matches(client: Client) -> None:
    queue = new_queue()
    eu = [client.submit("fail", {"message": "m1"}, queue=queue, run_at=FAR_FUTURE,
                        tags=["eu"])["id"] for _ in range(3)]
    client.submit("fail", {"message": "m2"}, queue=queue, run_at=FAR_FUTURE, tags=["eu"])
    found = client.list(queue=queue, tag="eu", where=["payload.message=m1"])
    assert sorted(eu) == sorted(j["id"] for j in found["items"])
    plan = client.bulk("cancel", queue=queue, where="payload.message=m1", dry_run=True)
    assert (3, 3, 3) == (plan["matched"], plan["count"], len(client.list(
        queue=queue, status="Scheduled", where="payload.message=m1")["items"]))
    step = client.bulk("cancel", queue=queue, where="payload.message=m1", limit=2)
    rest = client.bulk("cancel", queue=queue, where="payload.message=m1", after=step["next"])
    assert (2, 1, None) == (step["count"], rest["count"], rest["next"])
    assert ["Cancelled"] * 3 == [j["status"] for j in client.iter_jobs(
        queue=queue, where="payload.message=m1")]


def test_bulk_refusal_names_the_filter_field(client: Client) -> None:
    with pytest.raises(ApiFailure) as caught:
        client.bulk("retry", where="payload.a==1")
    assert (400, "filter.where") == (caught.value.status, caught.value.field)


async def test_async_client_under_trio_lists_by_filter_and_bulk_retries(
        api: Coordinator) -> None:
    queue = new_queue()
    async with AsyncClient(api.url) as client:
        ids = [(await client.submit("noop", queue=queue, run_at=FAR_FUTURE))["id"]
               for _ in range(2)]
        await client.bulk("cancel", ids=ids, queue=queue)
        plan = await client.bulk("retry", queue=queue, status="Cancelled", dry_run=True)
        done = await client.bulk("retry", queue=queue, status="Cancelled", reason="again")
        after = [j["status"] async for j in client.iter_jobs(queue=queue)]
    assert (2, 2) == (plan["count"], done["count"])
    assert ["Pending", "Pending"] == after
