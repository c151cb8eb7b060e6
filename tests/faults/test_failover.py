"""Failover to a synchronous standby under load, with nothing lost.

Two PostgreSQL servers on loopback (tests/pg_cluster.py): a primary and a streaming
standby it replicates to synchronously (a commit returns only once the standby has
flushed it). ``DATABASE_URL`` names both hosts with ``target_session_attrs=read-write``
(libpq multi-host), so a connection lands on whichever one is the primary. Two
coordinators and three workers (COORDINATOR_URL naming both coordinators) run 2,000
mixed jobs, submitted in batches by a client thread all along, while a schedule fires
every second (misfirePolicy ``all``). Mid-load the primary is killed (``kill -9`` of
the postmaster and its backends) and, once both coordinators report themselves not
ready and at least 3 s after the kill (a failover manager's decision), the standby is
promoted.

Checked afterwards:

- every job a 2xx answer accepted exists on the new primary (synchronous replication:
  the answer came after the standby's flush) and ended as its kind must, Succeeded with
  exactly one Succeeded run or DeadLetter for the failing kinds; no two live runs of a
  job overlapped; the refused batches, resent with the same idempotency keys, made no
  job twice;
- the schedule has exactly one job per tick from its first to its last, the ticks of
  the switch caught up;
- the same coordinator and worker processes all along, the coordinators' listeners
  reconnected and every worker finished runs after the promotion;
- ``/health/ready`` answered 503 only inside the switch (from the kill until that
  coordinator's first 200 after the promotion), 200 before and after; no submit was
  accepted between the primary's death and the promotion, and none refused before the
  kill or after both coordinators were ready again.

Figures (time to recover, requests refused, ...) in test-output/faults/ and
docs/reliability.md "Failover to a standby".
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from scheduler_core.command import compose
from tests.faults.common import (
    TERMINAL,
    count_events,
    duplicate_successes,
    events,
    every_second,
    fires,
    overlapping_live_runs,
    query,
    run_outcomes,
    statuses,
    stop_schedule,
    succeeded,
)
from tests.pg_cluster import PgNode, multi_host_dsn, replicated_pair
from tests.support import Coordinator, Worker, wait_until

TIMINGS = {
    # Longer than the switch on a quiet machine (3-4 s): no run is reaped for it.
    # Claims committed but never answered are, one lease later; and on a loaded
    # machine a slow promotion can outlast it (then bodies rerun, one outcome kept).
    "SCHEDULER_LEASE_SECONDS": "10",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
    "SCHEDULER_RETRY_BASE_SECONDS": "0.05",
    "SCHEDULER_RETRY_CAP_SECONDS": "1",
    "SCHEDULER_HANDLERS": "tests.faults.fault_handlers",
}
DBNAME = "failover"
MIX = {"noop": 1300, "sleep": 300, "flaky": 200, "fail": 150, "permanent": 50}
FAILING = {"fail", "permanent"}  # the kinds that end DeadLetter
BATCH, FEED_EVERY = 40, 0.4  # 2,000 jobs fed over about 20 s
KILL_AFTER_ACCEPTED, KILL_AFTER_SUCCEEDED = 700, 300
PROBE_EVERY = 0.1
SWITCH_SECONDS = 3.0  # from the kill to the promotion, at least


def job_body(i: int, kind: str, rng: random.Random) -> dict[str, Any]:
    """Job ``i`` of ``kind``, under an idempotency key of its own: a batch refused and
    sent again names the same jobs."""
    key = {"idempotencyKey": f"failover-{i}"}
    if kind == "noop":
        return {"type": "noop", "payload": {}, "maxAttempts": 10, **key}
    if kind == "sleep":
        return {"type": "sleep", "payload": {"seconds": round(rng.uniform(0.1, 0.6), 2)},
                "maxAttempts": 10, **key}
    if kind == "flaky":
        return {"type": "flaky", "payload": {"succeedOnAttempt": 2}, "maxAttempts": 10, **key}
    if kind == "fail":
        return {"type": "fail", "payload": {"message": "failover-fail"}, "maxAttempts": 2,
                **key}
    assert kind == "permanent"
    return {"type": "fail", "payload": {"message": "failover-permanent", "permanent": True},
            "maxAttempts": 5, **key}


# --- the client: submits all along, resends what was refused --------------------------

@dataclass
class Attempt:
    batch: int
    url: str
    sent: float
    answered: float
    status: int | None  # None: no answer (refused, reset, timed out)
    error: str = ""


@dataclass
class Submitter:
    """Submits ``bodies`` in batches of :data:`BATCH`, one every :data:`FEED_EVERY` s,
    alternating between the coordinators. A batch refused (5xx or no answer) is sent
    again, to the other coordinator, with the same idempotency keys, until a 2xx."""

    urls: list[str]
    bodies: list[dict[str, Any]]
    attempts: list[Attempt] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    created: int = 0  # items answered created=true
    problems: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            with httpx.Client(timeout=15) as client:
                for batch, start in enumerate(range(0, len(self.bodies), BATCH)):
                    due = time.monotonic() + FEED_EVERY
                    self._submit(client, batch, self.bodies[start:start + BATCH])
                    time.sleep(max(0.0, due - time.monotonic()))  # the feed's pace
        except Exception as exc:  # reported by the test
            self.problems.append(f"submitter crashed: {type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    def _submit(self, client: httpx.Client, batch: int, jobs: list[dict[str, Any]]) -> None:
        for n in range(1000):
            url = self.urls[(batch + n) % len(self.urls)]
            sent = time.monotonic()
            try:
                resp = client.post(url + "/api/jobs/batch", json={"jobs": jobs})
            except httpx.HTTPError as exc:
                self.attempts.append(Attempt(batch, url, sent, time.monotonic(), None,
                                             f"{type(exc).__name__}: {exc}"))
            else:
                self.attempts.append(Attempt(batch, url, sent, time.monotonic(),
                                             resp.status_code, resp.text[:200]))
                if resp.status_code in (200, 201):
                    self._accept(jobs, resp.json()["items"])
                    return
                if resp.status_code < 500:
                    self.problems.append(f"batch {batch}: HTTP {resp.status_code}: "
                                         f"{resp.text[:300]}")
                    return
            time.sleep(0.1)  # the resend's pace after a refusal
        self.problems.append(f"batch {batch}: refused 1,000 times")

    def _accept(self, jobs: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
        for body, item in zip(jobs, items, strict=True):
            key = body["idempotencyKey"]
            known = self.accepted.setdefault(key, str(item["id"]))
            if known != str(item["id"]):
                self.problems.append(f"{key} answered as {known} and then {item['id']}")
            self.created += bool(item.get("created", True))

    def refused(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status is None or a.status >= 500]

    def first_accepted_after(self, moment: float) -> float | None:
        return next((a.answered for a in self.attempts
                     if a.sent > moment and a.status in (200, 201)), None)


# --- /health/ready, probed all along ----------------------------------------------------

@dataclass
class Probe:
    sent: float
    answered: float
    status: int | None


class ReadyProbes:
    """``GET /health/ready`` on each coordinator every :data:`PROBE_EVERY` s, each from
    its own thread."""

    def __init__(self, urls: list[str]) -> None:
        self.seen: dict[str, list[Probe]] = {u: [] for u in urls}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(u,), daemon=True)
                         for u in urls]

    def _poll(self, url: str) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status: int | None = client.get(url + "/health/ready").status_code
                except httpx.HTTPError:
                    status = None
                self.seen[url].append(Probe(sent, time.monotonic(), status))
                self._stop.wait(PROBE_EVERY)

    def __enter__(self) -> ReadyProbes:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def first(self, url: str, status: int, after: float) -> float | None:
        """When the first probe sent after ``after`` that got ``status`` was answered."""
        return next((p.answered for p in list(self.seen[url])
                     if p.sent > after and p.status == status), None)


# --- the test ---------------------------------------------------------------------------

@pytest.fixture
def cluster() -> Iterator[tuple[PgNode, PgNode, str]]:
    """A primary with a synchronous standby, the scheduler's database migrated on the
    primary, and the multi-host URL naming both."""
    with replicated_pair(synchronous=True) as (primary, standby):
        primary.scalar(f"CREATE DATABASE {DBNAME}")
        trio.run(compose.migrate, primary.dsn(DBNAME))
        yield primary, standby, multi_host_dsn([primary, standby], DBNAME,
                                               target_session_attrs="read-write",
                                               connect_timeout="5")


def moment(check: Callable[[], float | None], what: str) -> float:
    """The moment ``check`` returns (polled with a deadline)."""
    found = wait_until(check, timeout=60, interval=0.05, what=what)
    assert found is not None
    return found


def wrong_outcome(kind: str, job: dict[str, Any]) -> str | None:
    """Why ``job`` (status, outcomes of its runs in order) did not end as ``kind`` must."""
    outcomes = job["outcomes"]
    if kind in FAILING:
        if job["status"] != "DeadLetter" or "Succeeded" in outcomes:
            return "expected DeadLetter with no Succeeded run"
        return None
    if job["status"] != "Succeeded" or outcomes.count("Succeeded") != 1:
        return "expected Succeeded with exactly one Succeeded run"
    if outcomes[-1] != "Succeeded":
        return "a run after the Succeeded one"
    return None


def test_failover_to_a_synchronous_standby_under_load_loses_and_doubles_nothing(
        cluster: tuple[PgNode, PgNode, str], figures: dict[str, Any]) -> None:
    primary, standby, dsn = cluster
    rng = random.Random(19)
    kinds = [kind for kind, n in MIX.items() for _ in range(n)]
    rng.shuffle(kinds)
    bodies = [job_body(i, kind, rng) for i, kind in enumerate(kinds)]
    kind_of = {b["idempotencyKey"]: k for b, k in zip(bodies, kinds, strict=True)}
    started = time.monotonic()
    # Started here, not through the `processes` fixture: they must stop before the
    # cluster fixture stops the servers.
    procs: list[Coordinator | Worker] = []
    try:
        coordinators = [Coordinator(dsn, env=TIMINGS) for _ in range(2)]
        procs += coordinators
        for c in coordinators:
            c.wait_healthy(timeout=30)
        urls = [c.url for c in coordinators]
        schedule = every_second(urls[0])
        firing_since = time.monotonic()
        workers = [Worker(",".join(urls[i % 2:] + urls[:i % 2]), slots=4, env=TIMINGS,
                          extra=["--worker-id", f"f{i}"]) for i in range(3)]
        procs += workers
        pids = [p.pid for p in procs]

        submitter = Submitter(urls, bodies)
        feeder = threading.Thread(target=submitter.run, daemon=True)
        with ReadyProbes(urls) as probes:
            wait_until(lambda: all(probes.first(u, 200, 0) for u in urls), timeout=30,
                       what="both coordinators ready")
            feeder.start()
            wait_until(lambda: len(submitter.accepted) >= KILL_AFTER_ACCEPTED
                       and succeeded(dsn) >= KILL_AFTER_SUCCEEDED, timeout=90, interval=0.05,
                       what=f"{KILL_AFTER_ACCEPTED} jobs accepted and "
                            f"{KILL_AFTER_SUCCEEDED} Succeeded")
            at_kill = statuses(dsn)
            accepted_at_kill = len(submitter.accepted)

            # The switch: the primary dies; once both coordinators know it, promote.
            kill_db = query(dsn, "SELECT now() AS t")[0]["t"]
            kill_at = primary.kill()  # when the SIGKILL was sent
            assert kill_at is not None
            killed_at = time.monotonic()  # the postmaster gone
            wait_until(lambda: all(probes.first(u, 503, kill_at) for u in urls), timeout=30,
                       interval=0.05, what="/health/ready 503 on both after the kill")
            # A failover manager takes a few seconds to decide: the switch lasts at
            # least SWITCH_SECONDS, so some ticks of the schedule fall inside it.
            time.sleep(max(0.0, kill_at + SWITCH_SECONDS - time.monotonic()))
            promote_at = time.monotonic()
            standby.promote()
            promoted_at = time.monotonic()
            promoted_db = query(dsn, "SELECT now() AS t")[0]["t"]
            ready_at = {u: moment(partial(probes.first, u, 200, promoted_at),
                                  f"{u} /health/ready 200 after the promotion") for u in urls}
            recovered_at = max(ready_at.values())
            first_2xx = moment(partial(submitter.first_accepted_after, kill_at),
                               "a submit accepted after the kill")
            figures.update(
                jobs=len(bodies), accepted_at_kill=accepted_at_kill, jobs_at_kill=at_kill,
                kill_s=round(killed_at - kill_at, 2),
                kill_to_both_not_ready_s=round(promote_at - kill_at, 2),
                promote_s=round(promoted_at - promote_at, 2),
                kill_to_first_2xx_s=round(first_2xx - kill_at, 2),
                promotion_to_first_2xx_s=round(first_2xx - promote_at, 2),
                kill_to_ready_s=[round(ready_at[u] - kill_at, 2) for u in urls],
                promotion_to_ready_s=[round(ready_at[u] - promote_at, 2) for u in urls])

            assert submitter.done.wait(timeout=120), "the submitter did not finish"
            feeder.join(timeout=10)
            assert [] == submitter.problems
            assert len(bodies) == len(submitter.accepted)
            ids = set(submitter.accepted.values())
            wait_until(lambda: query(dsn, """
                SELECT count(*) AS n FROM jobs
                WHERE schedule_id IS NULL AND status = ANY(%s)""", (list(TERMINAL),)
                )[0]["n"] >= len(ids), timeout=120, interval=0.2,
                what=f"all {len(ids)} jobs terminal; now {statuses(dsn)}")
            stop_schedule(urls[1], schedule)
            fired_for = time.monotonic() - firing_since
            wait_until(lambda: set(fires(dsn, schedule)["statuses"]) == {"Succeeded"},
                       timeout=30, what="every fire of the schedule Succeeded")
            # A last probe of each, well after the switch, before the probes stop.
            last_probe = time.monotonic()
            wait_until(lambda: all(probes.first(u, 200, last_probe) for u in urls),
                       timeout=30, what="both coordinators still ready")
        elapsed = time.monotonic() - started

        # What happened, recorded before it is judged.
        rows = query(dsn, """
            SELECT j.id::text AS id, j.idempotency_key AS key, j.status,
                   array_remove(array_agg(r.outcome::text ORDER BY r.started_at, r.id),
                                NULL) AS outcomes
            FROM jobs j LEFT JOIN job_runs r ON r.job_id = j.id
            WHERE j.schedule_id IS NULL GROUP BY j.id""")
        found = {r["key"]: r for r in rows}
        lost = sorted(k for k, i in submitter.accepted.items()
                      if k not in found or found[k]["id"] != i)
        wrong = {k: (kind_of[k], why, found[k]["status"], found[k]["outcomes"])
                 for k in found if (why := wrong_outcome(kind_of[k], found[k]))}
        doubled = duplicate_successes(dsn)
        cron = fires(dsn, schedule)
        span = query(dsn, """
            SELECT min(fire_time) AS first, max(fire_time) AS last,
                   count(*) FILTER (WHERE fire_time > %s AND fire_time < %s) AS in_switch
            FROM jobs WHERE schedule_id = %s""", (kill_db, promoted_db, schedule))[0]
        by_worker = {r["worker_id"]: r["n"] for r in query(dsn, """
            SELECT worker_id, count(*) AS n FROM job_runs
            WHERE finished_at > %s GROUP BY worker_id""", (promoted_db,))}
        ready = {u: {"before": Counter(p.status for p in probes.seen[u] if p.answered < kill_at),
                     "inside": Counter(p.status for p in probes.seen[u]
                                       if p.sent > kill_at and p.answered < ready_at[u]),
                     "after": Counter(p.status for p in probes.seen[u] if p.sent > ready_at[u])}
                 for u in urls}
        refused = submitter.refused()
        figures.update(
            accepted=len(submitter.accepted), created=submitter.created,
            requests=len(submitter.attempts), requests_refused=len(refused),
            refused_as=dict(Counter(str(a.status) for a in refused)),
            ready_probes=[{k: dict(v) for k, v in r.items()} for r in ready.values()],
            lost=len(lost), duplicates=len(doubled), ended_wrongly=len(wrong),
            cron_fires=cron["fires"], cron_ticks_missing=cron["ticks_missing"],
            cron_fired_twice=cron["fired_twice"], cron_ticks_in_switch=span["in_switch"],
            statuses=statuses(dsn), run_outcomes=run_outcomes(dsn),
            listener_reconnects=[len(events(c, "listener_connected")) - 1
                                 for c in coordinators],
            worker_heartbeat_failures=count_events(workers, "heartbeat_failed"),
            worker_heartbeat_recoveries=count_events(workers, "heartbeat_recovered"),
            worker_claim_failures=count_events(workers, "claim_failed"),
            worker_completion_retries=count_events(workers, "completion_failed"),
            worker_completions_refused=count_events(workers, "completion_refused"),
            worker_fail_overs=count_events(workers, "coordinator_failed_over"),
            runs_after_promotion=by_worker,
            duration_s=round(elapsed, 1),
        )

        # Nothing lost, nothing made twice: the jobs are exactly the accepted ones, each
        # ended as its kind must.
        assert [] == lost[:20], f"{len(lost)} accepted jobs lost"
        assert len(bodies) == len(rows), "jobs made that no answer accepted"
        assert {} == dict(list(wrong.items())[:20]), f"{len(wrong)} jobs ended wrongly"
        assert [] == doubled
        assert [] == overlapping_live_runs(dsn)

        # One fire per tick, across the switch: the ticks inside it fired late, once.
        assert (0, 0) == (cron["fired_twice"], cron["ticks_missing"]), cron
        assert cron["fires"] >= fired_for - 3, (fired_for, cron)
        assert span["first"] < kill_db < promoted_db < span["last"], span
        assert span["in_switch"] >= int(SWITCH_SECONDS) - 1, span

        # Nobody restarted; everybody back.
        assert pids == [p.pid for p in procs]
        assert all(p.popen.poll() is None for p in procs)
        for c in coordinators:
            assert len(events(c, "listener_connected")) >= 2, "listener never reconnected"
        assert {f"f{i}" for i in range(3)} <= set(by_worker), by_worker
        for w in workers:  # each one's heartbeats failed in the switch and came back
            assert events(w, "heartbeat_recovered"), w.args

        # /health/ready: 503 only inside the switch. Nothing accepted while no server
        # took writes (the primary dead, the standby not yet promoted), nothing refused
        # before the kill or after the switch.
        for u in urls:
            assert {200} == set(ready[u]["before"]), (u, ready[u])
            assert 503 in ready[u]["inside"], (u, ready[u])
            assert {200} == set(ready[u]["after"]), (u, ready[u])
        assert [] == [a for a in submitter.attempts if a.status in (200, 201)
                      and a.sent > killed_at and a.answered < promote_at]
        assert [] == [a for a in refused if a.answered < kill_at or a.sent > recovered_at]
    finally:
        for p in reversed(procs):  # workers first: their drains can still reach one
            p.stop(timeout=10)
