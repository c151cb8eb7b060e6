"""client/ without a coordinator: the requests it builds and how it reads the
answers, on httpx's MockTransport; the async wait on trio's MockClock."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from scheduler_core.client import ApiFailure, AsyncClient, Client, ClientError, WaitTimeout
from scheduler_core.command.client_cli import Progress

Handler = Callable[[httpx.Request], httpx.Response]


def recording(answer: Any = None, status: int = 200) -> tuple[list[httpx.Request], Handler]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"id": "j1"} if answer is None else answer)
    return seen, handle


def client(handler: Handler, **kw: Any) -> Client:
    return Client("http://coordinator", transport=httpx.MockTransport(handler), **kw)


def test_submit_sends_snake_case_options_as_camel_case_and_drops_unset_ones() -> None:
    seen, handle = recording(status=201)
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    job = client(handle).submit("noop", {"a": 1}, run_at=when, max_attempts=2,
                                timeout_seconds=9, idempotency_key="k", queue="q", priority=3,
                                cron=None, misfire_policy="skip")
    assert {"type": "noop", "payload": {"a": 1}, "runAt": "2030-01-02T03:04:05+00:00",
            "maxAttempts": 2, "timeoutSeconds": 9, "idempotencyKey": "k", "queue": "q",
            "priority": 3, "misfirePolicy": "skip"} == json.loads(seen[0].content)
    assert ({"id": "j1"}, True) == (job, job.created)


def test_submit_answered_200_was_not_created() -> None:
    _, handle = recording(status=200)
    assert False is client(handle).submit("noop").created


def test_a_token_is_sent_as_a_bearer_authorization() -> None:
    seen, handle = recording()
    client(handle, token="s3cret").get("j1")
    client(handle).get("j1")
    assert ["Bearer s3cret", None] == [r.headers.get("authorization") for r in seen]


def test_an_id_is_quoted_so_it_cannot_reach_another_route() -> None:
    seen, handle = recording()
    client(handle).cancel("../../health")
    assert "/api/jobs/..%2F..%2Fhealth/cancel" == seen[0].url.raw_path.decode()


def test_a_job_object_stands_for_its_id() -> None:
    seen, handle = recording()
    client(handle).pause_schedule({"id": "s1", "cron": "@daily"})
    assert "/api/schedules/s1/pause" == seen[0].url.path


def test_an_error_that_is_not_json_keeps_the_text() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")
    with pytest.raises(ApiFailure) as caught:
        client(handle).get("j1")
    assert (502, "bad gateway", None, None) == (
        caught.value.status, caught.value.message, caught.value.error, caught.value.field)


def test_an_answer_that_is_not_a_json_object_is_a_client_error() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")
    with pytest.raises(ClientError, match="expected a JSON object, found '<html>login</html>'"):
        client(handle).get("j1")


def test_iter_jobs_stops_at_the_page_without_a_next_cursor() -> None:
    pages = {None: {"items": [{"id": "3"}, {"id": "2"}], "nextCursor": "2"},
             "2": {"items": [{"id": "1"}], "nextCursor": None}}
    cursors: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        cursors.append(request.url.params.get("cursor"))
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])
    assert ["3", "2", "1"] == [j["id"] for j in client(handle).iter_jobs(queue="q", take=2)]
    assert [None, "2"] == cursors


async def test_async_wait_polls_quickly_first_then_every_poll_interval(
        autojump_clock: trio.testing.MockClock) -> None:
    polled: list[float] = []
    statuses = iter(["Pending"] * 6 + ["Succeeded"])

    def handle(request: httpx.Request) -> httpx.Response:
        polled.append(trio.current_time())
        return httpx.Response(200, json={"id": "j1", "status": next(statuses)})
    async with AsyncClient("http://c", transport=httpx.MockTransport(handle)) as c:
        done = await c.wait("j1", poll_interval=0.5)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(polled)]
    assert "Succeeded" == done["status"]
    assert [0.05, 0.1, 0.2, 0.4, 0.5, 0.5] == gaps


async def test_async_wait_gives_up_at_its_timeout_with_the_last_state(
        autojump_clock: trio.testing.MockClock) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "j1", "status": "Running"})
    start = trio.current_time()
    async with AsyncClient("http://c", transport=httpx.MockTransport(handle)) as c:
        with pytest.raises(WaitTimeout) as caught:
            await c.wait("j1", timeout=30)
    assert 30 == pytest.approx(trio.current_time() - start)
    assert ("j1", 30, "Running") == (caught.value.job_id, caught.value.timeout,
                                     caught.value.job and caught.value.job["status"])
    assert "job j1 did not finish within 30 s (last status: Running)" == str(caught.value)


# -- the CLI's progress display ----------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def job(status: str, attempts: int) -> dict[str, Any]:
    return {"id": "j1", "status": status, "attempts": attempts, "maxAttempts": 3}


def test_progress_off_a_terminal_prints_one_line_per_change() -> None:
    out = io.StringIO()
    progress = Progress(out, "j1")
    for state in (job("Pending", 0), job("Pending", 0), job("Running", 1), job("Failed", 1),
                  job("Running", 2), job("Running", 2), job("Succeeded", 2)):
        progress(state)
    progress.close()
    lines = out.getvalue().splitlines()
    assert ["Pending (attempt 0/3)", "Running (attempt 1/3)", "Failed (attempt 1/3)",
            "Running (attempt 2/3)", "Succeeded (attempt 2/3)"] == [
        re.sub(r"^job j1 (.*) \d+\.\ds$", r"\1", line) for line in lines]


def test_progress_on_a_terminal_redraws_one_line_and_clears_it() -> None:
    out = Terminal()
    progress = Progress(out, "j1")
    progress(job("Pending", 0))
    progress(job("Running", 1))
    progress.close()
    progress.close()
    assert re.fullmatch(r"\r\x1b\[K\| job j1 Pending \(attempt 0/3\) \d+\.\ds"
                        r"\r\x1b\[K/ job j1 Running \(attempt 1/3\) \d+\.\ds\r\x1b\[K",
                        out.getvalue())
