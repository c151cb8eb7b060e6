"""The worker's side of "the remote said slow down": ``RateLimited`` and
``ctx.backoff`` (handlers/registry.py), carried from a job process in the protocol's
``Reply.retry_after`` (runtime/job_protocol.py, command/child.py) or straight from an
inline handler, and turned by the executor into a ``RateLimited`` completion with its
``retry_after``. And a worker's registration names the queues it claims from.

This module doubles as the job processes' plug-in (``--handlers
tests.unit.test_rate_limited:register``), for the tests with real processes."""

from __future__ import annotations

import math
import sys
import uuid
from typing import Any

import msgspec
import pytest
import structlog
import trio
import trio.lowlevel

from scheduler_core import handlers
from scheduler_core.actors.worker import heartbeat
from scheduler_core.actors.worker.coordinator_link import Link
from scheduler_core.actors.worker.executor import Executors
from scheduler_core.actors.worker.worker_state import OwnedRun, WorkerState
from scheduler_core.command.child import handle
from scheduler_core.handlers import HandlerError, RateLimited, Registry, RunContext, registry
from scheduler_core.runtime.job_protocol import Reply, decode_reply, encode_reply
from scheduler_core.runtime.procpool import open_pool
from scheduler_core.schema import wire
from tests.unit.fake_http import read_request_body
from tests.unit.test_worker_state import job


class SlowDown(msgspec.Struct, forbid_unknown_fields=True):
    seconds: float = 30.0
    message: str = ""


def register(target: Registry) -> None:
    """The handlers that ask to slow down: sync and async, raising and via ctx.backoff;
    ``_inline`` ones run in the worker."""

    @target.handler("raise_sync", payload=SlowDown)
    def raise_sync(payload: SlowDown, ctx: RunContext) -> None:
        raise RateLimited(payload.seconds, payload.message)

    @target.handler("backoff_sync", payload=SlowDown)
    def backoff_sync(payload: SlowDown, ctx: RunContext) -> None:
        ctx.backoff(payload.seconds, payload.message)

    @target.handler("backoff_async", payload=SlowDown)
    async def backoff_async(payload: SlowDown, ctx: RunContext) -> None:
        await trio.lowlevel.checkpoint()
        ctx.backoff(payload.seconds, payload.message)

    @target.handler("raise_inline", payload=SlowDown, inline=True)
    async def raise_inline(payload: SlowDown, ctx: RunContext) -> None:
        await trio.lowlevel.checkpoint()
        raise RateLimited(payload.seconds, payload.message)

    @target.handler("backoff_inline", payload=SlowDown, inline=True)
    async def backoff_inline(payload: SlowDown, ctx: RunContext) -> None:
        ctx.backoff(payload.seconds, payload.message)


REGISTRY = Registry()
register(REGISTRY)
PLUGIN = f"{__name__}:register"


def claimed(type_: str, **payload: Any) -> wire.ClaimedJob:
    return msgspec.structs.replace(job(), type=type_, payload=payload)


# -- RateLimited and ctx.backoff -----------------------------------------------------------


def test_rate_limited_is_a_retryable_handler_error_with_its_retry_after() -> None:
    exc = RateLimited(12.5, "HTTP 429 from the API")
    assert isinstance(exc, HandlerError)
    assert (12.5, "HTTP 429 from the API", False) == (exc.retry_after, exc.reason,
                                                     exc.permanent)
    assert "retry after 12.5s: HTTP 429 from the API" == str(exc)
    assert ("retry after 3s", "") == (str(RateLimited(3)), RateLimited(3).reason)


@pytest.mark.parametrize(("given", "expected"), [
    (0, 0.0), (0.25, 0.25), (86400, 86400.0), (86400.5, 86400.0), (1e12, 86400.0),
    (math.inf, 86400.0), (-1, 0.0), (-math.inf, 0.0), (math.nan, 0.0),
])
def test_retry_after_is_clamped_to_a_day_and_nan_or_negative_to_zero(
        given: float, expected: float) -> None:
    assert expected == RateLimited(given).retry_after
    with pytest.raises(RateLimited) as caught:
        RunContext(job_id="j", attempt=1, data_dir="/d").backoff(given)
    assert expected == caught.value.retry_after


def test_ctx_backoff_raises_rate_limited_with_the_seconds_and_message() -> None:
    ctx = RunContext(job_id="j", attempt=2, data_dir="/d")
    with pytest.raises(RateLimited) as caught:
        ctx.backoff(7, "quota exhausted")
    assert (7.0, "quota exhausted") == (caught.value.retry_after, caught.value.reason)


