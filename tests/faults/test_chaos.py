"""Chaos: 2,000 mixed jobs while a driver kill -9s a random worker every 2-3 s and
starts a replacement (the test's own small supervision loop, like ``scheduler up``'s;
half the replacements come back under the dead worker's id, half under a new one).

The mix (shuffled, fed in batches of 100 every 1.5 s so that the kills fall on a
busy system): noop 70%, sleep 0.2-1 s, ``fail`` with maxAttempts 2, permanent
failures, and cpu jobs that overrun a 1 s timeout (maxAttempts 1). Short leases
(3 s), a reap every 0.5 s, tiny retry backoff.

Checked at the end, for every job: it is terminal with the outcome its kind calls for
(runs lost to a kill end ``LeaseExpired`` and count as attempts; runs handed back end
``Released`` and do not), none is lost, no job ever had two live runs at once, no job
has two Succeeded runs.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.faults.common import (
    TERMINAL,
    WorkerKiller,
    duplicate_successes,
    kill_until,
    overlapping_live_runs,
    query,
    run_outcomes,
    runs_lost_to_kills,
    status_counts,
    terminal_count,
)
from tests.support import Coordinator, Worker, submit_batch

LEASE = 3.0
COORDINATOR = {
    "SCHEDULER_LEASE_SECONDS": str(LEASE),
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_RETRY_BASE_SECONDS": "0.05",
    "SCHEDULER_RETRY_CAP_SECONDS": "1",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
    "SCHEDULER_DB_POOL_SIZE": "8",
}
WORKER = {"SCHEDULER_HEARTBEAT_SECONDS": "0.5", "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
WORKERS, SLOTS = 4, 4
MIX = {"noop": 1400, "sleep": 250, "fail": 160, "permanent": 150, "timeout": 40}
BATCH, FEED_EVERY = 100, 1.5  # 30 s of feeding: a dozen kills at least
DEADLINE = 180.0  # for everything from the first batch to the last terminal job
LOST_TO_KILL = {"LeaseExpired", "Released"}


def job_body(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "noop":  # enough attempts that no run of kills can dead-letter it
        return {"type": "noop", "payload": {}, "maxAttempts": 10}
    if kind == "sleep":
        return {"type": "sleep", "payload": {"seconds": round(rng.uniform(0.2, 1.0), 2)},
                "maxAttempts": 10}
    if kind == "fail":
        return {"type": "fail", "payload": {"message": "chaos-fail"}, "maxAttempts": 2}
    if kind == "permanent":
        return {"type": "fail", "payload": {"message": "chaos-permanent", "permanent": True},
                "maxAttempts": 5}
    assert kind == "timeout"
    return {"type": "cpu", "payload": {"durationSeconds": 5}, "timeoutSeconds": 1,
            "maxAttempts": 1}


def wrong_outcome(kind: str, job: dict[str, Any]) -> str | None:
    """Why ``job`` (status, attempts, last_error, outcomes of its runs in order) did
    not end the way its kind must, or None."""
    status, outcomes, error = job["status"], job["outcomes"], job["last_error"] or ""
    kept = [o for o in outcomes if o != "Released"]  # a hand-back gives its attempt back
    last = outcomes[-1] if outcomes else None
    if job["attempts"] != len(kept):
        return "attempts differ from the runs that were not handed back"
    if kind in ("noop", "sleep"):
        if status != "Succeeded" or last != "Succeeded" or outcomes.count("Succeeded") != 1:
            return "expected Succeeded with exactly one Succeeded run, last"
        if set(outcomes[:-1]) - LOST_TO_KILL:
            return "a run before the Succeeded one ended other than by a kill"
        return None
    if status != "DeadLetter":
        return "expected DeadLetter"
    if kind == "fail":
        if set(outcomes) - {"Failed", *LOST_TO_KILL} or last == "Released":
            return "expected Failed runs (or runs lost to kills)"
        if len(kept) != 2:  # however many runs were handed back (Released) besides
            return "expected exactly maxAttempts (2) runs not handed back"
        if last == "Failed" and "chaos-fail" not in error:
            return "last error is not the handler's"
        return None
    if kind == "permanent":
        if last != "Failed" or outcomes.count("Failed") != 1 or set(outcomes[:-1]) - LOST_TO_KILL:
            return "expected one Failed run, last (after runs lost to kills)"
        if "chaos-permanent" not in error:
            return "last error is not the handler's"
        return None
    assert kind == "timeout"
    if len(kept) != 1 or last not in ("TimedOut", "LeaseExpired"):
        return "expected one run, TimedOut (or lost to a kill)"
    if last == "TimedOut" and error != "timed out after 1s":
        return "expected the timeout error"
    if last == "LeaseExpired" and "lease expired" not in error:
        return "expected the lease error"
    return None


def test_chaos_2000_mixed_jobs_with_a_worker_killed_every_few_seconds(
        db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker], figures: dict[str, Any]) -> None:
    seed = int(os.environ.get("SCHEDULER_CHAOS_SEED", "20240607"))
    rng = random.Random(seed)
    kinds = [kind for kind, n in MIX.items() for _ in range(n)]
    rng.shuffle(kinds)
    bodies = [job_body(kind, rng) for kind in kinds]
    total = len(kinds)

    c = start_coordinator(env=COORDINATOR)
    killer = WorkerKiller(
        lambda worker_id: start_worker(c.url, slots=SLOTS, env=WORKER,
                                       extra=["--worker-id", worker_id]),
        WORKERS, rng, prefix="chaos")
    kind_of: dict[str, str] = {}
    fed = 0
    next_batch = time.monotonic()

    def feed() -> None:
        nonlocal fed, next_batch
        if fed < total and time.monotonic() >= next_batch:
            ids = submit_batch(c.url, bodies[fed:fed + BATCH])
            kind_of.update(zip(ids, kinds[fed:fed + BATCH], strict=True))
            fed += len(ids)
            next_batch += FEED_EVERY

    elapsed = kill_until(
        killer, lambda: fed == total and terminal_count(db_dsn) == total,
        deadline=DEADLINE, each_tick=feed,
        why_not=lambda: f"not every job terminal: {status_counts(db_dsn)}")
    kills = killer.kills

    jobs = query(db_dsn, """
        SELECT j.id::text AS id, j.status, j.attempts, j.last_error,
               coalesce(array_agg(r.outcome::text ORDER BY r.attempt, r.started_at)
                        FILTER (WHERE r.id IS NOT NULL), '{}') AS outcomes
        FROM jobs j LEFT JOIN job_runs r ON r.job_id = j.id GROUP BY j.id""")
    statuses = Counter(j["status"] for j in jobs)
    wrong = [(kind_of[j["id"]], why, j) for j in jobs
             if (why := wrong_outcome(kind_of[j["id"]], j)) is not None]
    overlaps = overlapping_live_runs(db_dsn)
    duplicates = duplicate_successes(db_dsn)
    outcomes = run_outcomes(db_dsn)
    by_kind: dict[str, Counter[str]] = {}
    for j in jobs:
        by_kind.setdefault(kind_of[j["id"]], Counter())[j["status"]] += 1
    lost_runs = runs_lost_to_kills(db_dsn)
    figures.update(
        seed=seed, jobs=total, kills=kills, outages=kills, workers=WORKERS, slots=SLOTS,
        lease_s=LEASE, lost=total - sum(statuses[s] for s in TERMINAL),
        duplicates=len(duplicates), overlapping_live_runs=len(overlaps),
        wrong_outcomes=len(wrong), statuses=dict(statuses),
        statuses_by_kind={k: dict(v) for k, v in sorted(by_kind.items())},
        runs=sum(outcomes.values()), run_outcomes=outcomes,
        runs_lost_to_kills=lost_runs["runs"], jobs_rerun_after_a_kill=lost_runs["jobs"],
        timeouts_lost_to_kills=sum(1 for j in jobs if kind_of[j["id"]] == "timeout"
                                   and j["outcomes"][-1] == "LeaseExpired"),
        # Claims answered to a worker that was gone (claim_abandoned) end Released and
        # give their attempt back: no fail job is dead-lettered short of 2 real runs.
        released_runs_by_kind=dict(Counter(kind_of[j["id"]] for j in jobs
                                           for o in j["outcomes"] if o == "Released")),
        fail_jobs_short_of_max_attempts=sum(
            1 for j in jobs if kind_of[j["id"]] == "fail"
            and len([o for o in j["outcomes"] if o != "Released"]) < 2),
        duration_s=round(elapsed, 1), jobs_per_s=round(total / elapsed, 1),
    )

    assert total == len(jobs) == len(kind_of)
    assert 0 == figures["lost"], statuses
    assert [] == wrong[:10], f"{len(wrong)} jobs ended wrongly"
    assert [] == overlaps
    assert [] == duplicates
    assert 0 == figures["fail_jobs_short_of_max_attempts"]
    assert kills >= 8, f"only {kills} kills: the chaos did not last"
    assert lost_runs["runs"] > 0, "no run was ever lost to a kill: the kills missed"
