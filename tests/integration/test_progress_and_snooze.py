"""Progress, meta and snooze (issue 18) on a real coordinator and real worker processes.

Handlers (tests/progress_handlers.py) report progress and meta, then wait on a gate
file the test creates once it has read the job while it runs. Requests are counted
from the coordinator's own metrics (``scheduler_http_request_duration_seconds_count``
by route). Every wait is a poll with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    Coordinator,
    HandWorker,
    Worker,
    query,
    running_coordinator,
    submit,
    wait_until,
)

HANDLERS = ["--handlers", "tests.progress_handlers"]
MAX_SNOOZES = 3
ENV = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_LEASE_SECONDS": "2",
       "SCHEDULER_REAP_INTERVAL_SECONDS": "0.3", "SCHEDULER_CLAIM_WAIT_SECONDS": "30",
       "SCHEDULER_MAX_SNOOZES": str(MAX_SNOOZES), "SCHEDULER_HANDLERS": "tests.progress_handlers"}
HAND_QUEUE = "by-hand"  # the real worker takes only "default": these jobs are the hand's


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=ENV) as c:
        yield c


@pytest.fixture(scope="module")
def worker(api: Coordinator) -> Iterator[Worker]:
    w = Worker(api.url, slots=4, env=ENV, extra=HANDLERS)
    try:
        yield w
    finally:
        w.stop()


def get_job(api: Coordinator, job_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{api.url}/api/jobs/{job_id}", timeout=10)
    assert 200 == resp.status_code, resp.text
    return dict(resp.json())


def requests_by_route(api: Coordinator) -> dict[str, float]:
    """The coordinator's request counts by route (all methods and statuses)."""
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "scheduler_http_request_duration_seconds_count":
                route = s.labels["route"]
                counts[route] = counts.get(route, 0.0) + s.value
    return counts


def gated(tmp_path: Path) -> str:
    return str(tmp_path / f"gate-{uuid.uuid4().hex[:8]}")


def open_gate(path: str) -> None:
    Path(path).touch()


@pytest.mark.parametrize("job_type", ["progress", "progress_inline"])
def test_progress_and_meta_are_visible_while_the_job_runs(
        api: Coordinator, worker: Worker, tmp_path: Path, job_type: str) -> None:
    gate = gated(tmp_path)
    job_id = submit(api.url, job_type, {"gate": gate, "updates": 5, "upTo": 0.4,
                                        "meta": {"stage": "load", "rows": 12}})["id"]
    job = wait_until(lambda: (j := get_job(api, job_id)).get("progressMessage") == "step 5 of 5"
                     and "meta" in j and j, what="the progress and meta stored")
    assert "Running" == job["status"]
    assert 0.4 == job["progress"]
    assert {"stage": "load", "rows": 12} == job["meta"]
    open_gate(gate)
    done = wait_until(lambda: (j := get_job(api, job_id))["status"] == "Succeeded" and j,
                      what="the job to succeed")
    assert (0.4, "step 5 of 5") == (done["progress"], done["progressMessage"])


def test_many_updates_cost_no_request_beyond_the_heartbeats(
        api: Coordinator, worker: Worker, tmp_path: Path) -> None:
    updates = 20_000
    gate = gated(tmp_path)
    before = requests_by_route(api)
    job_id = submit(api.url, "progress", {"gate": gate, "updates": updates, "upTo": 1.0})["id"]
    wait_until(lambda: get_job(api, job_id).get("progressMessage")
               == f"step {updates} of {updates}", what="the last progress stored")
    after = requests_by_route(api)
    grown = {route: after.get(route, 0.0) - before.get(route, 0.0) for route in after}
    heartbeats = grown.pop("/api/workers/heartbeat", 0.0)
    worker_requests = sum(n for route, n in grown.items() if route.startswith("/api/workers/"))
    # The submission, the polls of GET /api/jobs/<id> and the scrape are the test's;
    # the worker made at most its claim and a completion of an earlier job besides
    # its heartbeats, however many updates the job sent.
    assert worker_requests <= 2, grown
    # (The progress stored while the job runs came by a heartbeat: the count is live.)
    assert 1 <= heartbeats and heartbeats + worker_requests < updates / 100, (heartbeats, grown)
    open_gate(gate)
    wait_until(lambda: get_job(api, job_id)["status"] == "Succeeded", what="success")


def test_the_newest_progress_wins_and_the_completion_carries_the_last(
        api: Coordinator, worker: Worker, tmp_path: Path) -> None:
    gate = gated(tmp_path)
    open_gate(gate)  # no wait: the progress goes with the completion
    job_id = submit(api.url, "progress", {"gate": gate, "updates": 3, "upTo": 0.9,
                                          "meta": {"n": 1}})["id"]
    done = wait_until(lambda: (j := get_job(api, job_id))["status"] == "Succeeded" and j,
                      what="success")
    assert (0.9, "step 3 of 3", {"n": 1}) == (done["progress"], done["progressMessage"],
                                               done["meta"])


def test_a_job_without_progress_has_none_in_its_answer(
        api: Coordinator, worker: Worker, tmp_path: Path) -> None:
    job_id = submit(api.url, "snooze", {"counter": str(tmp_path / "c"), "times": 0})["id"]
    done = wait_until(lambda: (j := get_job(api, job_id))["status"] == "Succeeded" and j,
                      what="success")
    assert not {"progress", "progressMessage", "meta", "snoozes"} & done.keys(), done


@pytest.mark.parametrize("job_type, raised", [("snooze", False), ("snooze", True),
                                              ("snooze_inline", False),
                                              ("snooze_inline", True)])
