"""Helpers shared by the fault tests: reading the database, submitting in batches,
the invariants every fault must leave intact (and the order dependencies impose),
workers killed with -9 every few seconds, and reading JSON log lines.

Every wait goes through :func:`tests.support.wait_until` (a deadline, never a bare
sleep for "long enough").
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.support import Proc, Worker, submit_batch

TERMINAL = ("Succeeded", "DeadLetter", "Cancelled")


def query(dsn: str, sql: str, params: dict[str, Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def status_counts(dsn: str) -> dict[str, int]:
    return {r["status"]: r["n"] for r in query(
        dsn, "SELECT status, count(*) AS n FROM jobs GROUP BY status")}


def succeeded(dsn: str) -> int:
    """Submitted jobs Succeeded (the schedule's are counted apart)."""
    return int(query(dsn, """SELECT count(*) AS n FROM jobs
                             WHERE status = 'Succeeded' AND schedule_id IS NULL""")[0]["n"])


def statuses(dsn: str) -> dict[str, int]:
    return {r["status"]: r["n"] for r in query(dsn, """
        SELECT status, count(*) AS n FROM jobs WHERE schedule_id IS NULL GROUP BY status""")}


def terminal_count(dsn: str) -> int:
    return int(query(dsn, "SELECT count(*) AS n FROM jobs WHERE status = ANY(%s)",
                     (list(TERMINAL),))[0]["n"])


def submit_all(url: str, jobs: list[dict[str, Any]], *, per_request: int = 500) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(jobs), per_request):
        ids += submit_batch(url, jobs[start:start + per_request])
    return ids


# --- the invariants ----------------------------------------------------------------------

def overlapping_live_runs(dsn: str) -> list[dict[str, Any]]:
    """Pairs of different runs of one job whose live intervals overlap.

    A run is live from its start until it finished (or, unfinished, until its lease
    ends); two live runs of one job at once would break "at most one live run"."""
    return query(dsn, """
        SELECT a.job_id, a.id AS a, b.id AS b, a.outcome AS a_outcome, b.outcome AS b_outcome
        FROM job_runs a JOIN job_runs b ON a.job_id = b.job_id AND a.id < b.id
        WHERE tstzrange(a.started_at, COALESCE(a.finished_at, a.lease_expires_at), '[)')
           && tstzrange(b.started_at, COALESCE(b.finished_at, b.lease_expires_at), '[)')
    """)


def duplicate_successes(dsn: str) -> list[dict[str, Any]]:
    """Jobs with more than one Succeeded run (fencing must make that impossible)."""
    return query(dsn, """
        SELECT job_id, count(*) AS n FROM job_runs WHERE outcome = 'Succeeded'
        GROUP BY job_id HAVING count(*) > 1""")


def succeeded_without_one_succeeded_run(dsn: str) -> list[dict[str, Any]]:
    """Succeeded jobs whose runs do not hold exactly one Succeeded run."""
    return query(dsn, """
        SELECT j.id, count(r.id) FILTER (WHERE r.outcome = 'Succeeded') AS ok
        FROM jobs j LEFT JOIN job_runs r ON r.job_id = j.id
        WHERE j.status = 'Succeeded' GROUP BY j.id
        HAVING count(r.id) FILTER (WHERE r.outcome = 'Succeeded') <> 1""")


def run_outcomes(dsn: str) -> dict[str, int]:
    return {str(r["outcome"]): r["n"] for r in query(
        dsn, "SELECT outcome, count(*) AS n FROM job_runs GROUP BY outcome")}


def runs_lost_to_kills(dsn: str) -> dict[str, int]:
    """Runs that ended ``LeaseExpired`` (their worker died under them) and the jobs
    that had one, so were run again."""
    row = query(dsn, """SELECT count(*) AS runs, count(DISTINCT job_id) AS jobs
                        FROM job_runs WHERE outcome = 'LeaseExpired'""")[0]
    return {"runs": int(row["runs"]), "jobs": int(row["jobs"])}


def runs_before_parents(dsn: str) -> list[dict[str, Any]]:
    """Runs of a dependent that started before its parent's Succeeded run finished, or
    whose parent has no Succeeded run at all (edges of ``job_deps``).

    Every run of the child counts, not only its last: a child released too early and
    then lost to a kill would still have started before its parent had succeeded."""
    return query(dsn, """
        SELECT d.parent, d.child, c.id AS run, c.outcome, c.started_at,
               p.finished_at AS parent_succeeded_at
        FROM job_deps d
        JOIN job_runs c ON c.job_id = d.child
        LEFT JOIN job_runs p ON p.job_id = d.parent AND p.outcome = 'Succeeded'
        WHERE p.id IS NULL OR c.started_at < p.finished_at
        ORDER BY c.started_at""")


# --- processes and their logs ---------------------------------------------------------