def test_rate_limited_is_exported() -> None:
    assert handlers.RateLimited is RateLimited is registry.RateLimited
    assert "RateLimited" in handlers.__all__
    assert "RateLimited" in registry.__all__


# -- the protocol's reply -----------------------------------------------------------------


def test_a_reply_round_trips_its_retry_after() -> None:
    reply = Reply(ok=False, error="slow", retry_after=2.5)
    assert reply == decode_reply(encode_reply(reply))


def test_a_reply_without_retry_after_omits_it_and_an_old_one_decodes() -> None:
    assert "retry_after" not in msgspec.msgpack.decode(encode_reply(Reply(ok=False)))
    old = msgspec.msgpack.encode({"ok": False, "error": "E: x", "permanent": True})
    assert Reply(ok=False, error="E: x", permanent=True, retry_after=None) == decode_reply(old)


@pytest.mark.parametrize("type_", ["raise_sync", "backoff_sync", "backoff_async"])
def test_the_job_process_answers_a_rate_limited_handler_with_its_retry_after(
        type_: str, tmp_path: Any) -> None:
    request = msgspec.msgpack.encode({"type": type_, "payload": {"seconds": 4,
                                                                 "message": "later"}})
    reply = decode_reply(handle(request, REGISTRY, str(tmp_path)))
    assert Reply(ok=False, error="later", permanent=False, retry_after=4.0) == reply


def test_the_job_process_sends_the_clamped_retry_after(tmp_path: Any) -> None:
    request = msgspec.msgpack.encode({"type": "raise_sync", "payload": {"seconds": 1e9}})
    reply = decode_reply(handle(request, REGISTRY, str(tmp_path)))
    assert (86400.0, "") == (reply.retry_after, reply.error)


# -- the executor -------------------------------------------------------------------------


class ProcessSays:
    """A pool whose job process answers ``reply``; ``during`` runs inside the call."""

    killed = 0

    def __init__(self, reply: Reply, during: Any = None) -> None:
        self.reply = encode_reply(reply)
        self.during = during

    async def call(self, request: bytes, *, timeout: float,  # noqa: ASYNC109 (the pool's signature)
                   on_note: object = None) -> bytes:
        if self.during is not None:
            self.during()
        return self.reply


class Recorder:
    def __init__(self) -> None:
        self.completions: list[wire.Completion] = []

    def submit(self, completion: wire.Completion) -> None:
        self.completions.append(completion)


async def complete(pool: Any, claimed_job: wire.ClaimedJob,
                   stop: str | None = None) -> wire.Completion:
    """Execute one run on ``pool`` (inline handlers from REGISTRY); its completion,
    checked to be one the coordinator's schema accepts."""
    state = WorkerState("w", 1)
    recorder = Recorder()
    _, runs = trio.open_memory_channel[OwnedRun](math.inf)
    executors = Executors(pool, state, recorder, runs,  # type: ignore[arg-type]
                          registry=REGISTRY, data_dir="/d")
    run = state.add(claimed_job)
    state.begin(run)
    if stop is not None and isinstance(pool, ProcessSays):
        pool.during = lambda: run.stop(stop)  # type: ignore[arg-type]
    await executors.execute(run)
    [completion] = recorder.completions
    assert completion == msgspec.json.decode(msgspec.json.encode(completion),
                                             type=wire.Completion)
    return completion


def summary(completion: wire.Completion) -> tuple[Any, ...]:
    return (completion.outcome, completion.retry_after, completion.error,
            completion.permanent, completion.result)


NO_CHILD = ProcessSays(Reply(ok=True))  # inline runs never call it


@pytest.mark.parametrize("type_", ["raise_inline", "backoff_inline"])
async def test_an_inline_handler_rate_limited_completes_rate_limited(type_: str) -> None:
    completion = await complete(NO_CHILD, claimed(type_, seconds=12.5, message="HTTP 429"))
    assert ("RateLimited", 12.5, "rate limited: retry after 12.5s: HTTP 429", False,
            None) == summary(completion)
    completion = await complete(NO_CHILD, claimed(type_, seconds=-3))
    assert ("RateLimited", 0.0, "rate limited: retry after 0s", False,
            None) == summary(completion)