def test_a_snooze_puts_the_job_back_without_spending_an_attempt(
        api: Coordinator, worker: Worker, module_dsn: str, tmp_path: Path, job_type: str,
        raised: bool) -> None:
    job_id = submit(api.url, job_type, {"counter": str(tmp_path / "c"), "times": 1,
                                        "seconds": 3600, "raise": raised})["id"]
    job = wait_until(lambda: (j := get_job(api, job_id))["status"] == "Scheduled" and j,
                     what="the job snoozed")
    assert (0, 1) == (job["attempts"], job["snoozes"])
    assert ["Snoozed"] == [r["outcome"] for r in job["runs"]]
    assert "snoozed for 3600s" == job["runs"][0]["error"]
    in_an_hour = query(module_dsn, "SELECT run_at - now() > interval '59 minutes' AS later "
                       "FROM jobs WHERE id = %s", job_id)
    assert [{"later": True}] == in_an_hour


def test_a_job_snoozed_then_run_succeeds_with_its_attempt_unspent(
        api: Coordinator, worker: Worker, tmp_path: Path) -> None:
    job_id = submit(api.url, "snooze", {"counter": str(tmp_path / "c"), "times": 2})["id"]
    done = wait_until(lambda: (j := get_job(api, job_id))["status"] == "Succeeded" and j,
                      what="success")
    assert (1, 2) == (done["attempts"], done["snoozes"])
    assert {"runs": 3} == done["result"]
    assert ["Snoozed", "Snoozed", "Succeeded"] == [r["outcome"] for r in done["runs"]]


def test_a_snooze_past_the_cap_fails_the_job_naming_the_cap(
        api: Coordinator, worker: Worker, tmp_path: Path) -> None:
    job_id = submit(api.url, "snooze", {"counter": str(tmp_path / "c"), "times": -1})["id"]
    done = wait_until(lambda: (j := get_job(api, job_id))["status"] == "DeadLetter" and j,
                      what="the job dead-lettered")
    assert MAX_SNOOZES == done["snoozes"]
    assert ["Snoozed"] * MAX_SNOOZES + ["Failed"] == [r["outcome"] for r in done["runs"]]
    assert "SCHEDULER_MAX_SNOOZES (3)" in done["lastError"], done["lastError"]


# --- by hand: what the coordinator stores --------------------------------------------

@pytest.fixture
def hand(api: Coordinator) -> Iterator[HandWorker]:
    w = HandWorker(api.url).register(capacity=4)
    yield w
    w.close()


def claim_own(hand: HandWorker, api: Coordinator, tmp_path: Path) -> dict[str, Any]:
    submit(api.url, "snooze", {"counter": str(tmp_path / "c")}, queue=HAND_QUEUE)
    jobs = hand.claim_some(1, wait=10, queues=[HAND_QUEUE])
    assert 1 == len(jobs)
    return jobs[0]


def beat(hand: HandWorker, run_id: str, token: str, report: dict[str, Any]) -> httpx.Response:
    return hand.http.post("/api/workers/heartbeat", json={
        "workerId": hand.id, "runs": [{"runId": run_id, "leaseToken": token,
                                       "report": report}]})


def test_a_report_from_a_worker_that_lost_the_lease_is_ignored(
        api: Coordinator, hand: HandWorker, tmp_path: Path) -> None:
    claimed = claim_own(hand, api, tmp_path)
    run_id, token, job_id = claimed["runId"], claimed["leaseToken"], claimed["jobId"]
    assert 200 == beat(hand, run_id, token, {"progress": 0.25, "message": "mine"}).status_code
    assert (0.25, "mine") == ((j := get_job(api, job_id))["progress"], j["progressMessage"])
    # The lease runs out (2 s, no renewal): the reaper puts the job back; another
    # worker claims it.
    wait_until(lambda: get_job(api, job_id)["status"] == "Pending", what="the lease reaped")
    other = HandWorker(api.url).register()
    try:
        again = other.claim_some(1, wait=10, queues=[HAND_QUEUE])
        assert [job_id] == [j["jobId"] for j in again]
        resp = beat(hand, run_id, token, {"progress": 0.9, "message": "stale",
                                          "meta": {"stale": True}})
        assert 200 == resp.status_code, resp.text
        assert [run_id] == resp.json()["lost"]
        job = get_job(api, job_id)
        assert (0.25, "mine", None) == (job["progress"], job["progressMessage"],
                                        job.get("meta"))
        # Nor from another worker sending the live run's id and token.
        assert 200 == beat(hand, again[0]["runId"], again[0]["leaseToken"],
                           {"progress": 0.5}).status_code
        assert 0.25 == get_job(api, job_id)["progress"]
    finally:
        other.close()


def test_a_meta_over_16_kib_is_a_400_naming_the_field(
        api: Coordinator, hand: HandWorker, tmp_path: Path) -> None:
    claimed = claim_own(hand, api, tmp_path)
    resp = beat(hand, claimed["runId"], claimed["leaseToken"], {"meta": {"x": "y" * 17_000}})
    assert 400 == resp.status_code, resp.text
    assert "runs[0].report.meta" == resp.json()["field"]
    assert "16384 bytes" in resp.json()["message"]


@pytest.mark.parametrize("report, field", [
    ({"progress": 1.5}, "runs[0].report.progress"),
    ({"progress": "half"}, "runs[0].report.progress"),
    ({"message": "x" * 1001}, "runs[0].report.message"),
    ({"meta": [1, 2]}, "runs[0].report.meta"),
])
def test_a_bad_report_is_a_400_naming_the_field(
        api: Coordinator, hand: HandWorker, tmp_path: Path, report: dict[str, Any],
        field: str) -> None:
    claimed = claim_own(hand, api, tmp_path)
    resp = beat(hand, claimed["runId"], claimed["leaseToken"], report)
    assert 400 == resp.status_code, resp.text
    assert field == resp.json()["field"]
