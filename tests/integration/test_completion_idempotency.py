"""The completion path's two promises (docs/decisions/0004 and 0005):

- a ``Released`` run (handed back without running to an outcome) gives its attempt
  back, so releases never bring a job closer to DeadLetter;
- a completion resent after its answer was lost (same run, token and outcome) is
  accepted as a duplicate that changes nothing and is not counted again, while a
  different outcome or a wrong token for a finished run is still refused (409).

The worker protocol is spoken by hand over HTTP against a real coordinator.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Coordinator, HandWorker, job_row, runs_of, submit

ENV = {
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.2",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "5",
    "SCHEDULER_LEASE_SECONDS": "60",
    # Retries fall due at once (up to 10 ms of jitter): the long-polling claim
    # below wakes for them without waiting out its deadline.
    "SCHEDULER_RETRY_BASE_SECONDS": "0.01",
    "SCHEDULER_RETRY_CAP_SECONDS": "0.01",
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    resp = httpx.get(url + "/metrics", timeout=10)
    assert 200 == resp.status_code, resp.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def counter(samples: Samples, name: str, **labels: str) -> float:
    """A counter's value; a labelled counter never incremented is not shown: 0."""
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def coordinator(start_coordinator: Callable[..., Coordinator]) -> Coordinator:
    return start_coordinator(env=ENV)


@pytest.fixture
def hand(coordinator: Coordinator) -> Iterator[HandWorker]:
    worker = HandWorker(coordinator.url).register()
    yield worker
    worker.close()


# --- Released gives the attempt back -------------------------------------------------

def test_releases_do_not_count_as_attempts_and_only_real_failures_dead_letter(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url, maxAttempts=2)["id"]
    seen = []
    for _ in range(2):
        claimed = hand.claim()
        assert 200 == hand.finish(claimed, "Released").status_code
        job = job_row(db_dsn, job_id)
        seen.append((claimed["attempt"], job["status"], job["attempts"]))
    first = hand.claim()
    assert 200 == hand.finish(first, "Failed").status_code
    after_first_failure = job_row(db_dsn, job_id)
    second = hand.claim()
    assert 200 == hand.finish(second, "Failed").status_code
    job = job_row(db_dsn, job_id)

    assert [(1, "Pending", 0), (1, "Pending", 0)] == seen
    # Before the fix the two releases had used up both attempts: DeadLetter here.
    # (Failed, waiting for its retry; or already shown Pending, the retry being due.)
    assert after_first_failure["status"] in ("Failed", "Pending"), after_first_failure
    assert 1 == after_first_failure["attempts"]
    assert (1, 2) == (first["attempt"], second["attempt"])
    assert ("DeadLetter", 2) == (job["status"], job["attempts"])
    assert [(1, "Released"), (1, "Released"), (1, "Failed"), (2, "Failed")] == [
        (r["attempt"], r["outcome"]) for r in runs_of(db_dsn, job_id)]


# --- a resent completion -------------------------------------------------------------

def test_a_resent_success_is_accepted_as_a_duplicate_and_changes_and_counts_nothing(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url)["id"]
    claimed = hand.claim()
    first = hand.finish(claimed, "Succeeded")
    assert 200 == first.status_code, first.text
    job_before, runs_before = job_row(db_dsn, job_id), runs_of(db_dsn, job_id)
    metrics_before = scrape(coordinator.url)

    again = hand.finish(claimed, "Succeeded")

    assert 200 == again.status_code, again.text
    assert [{"runId": claimed["runId"], "accepted": True, "status": "Succeeded",
             "duplicate": True}] == again.json()["results"]
    assert [{"runId": claimed["runId"], "accepted": True, "status": "Succeeded",
             "duplicate": False}] == first.json()["results"]
    assert job_before == job_row(db_dsn, job_id)
    assert runs_before == runs_of(db_dsn, job_id)
    metrics_after = scrape(coordinator.url)
    for name, labels in [
            ("scheduler_jobs_finished_total", {"type": "noop", "outcome": "Succeeded"}),
            ("scheduler_job_run_duration_seconds_count", {"type": "noop", "outcome": "Succeeded"}),
            ("scheduler_stale_completions_total", {})]:
        assert counter(metrics_before, name, **labels) == counter(metrics_after, name, **labels), name
    assert 1.0 == counter(metrics_after, "scheduler_jobs_finished_total",
                          type="noop", outcome="Succeeded")
    assert "completion_refused" not in coordinator.output()