async def test_a_job_process_reply_with_retry_after_completes_rate_limited() -> None:
    pool = ProcessSays(Reply(ok=False, error="quota", retry_after=3))
    assert ("RateLimited", 3.0, "rate limited: retry after 3s: quota", False,
            None) == summary(await complete(pool, claimed("raise_sync")))
    pool = ProcessSays(Reply(ok=False, error=None, retry_after=0.5))
    assert ("RateLimited", 0.5, "rate limited: retry after 0.5s", False,
            None) == summary(await complete(pool, claimed("raise_sync")))


@pytest.mark.parametrize(("sent", "kept"), [
    (math.nan, 0.0), (-5.0, 0.0), (1e9, 86400.0), (math.inf, 86400.0)])
async def test_the_worker_clamps_a_job_process_retry_after_again(sent: float,
                                                                 kept: float) -> None:
    pool = ProcessSays(Reply(ok=False, error="", retry_after=sent))
    completion = await complete(pool, claimed("raise_sync"))
    assert ("RateLimited", kept) == (completion.outcome, completion.retry_after)


async def test_a_failure_without_retry_after_is_still_a_failure() -> None:
    pool = ProcessSays(Reply(ok=False, error="HandlerError: no", permanent=True))
    assert ("Failed", None, "HandlerError: no", True, None) == summary(
        await complete(pool, claimed("raise_sync")))


async def test_a_run_cancelled_meanwhile_is_cancelled_without_retry_after() -> None:
    pool = ProcessSays(Reply(ok=False, error="quota", retry_after=3))
    completion = await complete(pool, claimed("raise_sync"), stop="Cancelled")
    assert ("Cancelled", None) == (completion.outcome, completion.retry_after)


async def test_the_run_finished_line_shows_outcome_rate_limited() -> None:
    with structlog.testing.capture_logs() as logs:
        await complete(NO_CHILD, claimed("raise_inline", seconds=2))
    [line] = [e for e in logs if e["event"] == "run_finished"]
    assert ("RateLimited", 2.0, "rate limited: retry after 2s") == (
        line["outcome"], line["retry_after_s"], line["error"])


CHILD = [sys.executable, "-m", "scheduler_core.command.child", "--handlers", PLUGIN]


async def test_a_real_job_process_carries_the_rate_limit_to_the_completion() -> None:
    with trio.fail_after(60):
        async with open_pool(CHILD, 1) as pool:
            for type_ in ("raise_sync", "backoff_sync", "backoff_async"):
                completion = await complete(pool, claimed(type_, seconds=9, message="busy"))
                assert ("RateLimited", 9.0, "rate limited: retry after 9s: busy", False,
                        None) == summary(completion), type_


# -- the registration names the worker's queues --------------------------------------------


REGISTERED = {"workerId": "w1", "leaseSeconds": 30.0, "heartbeatSeconds": 1.0,
              "workerSecret": "s3cret-" + "x" * 36}


def answer(status: int, body: object) -> bytes:
    data = msgspec.json.encode(body)
    return (f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def registrations(queues: list[str] | None, body: wire.RegisterWorker | None = None,
                        ) -> list[wire.RegisterWorker]:
    """Register once through a link made with ``queues`` (``body``, else the worker's
    own registration, actors/worker/heartbeat.py); the bodies the coordinator got."""
    got: list[bytes] = []

    async def serve(stream: trio.SocketStream) -> None:
        read = await read_request_body(stream, b"")
        assert read is not None
        got.append(read[0])
        await stream.send_all(answer(201, REGISTERED))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, serve, listeners)
        link = Link(f"http://127.0.0.1:{port}", timeout=5, queues=queues)
        try:
            with trio.fail_after(10):
                if body is None:
                    await heartbeat.register(link, WorkerState("w1", 2))
                else:
                    await link.register(body)
        finally:
            await link.aclose()
            nursery.cancel_scope.cancel()
    return [msgspec.json.decode(raw, type=wire.RegisterWorker) for raw in got]


async def test_the_registration_names_the_queues_the_worker_claims_from() -> None:
    [sent] = await registrations(["emails", "billing.eu", "*"])
    assert (["emails", "billing.eu", "*"], "w1", 2) == (sent.queues, sent.worker_id,
                                                        sent.capacity)


async def test_a_link_without_queues_registers_as_an_older_worker_did() -> None:
    [sent] = await registrations(None)
    assert sent.queues is None


async def test_queues_the_registration_names_itself_are_kept() -> None:
    body = wire.RegisterWorker(worker_id=str(uuid.uuid4()), hostname="h", pid=1,
                               capacity=1, queues=["only"])
    [sent] = await registrations(["default"], body)
    assert ["only"] == sent.queues
