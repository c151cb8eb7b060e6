"""kill -9 of the coordinator under load, twice, restarted on the same port and the
same database. The workers are never restarted: they go on running the jobs they
hold, retry their heartbeats, claims and completions with backoff, and deliver them
to the new coordinator. Every job Succeeds, none with two Succeeded runs.

A schedule fires every second all along (misfirePolicy ``all``): the restarted
coordinator catches up the ticks missed while none ran, and no tick fires twice.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import Any

from tests.faults.common import (
    count_events,
    duplicate_successes,
    every_second,
    fires,
    overlapping_live_runs,
    query,
    run_outcomes,
    statuses,
    stop_schedule,
    submit_all,
    succeeded,
    succeeded_without_one_succeeded_run,
)
from tests.support import Coordinator, Worker, wait_until

TIMINGS = {
    "SCHEDULER_LEASE_SECONDS": "10",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
}
JOBS = 600
KILLS = 2


def test_coordinator_killed_twice_under_load_loses_nothing_and_runs_nothing_twice(
        db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker], processes: list[Coordinator | Worker],
        figures: dict[str, Any]) -> None:
    rng = random.Random(3)
    started = time.monotonic()
    c = start_coordinator(env=TIMINGS)
    port = c.port
    schedule = every_second(c.url)
    firing_since = time.monotonic()
    workers = [start_worker(c.url, slots=4, env=TIMINGS, extra=["--worker-id", f"k{i}"])
               for i in range(3)]
    worker_pids = [w.pid for w in workers]
    # One job in five a sleep of 0.2-0.8 s, the rest noops: about 15 s of work on 12 slots.
    jobs = [{"type": "sleep", "payload": {"seconds": round(rng.uniform(0.2, 0.8), 2)}}
            if i % 5 == 0 else {"type": "noop", "payload": {}} for i in range(JOBS)]
    ids = submit_all(c.url, jobs)

    outages = []
    for k in range(KILLS):
        # Killed while jobs are flowing: a quarter, then about half of them done.
        target = JOBS * (k + 1) // 4
        wait_until(lambda target=target: succeeded(db_dsn) >= target, timeout=60,
                   interval=0.05, what=f"{target} jobs Succeeded")
        running = statuses(db_dsn).get("Running", 0)
        c.signal(signal.SIGKILL)
        c.wait(timeout=5)
        killed_at = time.monotonic()
        time.sleep(1.0)  # down for a while: the workers' requests fail meanwhile
        c = start_coordinator(port=port, env=TIMINGS)
        outages.append({"down_s": round(time.monotonic() - killed_at, 2),
                        "running_when_killed": running})

    wait_until(lambda: succeeded(db_dsn) == JOBS, timeout=90, interval=0.1,
               what=f"all {JOBS} jobs Succeeded")
    stop_schedule(c.url, schedule)
    fired_for = time.monotonic() - firing_since
    wait_until(lambda: set(fires(db_dsn, schedule)["statuses"]) == {"Succeeded"}, timeout=30,
               what="every fire of the schedule Succeeded")
    elapsed = time.monotonic() - started

    assert {"Succeeded": JOBS} == statuses(db_dsn)
    assert set(ids) == {str(r["id"]) for r in query(
        db_dsn, "SELECT id FROM jobs WHERE schedule_id IS NULL")}
    cron = fires(db_dsn, schedule)
    assert (0, 0) == (cron["fired_twice"], cron["ticks_missing"]), cron
    assert cron["fires"] >= fired_for - 3, (fired_for, cron)  # every tick, caught up
    assert [] == duplicate_successes(db_dsn)
    assert [] == succeeded_without_one_succeeded_run(db_dsn)
    assert [] == overlapping_live_runs(db_dsn)
    # The same worker processes all along, and each one came back to the coordinator.
    assert worker_pids == [w.pid for w in workers]
    assert all(w.popen.poll() is None for w in workers)
    for w in workers:
        wait_until(lambda w=w: count_events([w], "heartbeat_recovered") >= KILLS, timeout=15,
                   what="each worker's heartbeat back after each outage")
    for w in workers:  # before the coordinator: their drains can reach it
        w.stop()
    outcomes = run_outcomes(db_dsn)
    figures.update(
        jobs=JOBS, kills=KILLS, outages=len(outages), outage_detail=outages,
        lost=JOBS - succeeded(db_dsn), duplicates=len(duplicate_successes(db_dsn)),
        runs=sum(outcomes.values()), run_outcomes=outcomes,
        heartbeat_failures=count_events(workers, "heartbeat_failed"),
        completion_retries=count_events(workers, "completion_failed"),
        stale_completions_refused=count_events(workers, "completion_refused"),
        cron_fires=cron["fires"], cron_fired_twice=cron["fired_twice"],
        cron_ticks_missing=cron["ticks_missing"],
        coordinators_started=len([p for p in processes if isinstance(p, Coordinator)]),
        duration_s=round(elapsed, 1),
    )
