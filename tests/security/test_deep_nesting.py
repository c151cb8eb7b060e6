"""Deeply nested JSON (issue 12, item 2): 10,000 levels on every route that takes a
JSON body, public and worker API, with the tokens they need. Each is a 400 naming the
path of the first array past SCHEDULER_MAX_JSON_DEPTH (64), decided before anything
decodes the body, and /health keeps answering while such requests arrive.

The time per rejection and the /health latencies are written to
test-output/security/deep_nesting.json (measured, not asserted).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.security.body_routes import (
    WORKER,
    BodyRoute,
    body_routes,
    log_events,
    record_figures,
    secured_coordinator,
)
from tests.support import Coordinator, query

LEVELS = 10_000
LIMIT = 64  # the default SCHEDULER_MAX_JSON_DEPTH
DEEP = b"[" * LEVELS + b'"\\u0000"' + b"]" * LEVELS
ROUTES = body_routes()


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    yield from secured_coordinator(module_dsn)


def deep_body(prefix: bytes, suffix: bytes) -> bytes:
    return prefix + DEEP + suffix


COMPLETE_PREFIX = (b'{"workerId": "w", "completions": [{"runId": '
                   b'"00000000-0000-0000-0000-000000000001", "leaseToken": '
                   b'"00000000-0000-0000-0000-000000000001", "outcome": "Succeeded", '
                   b'"result": ')
# (operation id, body, the field named): the issue's own two cases, then a generic one
# that any route with a body gets.
CASES = {
    "submitJob": (deep_body(b'{"type": "noop", "payload": {"a": ', b"}}"),
                  "payload.a" + "[0]" * (LIMIT - 2)),
    "complete": (deep_body(COMPLETE_PREFIX, b"}]}"),
                 "completions[0].result" + "[0]" * (LIMIT - 3)),
}
GENERIC = (deep_body(b'{"nested": ', b"}"), "nested" + "[0]" * (LIMIT - 1))


def send_deep(client: httpx.Client, route: BodyRoute) -> tuple[httpx.Response, str]:
    body, field = CASES.get(route.operation_id, GENERIC)
    resp = client.request(route.method, route.path, content=body, headers=route.headers)
    return resp, field


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_ten_thousand_levels_are_a_400_naming_the_path_past_the_limit(
        api: Coordinator, route: BodyRoute) -> None:
    with httpx.Client(base_url=api.url, timeout=5) as client:
        resp, field = send_deep(client, route)
    assert 400 == resp.status_code, resp.text[:500]
    body = resp.json()
    assert ("too_deep", field) == (body["error"], body["field"])
    assert f"at most {LIMIT} levels" in body["message"]


def test_the_generic_deep_body_is_refused_on_the_issue_routes_too(api: Coordinator) -> None:
    """The two routes with their own case above are not spared the generic shape."""
    with httpx.Client(base_url=api.url, timeout=5) as client:
        for route in ROUTES:
            if route.operation_id in CASES:
                resp = client.request(route.method, route.path, content=GENERIC[0],
                                      headers=route.headers)
                assert (400, GENERIC[1]) == (resp.status_code, resp.json()["field"])


def complete_with_result_levels(api: Coordinator, levels: int) -> httpx.Response:
    """A completion from worker ``w`` (registered, so its secret goes along) whose
    result nests ``levels`` deep."""
    auth = {"Authorization": f"Bearer {WORKER}"}
    registered = httpx.post(api.url + "/api/workers/register", timeout=5, headers=auth,
                            json={"workerId": "w", "hostname": "h", "pid": 1, "capacity": 1})
    if registered.status_code == 409:  # registered by the previous call: deregister first
        raise AssertionError(registered.text)
    secret = registered.json()["workerSecret"]
    result = b"[" * levels + b"1" + b"]" * levels
    try:
        return httpx.post(api.url + "/api/workers/complete", timeout=5,
                          content=COMPLETE_PREFIX + result + b"}]}",
                          headers={**auth, "Content-Type": "application/json",
                                   "X-Worker-Secret": secret})
    finally:
        httpx.post(api.url + "/api/workers/deregister", timeout=5,
                   headers={**auth, "X-Worker-Secret": secret}, json={"workerId": "w"})


def test_a_body_as_deep_as_the_limit_is_decoded_and_one_level_more_is_not(
        api: Coordinator) -> None:
    """A completion's result sits 3 levels down: LIMIT - 3 levels of it make a body
    exactly LIMIT deep, decoded and answered (409: no such run); one more is a 400."""
    resp = complete_with_result_levels(api, LIMIT - 3)
    assert 409 == resp.status_code, resp.text[:500]
    assert [False] == [r["accepted"] for r in resp.json()["results"]]
    resp = complete_with_result_levels(api, LIMIT - 2)
    assert (400, "too_deep") == (resp.status_code, resp.json()["error"])


def test_nothing_is_written_and_nothing_fails_for_a_deep_body(
        api: Coordinator, module_dsn: str) -> None:
    before = query(module_dsn, "SELECT count(*) AS n FROM jobs")[0]["n"]
    with httpx.Client(base_url=api.url, timeout=5) as client:
        for route in ROUTES:
            send_deep(client, route)
    assert before == query(module_dsn, "SELECT count(*) AS n FROM jobs")[0]["n"]
    assert [] == log_events(api, "request_failed")


def test_health_answers_while_deep_bodies_arrive_on_every_route(api: Coordinator) -> None:
    """Four senders (after one alone, for the figures) post 10,000-level bodies to every route in turn while /health is
    asked over and over: every /health answer is a 200 (within the client's 5 s
    timeout, the stall detector), every deep body a 400."""
    alone: list[float] = []  # first one request at a time, for the figures
    with httpx.Client(base_url=api.url, timeout=5) as client:
        for _ in range(5):
            for route in ROUTES:
                started = time.perf_counter()
                send_deep(client, route)
                alone.append(time.perf_counter() - started)
    stop = threading.Event()
    rejections: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def sender() -> None:
        with httpx.Client(base_url=api.url, timeout=5) as client:
            while not stop.is_set():
                for route in ROUTES:
                    started = time.perf_counter()
                    resp, _ = send_deep(client, route)
                    took = time.perf_counter() - started
                    with lock:
                        statuses.append(resp.status_code)
                        rejections.append(took)

    senders = [threading.Thread(target=sender) for _ in range(4)]
    for t in senders:
        t.start()
    health: list[float] = []
    try:
        with httpx.Client(base_url=api.url, timeout=5) as client:
            while len(health) < 100 or len(statuses) < 4 * len(ROUTES):
                started = time.perf_counter()
                resp = client.get("/health")
                health.append(time.perf_counter() - started)
                assert 200 == resp.status_code, resp.text
    finally:
        stop.set()
        for t in senders:
            t.join(timeout=30)
    assert {400} == set(statuses)
    record_figures("deep_nesting", {
        "levels": LEVELS, "body_bytes": len(GENERIC[0]), "routes": len(ROUTES),
        "rejection_ms_median_one_at_a_time": round(statistics.median(alone) * 1000, 2),
        "rejection_ms_max_one_at_a_time": round(max(alone) * 1000, 2),
        "rejections_concurrent": len(rejections),
        "rejection_ms_median_concurrent": round(statistics.median(rejections) * 1000, 2),
        "rejection_ms_max_concurrent": round(max(rejections) * 1000, 2),
        "health_requests": len(health),
        "health_ms_median": round(statistics.median(health) * 1000, 2),
        "health_ms_max": round(max(health) * 1000, 2),
    })
