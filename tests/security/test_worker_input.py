"""What a holder of the worker token can send (issue 12, item 13): heartbeat figures
are validated (a negative number or an unknown field is a 400 naming
``stats.<field>``, nothing stored), and a request of 1000 bogus completions writes one
``completion_refused`` line with the count, not 1000."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.security.body_routes import WORKER, log_events, secured_coordinator
from tests.support import Coordinator, query, wait_until

HEADERS = {"Authorization": f"Bearer {WORKER}"}


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    yield from secured_coordinator(module_dsn)


@pytest.fixture
def worker(api: Coordinator) -> Iterator[tuple[httpx.Client, str]]:
    worker_id = f"sec-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=api.url, timeout=10, headers=HEADERS) as client:
        resp = client.post("/api/workers/register", json={
            "workerId": worker_id, "hostname": "h", "pid": 1, "capacity": 1})
        assert 201 == resp.status_code, resp.text
        client.headers["X-Worker-Secret"] = resp.json()["workerSecret"]
        yield client, worker_id


def stored_stats(dsn: str, worker_id: str) -> object:
    return query(dsn, "SELECT stats FROM workers WHERE id = %s", worker_id)[0]["stats"]


@pytest.mark.parametrize(("stats", "field"), [
    ({"busy": -1}, "stats.busy"),
    ({"slots": -5}, "stats.slots"),
    ({"runSecondsSum": -0.5}, "stats.runSecondsSum"),
    ({"childRestarts": 10**30}, "stats.childRestarts"),
    ({"executorOverheadSecondsSum": 1e300}, "stats.executorOverheadSecondsSum"),
    ({"busy": "1"}, "stats.busy"),
    ({"busy": 1, "somethingElse": 3}, "stats.somethingElse"),
], ids=["negative_busy", "negative_slots", "negative_seconds", "huge_count",
        "huge_seconds", "string", "unknown_field"])
def test_bad_heartbeat_stats_are_a_400_naming_the_field_and_not_stored(
        worker: tuple[httpx.Client, str], module_dsn: str, stats: dict[str, object],
        field: str) -> None:
    client, worker_id = worker
    resp = client.post("/api/workers/heartbeat", json={"workerId": worker_id,
                                                       "stats": stats})
    assert 400 == resp.status_code, resp.text
    assert ("validation_error", field) == (resp.json()["error"], resp.json()["field"])
    assert None is stored_stats(module_dsn, worker_id)


def test_good_heartbeat_stats_are_stored(worker: tuple[httpx.Client, str],
                                         module_dsn: str) -> None:
    client, worker_id = worker
    resp = client.post("/api/workers/heartbeat", json={
        "workerId": worker_id, "stats": {"busy": 1, "slots": 2, "runSecondsSum": 0.5}})
    assert 200 == resp.status_code, resp.text
    stats = stored_stats(module_dsn, worker_id)
    assert isinstance(stats, dict)
    assert (1, 2, 0.5) == (stats["busy"], stats["slots"], stats["runSecondsSum"])


def test_a_thousand_refused_completions_log_one_line_with_the_count(
        api: Coordinator, worker: tuple[httpx.Client, str]) -> None:
    client, worker_id = worker
    bogus = [str(uuid.uuid4()) for _ in range(1000)]
    resp = client.post("/api/workers/complete", json={
        "workerId": worker_id,
        "completions": [{"runId": run_id, "leaseToken": str(uuid.uuid4()),
                         "outcome": "Succeeded"} for run_id in bogus]})
    assert 409 == resp.status_code
    assert 1000 == sum(not r["accepted"] for r in resp.json()["results"])
    lines = wait_until(lambda: [e for e in log_events(api, "completion_refused")
                                if e.get("worker_id") == worker_id],
                       what="the completion_refused line")
    assert 1 == len(lines), len(lines)
    assert (1000, 1000) == (lines[0]["refused"], lines[0]["of"])
    assert 0 < len(lines[0]["run_ids"]) <= 5
    assert set(lines[0]["run_ids"]) <= set(bogus)
