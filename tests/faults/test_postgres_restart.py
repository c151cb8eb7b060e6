"""PostgreSQL stopped for a few seconds in the middle of a run, then started again.

The test owns its server (an embedded PostgreSQL in a temp folder, whatever
DATABASE_URL says), so it can stop it. The coordinator and the workers are never
restarted: they ride out the outage (requests fail with 5xx and are retried, pooled
connections are replaced, the listener reconnects), /health/ready answers 503 while
the database is away and 200 once it is back, and every job Succeeds exactly once.
A schedule firing every second (misfirePolicy ``all``) has exactly one job per tick,
the ticks of the outage caught up afterwards.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from scheduler_core.command import compose, pgserver
from tests.faults.common import (
    count_events,
    duplicate_successes,
    every_second,
    fires,
    http_status,
    overlapping_live_runs,
    run_outcomes,
    statuses,
    stop_schedule,
    submit_all,
    succeeded,
    succeeded_without_one_succeeded_run,
)
from tests.support import Coordinator, Worker, wait_until

TIMINGS = {
    # Longer than the outage: the leases outlive it, so no run is reaped for it.
    "SCHEDULER_LEASE_SECONDS": "15",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
}
OUTAGE_SECONDS = 4.0


@pytest.fixture
def own_postgres() -> Iterator[pgserver.EmbeddedPostgres]:
    with pgserver.temporary_server(durable=False) as server:
        trio.run(compose.migrate, server.dsn)
        yield server


def test_postgres_restarted_mid_run_is_ridden_out_without_restarts_or_lost_jobs(
        own_postgres: pgserver.EmbeddedPostgres, figures: dict[str, Any]) -> None:
    server = own_postgres
    dsn = server.dsn
    rng = random.Random(5)
    started = time.monotonic()
    # Started here, not through the `processes` fixture: they must stop before the
    # server fixture stops the server.
    procs: list[Coordinator | Worker] = []
    try:
        c = Coordinator(dsn, env=TIMINGS)
        procs.append(c)
        c.wait_healthy(timeout=30)
        schedule = every_second(c.url)
        firing_since = time.monotonic()
        workers = [Worker(c.url, slots=4, env=TIMINGS, extra=["--worker-id", f"p{i}"])
                   for i in range(2)]
        procs += workers
        pids = [p.pid for p in procs]

        # 300 jobs, one in four a sleep of 0.5-1.5 s: about 12 s of work on 8 slots.
        jobs = [{"type": "sleep", "payload": {"seconds": round(rng.uniform(0.5, 1.5), 2)}}
                if i % 4 == 0 else {"type": "noop", "payload": {}} for i in range(300)]
        ids = submit_all(c.url, jobs)
        wait_until(lambda: succeeded(dsn) >= 60, timeout=60, interval=0.05,
                   what="60 jobs Succeeded")
        before = statuses(dsn)

        # The outage: /health/ready is polled all along from another thread.
        seen: list[tuple[float, float, int | None]] = []  # (sent, answered, status)
        polling = threading.Event()

        def poll_ready() -> None:
            while not polling.is_set():
                sent = time.monotonic()
                status = http_status(c.url + "/health/ready", timeout=5)
                seen.append((sent, time.monotonic(), status))
                time.sleep(0.2)

        poller = threading.Thread(target=poll_ready, daemon=True)
        poller.start()
        try:
            server.stop()
            stopped_at = time.monotonic()
            wait_until(lambda: any(t > stopped_at and s == 503 for t, _, s in seen),
                       timeout=OUTAGE_SECONDS + 10, what="/health/ready 503 during the outage")
            time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.monotonic()))
            starting_at = time.monotonic()  # it accepts connections before start() returns
            server.start()
            restarted_at = time.monotonic()
            wait_until(lambda: any(t > restarted_at and s == 200 for t, _, s in seen),
                       timeout=30, what="/health/ready 200 after the outage")
            ready_at = next(t for t, _, s in seen if t > restarted_at and s == 200)
        finally:
            polling.set()
            poller.join(timeout=5)
        assert dsn == server.dsn
        # Every readiness probe sent and answered while the server was down said 503.
        during = [s for sent, answered, s in seen if stopped_at < sent and answered < starting_at]
        assert 503 in during and 200 not in during, during

        # Jobs submitted after the outage flow too.
        ids += submit_all(c.url, [{"type": "noop", "payload": {}} for _ in range(100)])
        wait_until(lambda: succeeded(dsn) == len(ids), timeout=90, interval=0.1,
                   what=f"all {len(ids)} jobs Succeeded")
        stop_schedule(c.url, schedule)
        fired_for = time.monotonic() - firing_since
        wait_until(lambda: set(fires(dsn, schedule)["statuses"]) == {"Succeeded"}, timeout=30,
                   what="every fire of the schedule Succeeded")
        elapsed = time.monotonic() - started

        assert {"Succeeded": len(ids)} == statuses(dsn)
        cron = fires(dsn, schedule)
        assert (0, 0) == (cron["fired_twice"], cron["ticks_missing"]), cron
        assert cron["fires"] >= fired_for - 3, (fired_for, cron)  # every tick, caught up
        assert [] == duplicate_successes(dsn)
        assert [] == succeeded_without_one_succeeded_run(dsn)
        assert [] == overlapping_live_runs(dsn)
        # Nobody was restarted: the same processes, all still running.
        assert pids == [p.pid for p in procs]
        assert all(p.popen.poll() is None for p in procs)
        assert 200 == http_status(c.url + "/health/ready")
        assert 200 == http_status(c.url + "/health")
        outcomes = run_outcomes(dsn)
        figures.update(
            jobs=len(ids), kills=0, outages=1, outage_s=round(starting_at - stopped_at, 2),
            restart_s=round(restarted_at - starting_at, 2),
            ready_again_after_restart_s=round(ready_at - restarted_at, 2),
            ready_during_outage={str(s): during.count(s) for s in sorted(set(during), key=str)},
            jobs_before_outage=before, lost=len(ids) - succeeded(dsn),
            duplicates=len(duplicate_successes(dsn)), runs=sum(outcomes.values()),
            run_outcomes=outcomes, cron_fires=cron["fires"],
            cron_fired_twice=cron["fired_twice"], cron_ticks_missing=cron["ticks_missing"],
            listener_reconnects=count_events([c], "listener_connected") - 1,
            worker_heartbeat_failures=count_events(workers, "heartbeat_failed"),
            worker_completion_retries=count_events(workers, "completion_failed"),
            duration_s=round(elapsed, 1),
        )
    finally:
        for p in reversed(procs):
            p.stop(timeout=10)