def test_a_resent_failure_neither_reschedules_the_retry_nor_counts_it_again(
        db_dsn: str, start_coordinator: Callable[..., Coordinator]) -> None:
    # The retry far off (jitter over 10 minutes): the job stays Failed, waiting.
    coordinator = start_coordinator(env={**ENV, "SCHEDULER_RETRY_BASE_SECONDS": "600",
                                         "SCHEDULER_RETRY_CAP_SECONDS": "600"})
    hand = HandWorker(coordinator.url).register()
    job_id = submit(coordinator.url, maxAttempts=3)["id"]
    claimed = hand.claim()
    assert 200 == hand.finish(claimed, "Failed").status_code
    job_before = job_row(db_dsn, job_id)
    metrics_before = scrape(coordinator.url)

    again = hand.finish(claimed, "Failed")

    assert 200 == again.status_code, again.text
    [result] = again.json()["results"]
    assert (True, True) == (result["accepted"], result["duplicate"])
    assert job_before["status"] == result["status"]
    assert "Failed" == job_before["status"]
    assert job_before == job_row(db_dsn, job_id)  # run_at not drawn again, attempts kept
    metrics_after = scrape(coordinator.url)
    for name, labels in [("scheduler_job_retries_total", {"type": "noop"}),
                         ("scheduler_jobs_finished_total", {"type": "noop", "outcome": "Failed"}),
                         ("scheduler_stale_completions_total", {})]:
        assert counter(metrics_before, name, **labels) == counter(metrics_after, name, **labels), name
    hand.close()


def test_a_resend_in_a_batch_with_a_new_completion_is_counted_once(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    old_job, new_job = submit(coordinator.url)["id"], submit(coordinator.url)["id"]
    old = hand.claim()
    assert 200 == hand.finish(old, "Succeeded").status_code
    new = hand.claim()
    assert {old_job, new_job} == {old["jobId"], new["jobId"]}

    both = hand.complete((old["runId"], old["leaseToken"], "Succeeded"),
                         (new["runId"], new["leaseToken"], "Succeeded"))

    assert 200 == both.status_code, both.text
    assert [(old["runId"], True, True), (new["runId"], True, False)] == [
        (r["runId"], r["accepted"], r["duplicate"]) for r in both.json()["results"]]
    assert ["Succeeded", "Succeeded"] == [job_row(db_dsn, j)["status"]
                                         for j in (old_job, new_job)]
    assert 2.0 == counter(scrape(coordinator.url), "scheduler_jobs_finished_total",
                          type="noop", outcome="Succeeded")


def test_a_different_outcome_for_a_finished_run_is_refused(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url)["id"]
    claimed = hand.claim()
    assert 200 == hand.finish(claimed, "Succeeded").status_code
    job_before, runs_before = job_row(db_dsn, job_id), runs_of(db_dsn, job_id)
    stale_before = counter(scrape(coordinator.url), "scheduler_stale_completions_total")

    other = hand.finish(claimed, "Failed")

    assert 409 == other.status_code, other.text
    assert [{"runId": claimed["runId"], "accepted": False, "status": None,
             "duplicate": False}] == other.json()["results"]
    assert job_before == job_row(db_dsn, job_id)
    assert runs_before == runs_of(db_dsn, job_id)
    assert stale_before + 1 == counter(scrape(coordinator.url),
                                       "scheduler_stale_completions_total")


def test_a_wrong_token_for_a_finished_run_is_refused(
        db_dsn: str, coordinator: Coordinator, hand: HandWorker) -> None:
    job_id = submit(coordinator.url)["id"]
    claimed = hand.claim()
    assert 200 == hand.finish(claimed, "Succeeded").status_code
    job_before, runs_before = job_row(db_dsn, job_id), runs_of(db_dsn, job_id)

    wrong = hand.complete((claimed["runId"], str(uuid.uuid4()), "Succeeded"))

    assert 409 == wrong.status_code, wrong.text
    assert [{"runId": claimed["runId"], "accepted": False, "status": None,
             "duplicate": False}] == wrong.json()["results"]
    assert job_before == job_row(db_dsn, job_id)
    assert runs_before == runs_of(db_dsn, job_id)
