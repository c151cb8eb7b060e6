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


def test_an_idempotency_key_is_also_sent_as_the_header_a_balancer_can_see() -> None:
    seen, handle = recording(status=201)
    client(handle).submit("noop", idempotency_key="order-7")
    client(handle).submit("noop")
    assert ["order-7", None] == [r.headers.get("idempotency-key") for r in seen]


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


# -- flow control: queue settings and concurrency keys -----------------------------------


def test_set_queue_limit_sends_only_the_settings_given() -> None:
    from scheduler_core.schema.wire import RateLimit

    seen, handle = recording({"name": "q"})
    c = client(handle)
    c.set_queue_limit("q", 4)
    c.set_queue_limit("q", None)
    c.set_queue_limit("q", rate_limits=["10/1s", RateLimit(limit=1000, per="1h", burst=50),
                                        {"limit": 5, "per": "500ms"}])
    c.set_queue_limit("q", rate_limits=None, key_concurrency_limit=2)
    c.set_queue_limit("q", key_concurrency_limit=None, key_rate_limits=["5/1s:2"])
    c.set_queue_limit("q", key_rate_limits=[])
    assert [("PATCH", "/api/queues/q")] * 6 == [(r.method, r.url.path) for r in seen]
    assert [{"concurrencyLimit": 4},
            {"concurrencyLimit": None},
            {"rateLimits": [{"limit": 10, "per": "1s", "burst": 1},
                            {"limit": 1000, "per": "1h", "burst": 50},
                            {"limit": 5, "per": "500ms"}]},
            {"rateLimits": None, "keyConcurrencyLimit": 2},
            {"keyConcurrencyLimit": None,
             "keyRateLimits": [{"limit": 5, "per": "1s", "burst": 2}]},
            {"keyRateLimits": []}] == [json.loads(r.content) for r in seen]


async def test_the_async_set_queue_limit_sends_the_same_body() -> None:
    seen, handle = recording({"name": "q"})
    async with AsyncClient("http://c", transport=httpx.MockTransport(handle)) as c:
        await c.set_queue_limit("q", 3, rate_limits=["7/1m"], key_concurrency_limit=1,
                                key_rate_limits=None)
    assert {"concurrencyLimit": 3, "rateLimits": [{"limit": 7, "per": "1m", "burst": 1}],
            "keyConcurrencyLimit": 1, "keyRateLimits": None} == json.loads(seen[0].content)


@pytest.mark.parametrize(("text", "window"), [
    ("10/1s", (10, "1s", 1)),
    ("1000/1h:50", (1000, "1h", 50)),
    ("5/500ms:5", (5, "500ms", 5)),
    ("1/1d", (1, "1d", 1)),
    ("1000000000/86400000ms", (1_000_000_000, "86400000ms", 1)),
    ("3/2m", (3, "2m", 1)),
])
def test_parse_rate_limit_reads_limit_per_and_burst(text: str,
                                                    window: tuple[int, str, int]) -> None:
    from scheduler_core.client import parse_rate_limit

    w = parse_rate_limit(text)
    assert window == (w.limit, w.per, w.burst)


@pytest.mark.parametrize(("text", "message"), [
    ("0/1s", "the limit must be 1 to 1000000000, found 0"),
    ("1000000001/1s", "the limit must be 1 to 1000000000"),
    ("10/2x", "the window must be a whole number and ms, s, m, h or d"),
    ("10/0s", "the window must be"),
    ("10/1.5s", "the window must be"),
    ("10/ 1s", "the window must be"),
    ("10/2d", "the window must be at most 1d, found 2d"),
    ("10/86400001ms", "the window must be at most 1d"),
    ("10/1s:11", "the burst must be 1 to the limit (10), found 11"),
    ("10/1s:0", "the burst must be 1 to the limit (10), found 0"),
    ("10", "expected LIMIT/PER[:BURST]"),
    ("", "expected LIMIT/PER[:BURST]"),
    ("-1/1s", "expected LIMIT/PER[:BURST]"),
    ("ten/1s", "expected LIMIT/PER[:BURST]"),
    ("10/1s:2:3", "expected LIMIT/PER[:BURST]"),
    ("\u0661\u0660/1s", "expected LIMIT/PER[:BURST]"),  # Arabic-Indic digits: int() takes them
])
def test_a_bad_window_text_is_a_value_error_and_nothing_is_sent(text: str,
                                                                 message: str) -> None:
    seen, handle = recording({"name": "q"})
    with pytest.raises(ValueError, match=re.escape(message)):
        client(handle).set_queue_limit("q", key_rate_limits=["1/1s", text])
    assert [] == seen


