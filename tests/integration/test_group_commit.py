"""Concurrent single submits against one real coordinator process: written in groups
(actors/coordinator/submit_batcher.py), each request still answered with its own job,
its own status and its own errors, and counted once in /metrics.

The tests share a module-scoped coordinator; each keeps to a queue or keys of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Coordinator, scalar

CLIENTS = 32



def new_queue() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def submitted_total(url: str, job_type: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "scheduler_jobs_submitted_total" and s.labels == {"type": job_type}:
                return s.value
    return 0.0


async def post_all(url: str, bodies: Sequence[Any]) -> list[httpx.Response]:
    """POST every body to /api/jobs, ``CLIENTS`` at a time, all let go together; the
    answers in the order of ``bodies``."""
    answers: dict[int, httpx.Response] = {}
    go = trio.Event()
    limiter = trio.CapacityLimiter(CLIENTS)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def post(i: int, body: Any) -> None:
            async with limiter:
                await go.wait()
                if isinstance(body, bytes):
                    answers[i] = await client.post(
                        "/api/jobs", content=body, headers={"Content-Type": "application/json"})
                else:
                    answers[i] = await client.post("/api/jobs", json=body)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i, body in enumerate(bodies):
                    nursery.start_soon(post, i, body)
                await trio.testing.wait_all_tasks_blocked()
                go.set()
    return [answers[i] for i in range(len(bodies))]


async def test_two_hundred_concurrent_single_submits_each_get_their_own_job(
        api: Coordinator, module_dsn: str) -> None:
    queue = new_queue()
    bodies = [{"type": "http_get", "queue": queue, "priority": i % 100,
               "payload": {"url": f"http://127.0.0.1:9/{i}"}} for i in range(200)]
    answers = await post_all(api.url, bodies)
    assert [201] * 200 == [r.status_code for r in answers]
    jobs = [r.json() for r in answers]
    assert [b["payload"] for b in bodies] == [j["payload"] for j in jobs]
    assert [b["priority"] for b in bodies] == [j["priority"] for j in jobs]
    assert [f"/api/jobs/{j['id']}" for j in jobs] == [r.headers["location"] for r in answers]
    assert 200 == len({j["id"] for j in jobs})
    assert 200 == scalar(module_dsn, "SELECT count(DISTINCT payload) FROM jobs WHERE queue = %s",
                         queue)
    assert 200 == scalar(module_dsn, "SELECT count(*) FROM jobs WHERE queue = %s", queue)


async def test_concurrent_submits_with_one_new_key_make_one_job(
        api: Coordinator, module_dsn: str) -> None:
    key = f"group-{uuid.uuid4()}"
    queue = new_queue()
    # Keyless submits in flight too, so the keyed ones share groups with others.
    bodies: list[Any] = [{"type": "noop", "idempotencyKey": key, "queue": queue}
                         if i % 2 else {"type": "noop", "queue": queue} for i in range(100)]
    answers = await post_all(api.url, bodies)
    keyed = [r for i, r in enumerate(answers) if i % 2]
    assert [200] * 49 + [201] == sorted(r.status_code for r in keyed)
    assert 1 == len({r.json()["id"] for r in keyed})
    assert [201] * 50 == [r.status_code for i, r in enumerate(answers) if not i % 2]
    assert 1 == scalar(module_dsn, "SELECT count(*) FROM jobs WHERE idempotency_key = %s", key)
    assert 51 == scalar(module_dsn, "SELECT count(*) FROM jobs WHERE queue = %s", queue)


async def test_invalid_bodies_in_flight_with_valid_ones_get_their_own_4xx(
        api: Coordinator, module_dsn: str) -> None:
    queue = new_queue()
    bad: list[tuple[Any, int, str | None]] = [
        ({"type": "no_such_type", "queue": queue}, 400, "type"),
        ({"type": "http_get", "queue": queue, "payload": {}}, 400, "payload.url"),
        ({"type": "noop", "queue": queue, "runAt": "tomorrow"}, 400, "runAt"),
        ({"type": "noop", "queue": queue, "maxAttempts": 0}, 400, "maxAttempts"),
        ({"type": "noop", "queue": queue, "priority": 1000}, 400, "priority"),
        (b'{"type": "noop", "queue": ', 400, "body"),
    ]
    bodies: list[Any] = []
    expected: list[tuple[int, str | None]] = []
    for i in range(120):
        if i % 4 == 3:
            body, status, field = bad[(i // 4) % len(bad)]
            bodies.append(body)
            expected.append((status, field))
        else:
            bodies.append({"type": "noop", "queue": queue, "priority": i % 100})
            expected.append((201, None))
    answers = await post_all(api.url, bodies)
    assert expected == [(r.status_code, r.json().get("field")) for r in answers]
    good = [(b, r.json()) for b, r in zip(bodies, answers, strict=True) if r.status_code == 201]
    assert [b["priority"] for b, _ in good] == [j["priority"] for _, j in good]
    assert 90 == scalar(module_dsn, "SELECT count(*) FROM jobs WHERE queue = %s", queue)


async def test_the_submitted_jobs_metric_counts_each_created_job_once(
        api: Coordinator) -> None:
    before = submitted_total(api.url, "noop")
    key = f"metric-{uuid.uuid4()}"
    queue = new_queue()
    bodies: list[Any] = ([{"type": "noop", "queue": queue}] * 60
                         + [{"type": "noop", "queue": queue, "idempotencyKey": key}] * 20
                         + [{"type": "no_such_type"}] * 10)
    answers = await post_all(api.url, bodies)
    assert 61 == sum(r.status_code == 201 for r in answers)
    assert before + 61 == submitted_total(api.url, "noop")
