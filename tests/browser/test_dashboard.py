"""The dashboard in a real headless Chromium against a real coordinator (and, where
jobs must run, a real worker). Waits are Playwright's (expect / wait_for with a
timeout): nothing sleeps."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
from playwright.sync_api import expect

from scheduler_core.schema.store import uuid7
from scheduler_core.web.dashboard import STATIC
from tests.browser.conftest import WAIT_MS, Dashboard
from tests.support import Coordinator, Worker, submit, wait_until

FAST = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
FUTURE = "2999-01-01T00:00:00Z"


def insert_cancelled(dsn: str, count: int, *, queue: str) -> list[str]:
    """``count`` Cancelled jobs in one statement (what the API would make one request
    at a time), oldest first."""
    ids = sorted(uuid7() for _ in range(count))  # time-ordered, even within a ms
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(b"""
            INSERT INTO jobs (id, type, status, queue, run_at, max_attempts, timeout_seconds,
                              finished_at, cancel_requested)
            SELECT id, 'noop', 'Cancelled', %s, now(), 3, 60, now(), true
            FROM unnest(%s::uuid[]) AS t(id)""", (queue, ids))
    return [str(i) for i in ids]


def test_the_dashboard_loads_every_view_with_no_console_errors(dashboard: Dashboard) -> None:
    page = dashboard.open("#/")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    expect(page.get_by_text("No workers.")).to_be_visible()
    for link, heading in (("Jobs", "Jobs"), ("Schedules", "Schedules"), ("Queues", "Queues"),
                          ("Overview", "Overview")):
        page.get_by_role("navigation").get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    assert [] == dashboard.errors


def test_every_module_loads_as_javascript_and_every_view_renders(
        shared_dashboard: Dashboard) -> None:
    """The page is ES modules: one that does not load (a 404, a type that is not
    JavaScript, a missing export) stops the page; one that no view imports is dead."""
    dashboard = shared_dashboard
    scripts: dict[str, str] = {}

    def on_response(response: Any) -> None:
        if "/dashboard/static/" in response.url and response.url.endswith(".js"):
            scripts[response.url.rsplit("/", 1)[-1]] = response.headers.get("content-type", "")

    dashboard.page.on("response", on_response)
    job = submit(dashboard.url, runAt=FUTURE)
    schedule_id = submit(dashboard.url, cron="0 4 * * *")["id"]
    page = dashboard.open("#/")
    for route, heading in (("#/", "Overview"), ("#/jobs", "Jobs"),
                           (f"#/jobs/{job['id']}", f"Job {job['id']}"),
                           ("#/schedules", "Schedules"),
                           (f"#/schedules/{schedule_id}", f"Schedule {schedule_id}"),
                           ("#/queues", "Queues")):
        page.evaluate("route => { location.hash = route; }", route)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    expected = {p.name: "text/javascript; charset=utf-8" for p in STATIC.glob("*.js")}
    assert expected == scripts
    assert [] == dashboard.errors


def test_an_answer_that_comes_after_its_view_was_left_does_not_replace_the_next_view(
        shared_dashboard: Dashboard) -> None:
    """The overview asks for its snapshot when entered before the event stream brought
    one; a user (or a test) who moves on before the answer comes must keep the view
    moved to (CI saw the overview land over the jobs view)."""
    dashboard = shared_dashboard
    page = dashboard.page
    held: dict[str, Any] = {}
    # The stream and the overview's request are held: the overview must ask, and its
    # answer comes when the test says.
    page.route("**/api/dashboard/events", lambda route: held.setdefault("events", route))
    page.route("**/api/dashboard/overview", lambda route: held.setdefault("overview", route))
    page.goto(f"{dashboard.url}/#/")
    # Each evaluate lets Playwright run its route handlers (sync API: handlers run
    # inside Playwright's calls).
    wait_until(lambda: page.evaluate("1") and "overview" in held, what="the overview's request")
    page.evaluate("route => { location.hash = route; }", "#/jobs")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    with page.expect_response("**/api/dashboard/overview") as answer:
        held["overview"].fulfill(response=held["overview"].fetch())
    answer.value.finished()
    # Two turns of the page's task queue: the fetch's .json() and .then() have run.
    page.evaluate("() => new Promise(r => setTimeout(() => setTimeout(r)))")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_have_count(0)
    assert [] == dashboard.errors


def test_the_status_cards_and_filter_show_the_servers_statuses_unfinished_first(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    meta = httpx.get(dashboard.url + "/api/dashboard/meta").json()
    terminal = set(meta["terminalStatuses"])
    expected = ([s for s in meta["statuses"] if s not in terminal]
                + [s for s in meta["statuses"] if s in terminal])
    assert ["Waiting", "Scheduled", "Pending", "Running", "Failed", "Succeeded",
            "DeadLetter", "Cancelled"] == expected  # Waiting (dependsOn) first
    page = dashboard.open("#/")
    cards = page.get_by_role("region", name="Jobs by status").get_by_role("link")
    expect(cards).to_have_count(len(expected))
    assert expected == [(c.get_attribute("data-testid") or "").removeprefix("count-")
                        for c in cards.all()]
    page = dashboard.open("#/jobs")
    options = page.get_by_label("Status").locator("option")
    expect(options).to_have_count(1 + len(expected))
    assert ["", *expected] == [o.get_attribute("value") for o in options.all()]


def test_an_unknown_job_id_is_explained(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    page = dashboard.open("#/jobs/00000000-0000-7000-8000-000000000000")
    expect(page.get_by_text("No job with id 00000000-0000-7000-8000-000000000000")).to_be_visible()
    # Chromium reports the API's 404 itself; the page adds no error of its own.
    assert all("status of 404" in e for e in dashboard.errors), dashboard.errors


def test_a_job_submitted_through_the_api_appears_without_reload(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    page = dashboard.open("#/jobs")
    expect(page.get_by_test_id("list-status")).to_have_text("live · newest first")
    page.evaluate("window.__notReloaded = true")
    job = submit(dashboard.url, runAt=FUTURE)
    # Only the event stream can bring it (the page polls nothing, and did not reload).
    expect(page.locator(f"[data-job-id='{job['id']}']")).to_be_visible(timeout=WAIT_MS)
    assert page.evaluate("window.__notReloaded === true")
    expect(page.get_by_test_id("count-Scheduled")).to_have_count(0)  # still the jobs view


def test_the_overview_counts_update_by_themselves(dashboard: Dashboard) -> None:
    page = dashboard.open("#/")
    expect(page.get_by_test_id("count-Scheduled")).to_contain_text("0")
    submit(dashboard.url, runAt=FUTURE)
    submit(dashboard.url, runAt=FUTURE)
    expect(page.get_by_test_id("count-Scheduled")).to_contain_text("2", timeout=WAIT_MS)


def test_cancel_then_retry_from_the_job_page(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    job = submit(dashboard.url, runAt=FUTURE)
    page = dashboard.open(f"#/jobs/{job['id']}")
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("Scheduled")
    expect(page.get_by_role("button", name="Retry")).to_be_disabled()
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    page.get_by_role("button", name="Retry").click()
    expect(status).to_have_text("Pending")
    after = httpx.get(f"{dashboard.url}/api/jobs/{job['id']}").json()
    assert ("Pending", "retried from the dashboard") == (after["status"], after["retryReason"])
    assert [] == dashboard.errors


def test_the_job_page_shows_its_runs_and_the_overview_the_worker(
        dashboard: Dashboard, coordinator: Coordinator,
        start_worker: Callable[..., Worker]) -> None:
    start_worker(coordinator.url, slots=2, env=FAST, extra=["--worker-id", "browser-w1"])
    jobs = [submit(coordinator.url, idempotencyKey=f"screenshot-{i}") for i in range(3)]
    failing = submit(coordinator.url, "fail", payload={"message": "expected failure"},
                     maxAttempts=1)
    wait_until(lambda: all(httpx.get(f"{coordinator.url}/api/jobs/{j['id']}").json()["status"]
                           in ("Succeeded", "DeadLetter") for j in [*jobs, failing]),
               timeout=30, what="the jobs finished")

    page = dashboard.open(f"#/jobs/{jobs[0]['id']}")
    expect(page.get_by_test_id("job-status")).to_have_text("Succeeded")
    runs = page.get_by_test_id("run-row")
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text("browser-w1")
    expect(runs.first).to_contain_text("Succeeded")
    started = runs.first.locator("time").first
    expect(started).to_have_attribute("title", re.compile(r"^UTC: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d Z$"))
    dashboard.screenshot("job-detail")

    page.goto(f"{dashboard.url}/#/jobs/{failing['id']}")
    expect(page.get_by_test_id("job-status")).to_have_text("DeadLetter")
    expect(page.get_by_test_id("run-row").first).to_contain_text("expected failure")

    page.get_by_role("navigation").get_by_role("link", name="Overview").click()
    expect(page.locator("[data-worker-id='browser-w1']")).to_contain_text("Active")
    expect(page.get_by_test_id("count-Succeeded")).to_contain_text("3")
    expect(page.get_by_test_id("throughput-summary")).to_contain_text("4 finished")
    expect(page.locator("svg.chart rect.b-ok").first).to_be_visible()
    dashboard.screenshot("overview")
    assert [] == dashboard.errors


def test_times_are_local_with_utc_on_hover(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    job = submit(dashboard.url, runAt="2999-01-01T00:00:00Z")
    page = dashboard.open(f"#/jobs/{job['id']}")
    run_at = page.locator("dt:text('Run at') + dd time")
    expect(run_at).to_have_attribute("title", "UTC: 2999-01-01 00:00:00 Z")
    expect(run_at).to_have_text(re.compile("01:00:00"))  # the browser runs in Europe/Paris


def test_a_job_is_found_by_its_idempotency_key(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    job = submit(dashboard.url, runAt=FUTURE, idempotencyKey="invoice-2024-117")
    page = dashboard.open("#/jobs")
    page.get_by_role("searchbox").fill("invoice-2024-117")
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(f"#/jobs/{job['id']}$"))
    expect(page.get_by_test_id("job-status")).to_have_text("Scheduled")


def test_the_jobs_list_filters_by_status_and_queue_and_pages_through(
        shared_dashboard: Dashboard, module_dsn: str) -> None:
    dashboard = shared_dashboard
    submit(dashboard.url, runAt=FUTURE, queue="paging")  # Scheduled: filtered out
    cancelled = [submit(dashboard.url, runAt=FUTURE, queue="paging")]
    httpx.post(f"{dashboard.url}/api/jobs/{cancelled[0]['id']}/cancel").raise_for_status()
    ids = insert_cancelled(module_dsn, 51, queue="paging")
    page = dashboard.open("#/jobs?status=Cancelled&queue=paging")
    rows = page.get_by_test_id("job-row")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-job-id", ids[-1])  # newest first
    page.get_by_role("button", name="Older →").click()
    expect(rows).to_have_count(2)
    expect(rows.last).to_have_attribute("data-job-id", cancelled[0]["id"])
    expect(page.get_by_test_id("list-status")).to_contain_text("page 2")
    page.get_by_role("button", name="← Newer").click()
    expect(rows).to_have_count(50)


def test_schedules_can_be_paused_and_resumed(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    schedule_id = submit(dashboard.url, cron="0 3 * * *", timezone="Europe/Paris")["id"]
    page = dashboard.open("#/schedules")
    row = page.locator(f"[data-schedule-id='{schedule_id}']")
    expect(row).to_contain_text("0 3 * * *")
    expect(row).to_contain_text("Europe/Paris")
    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_test_id("status")).to_have_text("paused")
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_test_id("status")).to_have_text("enabled")
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Recent fires")).to_be_visible()
    assert [] == dashboard.errors


def test_a_queue_can_be_paused_resumed_and_limited(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    submit(dashboard.url, queue="browser-q", runAt=FUTURE)
    page = dashboard.open("#/queues")
    row = page.locator("[data-queue='browser-q']")
    expect(row.get_by_test_id("status")).to_have_text("active")
    expect(row).to_contain_text("1")  # the waiting job
    row.get_by_role("button", name="Pause").click()
    expect(row.get_by_test_id("status")).to_have_text("paused")
    assert httpx.get(dashboard.url + "/api/queues/browser-q").json()["paused"] is True
    # The overview's queue lag marks it paused (its lag grows by design meanwhile).
    page.get_by_role("navigation").get_by_role("link", name="Overview").click()
    lag = page.get_by_role("region", name="Queue lag").get_by_role("row").filter(
        has=page.get_by_role("link", name="browser-q", exact=True))
    expect(lag.get_by_test_id("status")).to_have_text("paused")
    page.get_by_role("navigation").get_by_role("link", name="Queues").click()
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_test_id("status")).to_have_text("active")
    assert httpx.get(dashboard.url + "/api/queues/browser-q").json()["paused"] is False

    limit = row.get_by_label("Concurrency limit of browser-q")
    limit.fill("3")
    row.get_by_role("button", name="Set limit").click()
    expect(row).to_contain_text("0 / 3")
    assert 3 == httpx.get(dashboard.url + "/api/queues/browser-q").json()["concurrencyLimit"]
    limit.fill("0")  # refused by the page, nothing sent
    row.get_by_role("button", name="Set limit").click()
    expect(page.locator("#toast")).to_contain_text("whole number from 1 to 100000")
    assert 3 == httpx.get(dashboard.url + "/api/queues/browser-q").json()["concurrencyLimit"]
    row.get_by_label("Concurrency limit of browser-q").fill("7")
    row.get_by_label("Concurrency limit of browser-q").press("Enter")  # focus stays there
    expect(row).to_contain_text("0 / 7")
    row.get_by_label("Concurrency limit of browser-q").fill("")
    row.get_by_role("button", name="Set limit").click()
    expect(row).not_to_contain_text("/ 7")
    assert httpx.get(dashboard.url + "/api/queues/browser-q").json()["concurrencyLimit"] is None
    assert [] == dashboard.errors


def test_the_overview_fits_a_phone_screen(phone: Dashboard) -> None:
    submit(phone.url, runAt=FUTURE)
    page = phone.open("#/")
    expect(page.get_by_test_id("count-Scheduled")).not_to_have_text(re.compile(r"^0"))
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert 0 >= overflow
    phone.screenshot("overview-phone")