def test_a_lone_window_not_in_a_list_is_a_type_error() -> None:
    seen, handle = recording({"name": "q"})
    with pytest.raises(TypeError, match="put it in a list"):
        client(handle).set_queue_limit("q", rate_limits="10/1s")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a rate window is"):
        client(handle).set_queue_limit("q", rate_limits=[10])  # type: ignore[list-item]
    assert [] == seen


def test_the_cli_writes_windows_as_it_reads_them() -> None:
    from scheduler_core.client import parse_rate_limit
    from scheduler_core.command.client_cli import rate_text

    for text in ("10/1s", "1000/1h:50", "5/500ms:5"):
        w = parse_rate_limit(text)
        assert text == rate_text({"limit": w.limit, "per": w.per, "burst": w.burst})


def test_submit_sends_the_concurrency_key() -> None:
    seen, handle = recording(status=201)
    client(handle).submit("noop", concurrency_key="tenant-1", queue="q")
    assert {"type": "noop", "concurrencyKey": "tenant-1", "queue": "q"} == (
        json.loads(seen[0].content))


def test_submit_batch_sends_each_job_as_submit_would_and_reads_created() -> None:
    answer = {"items": [{"id": "a", "created": True}, {"id": "b", "created": False}]}
    seen, handle = recording(answer, status=201)
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    jobs = client(handle).submit_batch([
        {"type": "noop", "concurrency_key": "t1", "idempotency_key": "k", "priority": None},
        {"type": "cpu", "payload": {"durationSeconds": 1}, "run_at": when}])
    assert ("POST", "/api/jobs/batch") == (seen[0].method, seen[0].url.path)
    assert {"jobs": [{"type": "noop", "concurrencyKey": "t1", "idempotencyKey": "k"},
                     {"type": "cpu", "payload": {"durationSeconds": 1},
                      "runAt": "2030-01-01T00:00:00+00:00"}]} == json.loads(seen[0].content)
    assert [("a", True), ("b", False)] == [(j["id"], j.created) for j in jobs]


def test_list_sends_the_search_filter_by_the_api_names() -> None:
    seen, handle = recording({"items": [], "nextCursor": None})
    since = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    client(handle).list(where=["payload.customerId=42", "result.status>=500"], tag="eu",
                        created_after=since, finished_before="2030-02-01T00:00:00Z",
                        last_error="timed out", status=None, take=5)
    assert [("where", "payload.customerId=42"), ("where", "result.status>=500"),
            ("tag", "eu"), ("createdAfter", "2030-01-02T03:04:05+00:00"),
            ("finishedBefore", "2030-02-01T00:00:00Z"), ("lastError", "timed out"),
            ("take", "5")] == list(seen[0].url.params.multi_items())


def test_iter_jobs_sends_the_filter_with_every_page() -> None:
    pages = {None: {"items": [{"id": "2"}], "nextCursor": "2"},
             "2": {"items": [{"id": "1"}], "nextCursor": None}}
    wheres: list[list[str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        wheres.append(request.url.params.get_list("where"))
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])
    assert ["2", "1"] == [j["id"] for j in client(handle).iter_jobs(where="payload.a=1")]
    assert [["payload.a=1"], ["payload.a=1"]] == wheres


def test_bulk_sends_the_action_the_filter_and_only_the_options_given() -> None:
    seen, handle = recording({"count": 3})
    client(handle).bulk("retry", where="payload.customerId=42", queue="q", dry_run=True)
    client(handle).bulk("delete", ids=["j1", {"id": "j2"}], limit=1000, after="j0",
                        status="DeadLetter")
    assert [{"action": "retry", "dryRun": True,
             "filter": {"where": ["payload.customerId=42"], "queue": "q"}},
            {"action": "delete", "filter": {"status": "DeadLetter"}, "ids": ["j1", "j2"],
             "limit": 1000, "after": "j0"}] == [json.loads(r.content) for r in seen]
    assert ["/api/jobs/bulk"] * 2 == [r.url.path for r in seen]


def test_a_misspelt_bulk_action_is_a_value_error_and_nothing_is_sent() -> None:
    seen, handle = recording()
    with pytest.raises(ValueError, match="expected an action among retry, cancel, delete, "
                                         "found 'retyr'"):
        client(handle).bulk("retyr", status="DeadLetter")
    assert [] == seen


async def test_the_async_bulk_and_list_send_the_same_requests() -> None:
    seen, handle = recording({"items": []})
    async with AsyncClient("http://c", transport=httpx.MockTransport(handle)) as c:
        await c.list(tag=["a", "b"], take=2)
        await c.bulk("cancel", type="noop", reason=None, dry_run=True)
    assert [("tag", "a"), ("tag", "b"), ("take", "2")] == list(
        seen[0].url.params.multi_items())
    assert {"action": "cancel", "filter": {"type": "noop"}, "dryRun": True} == json.loads(
        seen[1].content)