def log_lines(proc: Proc) -> list[dict[str, Any]]:
    """The JSON lines a process logged (SCHEDULER_LOG_FORMAT=json); other lines skipped."""
    found = []
    # Read from the file: the process writes it directly (and it may be stopped).
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def events(proc: Proc, name: str) -> list[dict[str, Any]]:
    return [e for e in log_lines(proc) if e.get("event") == name]


def count_events(procs: Iterable[Proc], name: str) -> int:
    return sum(len(events(p, name)) for p in procs)


def http_status(url: str, *, timeout: float = 2.0) -> int | None:
    """The status of ``GET url``, or None when nothing answered."""
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def metric(url: str, name: str) -> float:
    """The sum of every sample of ``name`` on the coordinator's /metrics."""
    text = httpx.get(url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- workers killed with -9 -----------------------------------------------------------

KILL_EVERY = (2.0, 3.0)  # seconds between kills, drawn uniformly


class WorkerKiller:
    """The fault tests' small supervision loop (like ``scheduler up``'s): ``count``
    workers started by ``start(worker_id)``, of which :meth:`kill_when_due` kill -9s a
    random one every ``every`` s and starts its replacement. Even slots come back under
    the dead worker's id (as a StatefulSet's pod would), odd ones under a new one."""

    def __init__(self, start: Callable[[str], Worker], count: int, rng: random.Random, *,
                 prefix: str, every: tuple[float, float] = KILL_EVERY) -> None:
        self._start, self._rng, self._prefix, self._every = start, rng, prefix, every
        self._generation = 0
        self.kills = 0
        self.killed: list[Worker] = []
        self.workers = [self._spawn(slot) for slot in range(count)]
        self.restart_clock()

    def _spawn(self, slot: int) -> Worker:
        self._generation += 1
        worker_id = (f"{self._prefix}{slot}" if slot % 2 == 0
                     else f"{self._prefix}{slot}-{self._generation}")
        return self._start(worker_id)

    def restart_clock(self) -> None:
        """The next kill falls ``every`` s from now."""
        self.next_kill = time.monotonic() + self._rng.uniform(*self._every)

    def kill_when_due(self) -> bool:
        """Kill -9 a random worker and start its replacement, if the time has come."""
        if time.monotonic() < self.next_kill:
            return False
        slot = self._rng.randrange(len(self.workers))
        victim = self.workers[slot]
        victim.signal(signal.SIGKILL)
        victim.wait(timeout=10)
        victim.stop()  # closes its log (kept for reading)
        self.killed.append(victim)
        self.kills += 1
        self.workers[slot] = self._spawn(slot)
        self.restart_clock()
        return True


def kill_until(killer: WorkerKiller, done: Callable[[], bool], *, deadline: float,
               why_not: Callable[[], str], each_tick: Callable[[], None] | None = None,
               check_every: float = 0.5, tick: float = 0.05) -> float:
    """Go on killing workers (and calling ``each_tick``) until ``done()``, asked every
    ``check_every`` s, is true; the seconds it took. After ``deadline`` s, an
    AssertionError saying ``why_not()``: the deadline only ever fails a test."""
    started = time.monotonic()
    next_check = started
    while True:
        if each_tick is not None:
            each_tick()
        killer.kill_when_due()
        now = time.monotonic()
        if now >= next_check:
            next_check = now + check_every
            if done():
                return time.monotonic() - started
        if now - started > deadline:
            raise AssertionError(f"after {deadline} s and {killer.kills} kills: {why_not()}")
        time.sleep(tick)  # the loop's pace, not a wait for anything


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.started, 2)


# --- cron: one fire per tick ----------------------------------------------------------

def every_second(url: str) -> str:
    """A schedule firing a noop every second, catching up every missed fire
    (misfirePolicy ``all``): across any outage, each tick must give exactly one job."""
    resp = httpx.post(url + "/api/jobs", json={
        "type": "noop", "payload": {}, "cron": "* * * * * *", "misfirePolicy": "all"},
        timeout=10)
    assert 201 == resp.status_code, resp.text
    return str(resp.json()["id"])


def stop_schedule(url: str, schedule_id: str) -> None:
    resp = httpx.delete(f"{url}/api/schedules/{schedule_id}", timeout=10)
    assert resp.status_code in (200, 204), resp.text


def fires(dsn: str, schedule_id: str) -> dict[str, Any]:
    """The schedule's fires: how many, ticks fired twice, ticks missing between the
    first and the last, and its jobs by status."""
    rows = query(dsn, """SELECT fire_time, status FROM jobs WHERE schedule_id = %s
                         ORDER BY fire_time""", (schedule_id,))
    times = [r["fire_time"] for r in rows]
    twice = len(times) - len(set(times))
    missing = 0
    if times:
        span = int((times[-1] - times[0]).total_seconds()) + 1
        missing = span - len(set(times))
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {"fires": len(times), "fired_twice": twice, "ticks_missing": missing,
            "statuses": statuses}
