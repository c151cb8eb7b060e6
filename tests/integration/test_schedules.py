"""Recurring jobs end to end: real coordinators, real PostgreSQL, real HTTP.

Three settings:

- one module-scoped coordinator for the API, pause/resume/delete and overlap cases
  (each test makes schedules of its own; no worker runs, so jobs stay unfinished);
- two coordinators on one database, one schedule every 2 s for 20 s: one job per fire;
- one coordinator stopped for a few fires and started again: the misfire policies.

Times are compared on the database clock (jobs.created_at, schedules.updated_at),
never the test's. Every wait polls with a deadline.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support import Coordinator, db_now, query, record_figures, wait_until

SECOND = dt.timedelta(seconds=1)
GRACE = dt.timedelta(seconds=1)  # actors.coordinator.cron_expander.MISFIRE_GRACE_SECONDS


# -- helpers -----------------------------------------------------------------------------



def fires_of(dsn: str, schedule_id: str) -> list[dict[str, Any]]:
    """The jobs made from a schedule, oldest fire first."""
    return query(dsn, "SELECT id, fire_time, status, run_at, created_at FROM jobs "
                 "WHERE schedule_id = %s ORDER BY fire_time", schedule_id)


def fire_times(dsn: str, schedule_id: str) -> list[dt.datetime]:
    return [r["fire_time"] for r in fires_of(dsn, schedule_id)]


def wait_for_fires(dsn: str, schedule_id: str, count: int, *, after: dt.datetime | None = None,
                   timeout: float = 15.0) -> list[dt.datetime]:
    def enough() -> list[dt.datetime]:
        times = [t for t in fire_times(dsn, schedule_id) if after is None or t > after]
        return times if len(times) >= count else []
    return wait_until(enough, timeout=timeout,
                      what=f"{count} fires of schedule {schedule_id}")


def wait_for_db_time(dsn: str, when: dt.datetime, timeout: float = 15.0) -> None:
    wait_until(lambda: db_now(dsn) > when, timeout=timeout, what=f"database clock past {when}")


def create(http: httpx.Client, cron: str = "* * * * * *", **body: Any) -> dict[str, Any]:
    resp = http.post("/api/jobs", json={"type": "noop", "cron": cron, **body})
    assert 201 == resp.status_code, resp.text
    schedule: dict[str, Any] = resp.json()
    return schedule


def updated_at(dsn: str, schedule_id: str) -> dt.datetime:
    value: dt.datetime = query(dsn, "SELECT updated_at FROM schedules WHERE id = %s",
                               schedule_id)[0]["updated_at"]
    return value


def contiguous(times: list[dt.datetime], step: dt.timedelta) -> bool:
    return all(b - a == step for a, b in itertools.pairwise(times))


def assert_error(resp: httpx.Response, status: int, field: str | None, error: str) -> None:
    assert status == resp.status_code, resp.text
    body = resp.json()
    assert (error, field) == (body["error"], body["field"])
    assert isinstance(body["message"], str) and body["message"]


def make_database(pg_admin_dsn: str, template_dsn: str, tag: str) -> str:
    name = f"sc_{tag}_{uuid.uuid4().hex[:12]}"
    template = conninfo_to_dict(template_dsn)["dbname"]
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}".encode())
    return name


def drop_database(pg_admin_dsn: str, name: str) -> None:
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@pytest.fixture(scope="module")
def module_dsn(pg_admin_dsn: str, template_dsn: str) -> Iterator[str]:
    name = make_database(pg_admin_dsn, template_dsn, "schedules")
    yield make_conninfo(pg_admin_dsn, dbname=name)
    drop_database(pg_admin_dsn, name)


@pytest.fixture
def http(api: Coordinator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        yield client


# -- the API -----------------------------------------------------------------------------


def test_the_list_includes_a_new_schedule(http: httpx.Client) -> None:
    schedule = create(http, "@daily")
    resp = http.get("/api/schedules")
    assert 200 == resp.status_code
    assert schedule["id"] in [s["id"] for s in resp.json()["items"]]


def test_a_schedule_accepts_its_misfire_and_overlap_policies(http: httpx.Client) -> None:
    schedule = create(http, "@daily", misfirePolicy="all", overlapPolicy="queue",
                      timezone="Europe/Berlin")
    got = http.get(f"/api/schedules/{schedule['id']}").json()
    assert ("all", "queue", "Europe/Berlin", True) == (
        got["misfirePolicy"], got["overlapPolicy"], got["timezone"], got["enabled"])


def test_get_shows_the_recent_fires_newest_first(http: httpx.Client, module_dsn: str) -> None:
    schedule = create(http)
    wait_for_fires(module_dsn, schedule["id"], 3)
    body = http.get(f"/api/schedules/{schedule['id']}").json()
    fires = body["recentFires"]
    assert {"id", "fireTime", "status", "createdAt"} == set(fires[0])
    assert sorted((f["fireTime"] for f in fires), reverse=True) == [f["fireTime"] for f in fires]
    assert len(fires) >= 3


def test_the_recent_fires_are_at_most_twenty(http: httpx.Client, module_dsn: str) -> None:
    schedule = create(http, misfirePolicy="all")
    # Backdate the schedule: its first pass catches up 30 missed fires at once.
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute("UPDATE schedules SET enabled = false WHERE id = %s", (schedule["id"],))
        conn.execute("UPDATE schedules SET next_fire_at = date_trunc('second', now()) "
                     "- interval '30 seconds', enabled = true WHERE id = %s",
                     (schedule["id"],))
    wait_for_fires(module_dsn, schedule["id"], 25)
    assert 20 == len(http.get(f"/api/schedules/{schedule['id']}").json()["recentFires"])


def test_a_job_made_by_a_schedule_links_back_to_it(http: httpx.Client,
                                                  module_dsn: str) -> None:
    schedule = create(http)
    wait_for_fires(module_dsn, schedule["id"], 1)
    first = fires_of(module_dsn, schedule["id"])[0]
    job = http.get(f"/api/jobs/{first['id']}").json()
    assert (schedule["id"], first["fire_time"]) == (
        job["scheduleId"], dt.datetime.fromisoformat(job["fireTime"].replace("Z", "+00:00")))


def test_delete_keeps_the_past_jobs(http: httpx.Client, module_dsn: str) -> None:
    schedule = create(http)
    wait_for_fires(module_dsn, schedule["id"], 2)
    resp = http.delete(f"/api/schedules/{schedule['id']}")
    kept = fires_of(module_dsn, schedule["id"])
    assert 200 == resp.status_code
    assert len(kept) >= 2
    assert all(http.get(f"/api/jobs/{r['id']}").json()["scheduleId"] == schedule["id"]
               for r in kept)


def test_a_deleted_schedule_is_gone_from_the_api(http: httpx.Client) -> None:
    schedule = create(http, "@daily")
    http.delete(f"/api/schedules/{schedule['id']}")
    assert_error(http.get(f"/api/schedules/{schedule['id']}"), 404, "id", "not_found")
    assert schedule["id"] not in [s["id"] for s in http.get("/api/schedules").json()["items"]]


def test_a_deleted_schedules_key_can_define_a_new_schedule(http: httpx.Client) -> None:
    key = f"cron-{uuid.uuid4()}"
    first = create(http, "@daily", idempotencyKey=key)
    http.delete(f"/api/schedules/{first['id']}")
    again = create(http, "@daily", idempotencyKey=key)
    assert first["id"] != again["id"]


def test_overlap_skip_fires_again_once_the_previous_job_finished(
        http: httpx.Client, module_dsn: str) -> None:
    schedule = create(http, overlapPolicy="skip")
    [first] = wait_for_fires(module_dsn, schedule["id"], 1)
    job_id = fires_of(module_dsn, schedule["id"])[0]["id"]
    http.post(f"/api/jobs/{job_id}/cancel")
    assert len(wait_for_fires(module_dsn, schedule["id"], 1, after=first)) >= 1


# -- pause, resume, delete and overlap over time -------------------------------------------

QUIET = 2.5 * SECOND  # how long "no new fire" is watched: two and a half fire periods


@pytest.fixture(scope="module")
def timeline(api: Coordinator, module_dsn: str) -> dict[str, Any]:
    """Every-second schedules driven through pause, resume, delete and overlap at the
    same time, so that their waits overlap; the tests below each check one outcome.

    No worker runs: a schedule's first job stays Pending, so every later fire overlaps.
    ``at`` holds the database time of each action (the schedule's updated_at).
    """
    dsn = module_dsn
    kinds = {"paused": {}, "resumed_skip": {"misfirePolicy": "skip"},
             "resumed_once": {"misfirePolicy": "once"}, "deleted": {},
             "overlap_skip": {"overlapPolicy": "skip"}, "queue_held": {"overlapPolicy": "queue"},
             "queue_released": {"overlapPolicy": "queue"},
             "queue_cancelled_held": {"overlapPolicy": "queue"}}
    at: dict[str, dt.datetime] = {}
    jobs: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        ids = {name: create(http, **body)["id"] for name, body in kinds.items()}
        for name in ("queue_held", "queue_released", "queue_cancelled_held"):
            wait_for_fires(dsn, ids[name], 3)
        for name in ids:
            wait_for_fires(dsn, ids[name], 1)
        for name in ("paused", "resumed_skip", "resumed_once", "queue_released",
                     "queue_cancelled_held"):
            assert 200 == http.post(f"/api/schedules/{ids[name]}/pause").status_code
            at[name] = updated_at(dsn, ids[name])
        assert 200 == http.delete(f"/api/schedules/{ids['deleted']}").status_code
        at["deleted"] = updated_at(dsn, ids["deleted"])
        # Line up the queue cases: finish the running job, or cancel a held one.
        for name, index in (("queue_released", 0), ("queue_cancelled_held", 1)):
            jobs[name] = fires_of(dsn, ids[name])[:3]
            http.post(f"/api/jobs/{jobs[name][index]['id']}/cancel")
        at["overlap_skip"] = fire_times(dsn, ids["overlap_skip"])[0]
        wait_for_db_time(dsn, max(at.values()) + QUIET)
        for name in ("resumed_skip", "resumed_once"):
            assert 200 == http.post(f"/api/schedules/{ids[name]}/resume").status_code
            at[name + "_resumed"] = updated_at(dsn, ids[name])
        for name in ("resumed_skip", "resumed_once"):
            wait_for_fires(dsn, ids[name], 2, after=at[name])
    return {"ids": ids, "at": at, "jobs": jobs}


def fires_after(timeline: dict[str, Any], dsn: str, name: str) -> list[dict[str, Any]]:
    return [r for r in fires_of(dsn, timeline["ids"][name]) if r["fire_time"] > timeline["at"][name]]


def test_pause_stops_new_fires(timeline: dict[str, Any], module_dsn: str) -> None:
    assert [] == fires_after(timeline, module_dsn, "paused")


def test_resume_continues_with_new_fires(timeline: dict[str, Any], module_dsn: str) -> None:
    resumed = timeline["at"]["resumed_skip_resumed"]
    assert any(r["fire_time"] > resumed for r in fires_after(timeline, module_dsn,
                                                              "resumed_skip"))


def test_resume_with_skip_fires_nothing_for_the_paused_period(
        timeline: dict[str, Any], module_dsn: str) -> None:
    resumed = timeline["at"]["resumed_skip_resumed"]
    assert [] == [r["fire_time"] for r in fires_after(timeline, module_dsn, "resumed_skip")
                  if r["fire_time"] <= resumed - GRACE]


def test_resume_with_once_makes_exactly_one_run_for_the_paused_period(
        timeline: dict[str, Any], module_dsn: str) -> None:
    rows = fires_after(timeline, module_dsn, "resumed_once")
    assert 1 == len(first_pass(rows))
    assert first_pass(rows)[0]["fire_time"] < timeline["at"]["resumed_once_resumed"]


def test_delete_stops_the_fires(timeline: dict[str, Any], module_dsn: str) -> None:
    assert [] == fires_after(timeline, module_dsn, "deleted")


def test_overlap_skip_enqueues_nothing_while_the_previous_job_is_unfinished(
        timeline: dict[str, Any], module_dsn: str) -> None:
    assert [] == fires_after(timeline, module_dsn, "overlap_skip")


def test_overlap_queue_holds_later_fires_out_of_the_claim_path(
        timeline: dict[str, Any], module_dsn: str) -> None:
    rows = fires_of(module_dsn, timeline["ids"]["queue_held"])
    assert ["Pending"] + ["Scheduled"] * (len(rows) - 1) == [r["status"] for r in rows]
    assert all(9999 == r["run_at"].year for r in rows[1:])


def test_overlap_queue_releases_the_oldest_held_fire_when_the_previous_finishes(
        timeline: dict[str, Any], module_dsn: str) -> None:
    first, second, third = timeline["jobs"]["queue_released"]
    now = {r["id"]: r for r in fires_of(module_dsn, timeline["ids"]["queue_released"])}
    assert ("Cancelled", "Pending", "Scheduled") == (
        now[first["id"]]["status"], now[second["id"]]["status"], now[third["id"]]["status"])
    assert now[second["id"]]["run_at"] <= timeline["at"]["queue_released"] + QUIET


def test_overlap_queue_cancelling_a_held_fire_releases_nothing(
        timeline: dict[str, Any], module_dsn: str) -> None:
    first, second, third = timeline["jobs"]["queue_cancelled_held"]
    now = {r["id"]: r["status"]
           for r in fires_of(module_dsn, timeline["ids"]["queue_cancelled_held"])}
    assert ("Pending", "Cancelled", "Scheduled") == (
        now[first["id"]], now[second["id"]], now[third["id"]])


# -- bad input ---------------------------------------------------------------------------


def test_an_invalid_cron_is_400_naming_cron(http: httpx.Client) -> None:
    assert_error(http.post("/api/jobs", json={"type": "noop", "cron": "61 * * * *"}),
                 400, "cron", "validation_error")


def test_an_unknown_timezone_is_400_naming_timezone(http: httpx.Client) -> None:
    assert_error(http.post("/api/jobs", json={"type": "noop", "cron": "* * * * *",
                                              "timezone": "Europe/Atlantis"}),
                 400, "timezone", "validation_error")


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/pause"), ("POST", "/resume"),
                                                ("DELETE", ""), ("GET", "")])
def test_an_unknown_schedule_id_is_404_naming_the_id(http: httpx.Client, method: str,
                                                     suffix: str) -> None:
    assert_error(http.request(method, f"/api/schedules/{uuid.uuid4()}{suffix}"),
                 404, "id", "not_found")


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/pause"), ("POST", "/resume"),
                                                ("DELETE", ""), ("GET", "")])
def test_a_malformed_schedule_id_is_400_naming_the_id(http: httpx.Client, method: str,
                                                      suffix: str) -> None:
    assert_error(http.request(method, f"/api/schedules/not-a-uuid{suffix}"),
                 400, "id", "invalid_id")


def test_a_list_take_out_of_range_is_400_naming_take(http: httpx.Client) -> None:
    assert_error(http.get("/api/schedules", params={"take": 0}), 400, "take",
                 "validation_error")


def test_an_unknown_list_parameter_is_400_naming_it(http: httpx.Client) -> None:
    assert_error(http.get("/api/schedules", params={"status": "x"}), 400, "status",
                 "unknown_parameter")


# -- two coordinators, one database --------------------------------------------------------


def test_two_coordinators_make_exactly_one_job_per_fire_for_twenty_seconds(
        start_coordinator: Callable[..., Coordinator], db_dsn: str) -> None:
    first, _second = start_coordinator(), start_coordinator()
    with httpx.Client(base_url=first.url, timeout=10) as http:
        schedule = create(http, "*/2 * * * * *")
    wait_for_fires(db_dsn, schedule["id"], 11, timeout=40)  # 10 intervals of 2 s
    rows = fires_of(db_dsn, schedule["id"])
    times = [r["fire_time"] for r in rows]
    lags = sorted((r["created_at"] - r["fire_time"]).total_seconds() for r in rows)
    record_figures("two_coordinators_fires", {
        "fires": len(rows), "over_s": (times[-1] - times[0]).total_seconds(),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 1),
        "lag_max_ms": round(lags[-1] * 1000, 1)})
    assert len(times) == len(set(times)), "a fire became two jobs"
    assert contiguous(times, 2 * SECOND), f"a fire is missing: {times}"
    assert times[-1] - times[0] >= 20 * SECOND
    # Each fire's job was made before the next fire was due (both times the database's):
    # the coordinators kept up, whatever the machine's load within that.
    late = [(r["fire_time"], r["created_at"]) for r, later in itertools.pairwise(rows)
            if r["created_at"] >= later["fire_time"]]
    assert [] == late, f"made after the next fire was due: {late}"


# -- misfires: the coordinator down for a few fires ----------------------------------------


DOWN = 4 * SECOND  # how long the coordinator stays down, past its last fire


@pytest.fixture(scope="module")
def outage(pg_admin_dsn: str, template_dsn: str) -> Iterator[dict[str, Any]]:
    """Every-second schedules with each misfire policy; the coordinator is stopped for
    about four fires and started again, then the fixture waits for fires to resume."""
    name = make_database(pg_admin_dsn, template_dsn, "misfire")
    dsn = make_conninfo(pg_admin_dsn, dbname=name)
    coordinator = Coordinator(dsn)
    try:
        coordinator.wait_healthy()
        with httpx.Client(base_url=coordinator.url, timeout=10) as http:
            ids = {policy: create(http, misfirePolicy=policy)["id"]
                   for policy in ("skip", "once", "all")}
        for sid in ids.values():
            wait_for_fires(dsn, sid, 1)
        coordinator.stop()
        last = {policy: fire_times(dsn, sid)[-1] for policy, sid in ids.items()}
        wait_for_db_time(dsn, max(last.values()) + DOWN)
        coordinator = Coordinator(dsn)
        coordinator.wait_healthy()
        for policy, sid in ids.items():
            wait_for_fires(dsn, sid, 1, after=last[policy] + DOWN)
        yield {"dsn": dsn, "ids": ids, "last": last}
    finally:
        coordinator.stop()
        drop_database(pg_admin_dsn, name)


def after_outage(outage: dict[str, Any], policy: str) -> list[dict[str, Any]]:
    """The jobs of ``policy``'s schedule made after the restart, with the time of the
    restart's first pass (its jobs share one created_at: one transaction)."""
    rows = fires_of(outage["dsn"], outage["ids"][policy])
    return [r for r in rows if r["fire_time"] > outage["last"][policy]]


def first_pass(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    start = min(r["created_at"] for r in rows)
    return [r for r in rows if r["created_at"] == start]


def test_misfire_skip_drops_the_fires_missed_while_down(outage: dict[str, Any]) -> None:
    rows = after_outage(outage, "skip")
    restarted = min(r["created_at"] for r in rows)
    assert [] == [r["fire_time"] for r in rows if r["fire_time"] <= restarted - GRACE]


def test_misfire_once_makes_one_catch_up_run(outage: dict[str, Any]) -> None:
    assert 1 == len(first_pass(after_outage(outage, "once")))


def test_misfire_all_makes_every_missed_fire(outage: dict[str, Any]) -> None:
    rows = after_outage(outage, "all")
    times = [outage["last"]["all"]] + [r["fire_time"] for r in rows]
    assert contiguous(times, SECOND), times
    assert len(first_pass(rows)) >= DOWN.total_seconds()
