"""The jobs page's search filter and bulk actions (issue 18) in a real Chromium on a
real coordinator: a payload condition typed in the form reaches the URL and a reload
restores it; "all that match this filter", the dry run's count in the confirmation,
the action in steps of 1,000 with its progress to the end, then the jobs changed as the
API sees them.

With SCHEDULER_SCREENSHOTS=1 the tests also write docs/images/search.png and
docs/images/bulk-action.png (the README's); otherwise the screenshots go to the test
output folder only.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
from playwright.sync_api import Page, expect

from tests.browser.conftest import SCREENSHOTS, Dashboard
from tests.support import ROOT, Coordinator

IMAGES = ROOT / "docs" / "images"


def screenshot(page: Page, name: str, height: int) -> Path:
    """The top of the page, into docs/images when SCHEDULER_SCREENSHOTS=1."""
    folder = IMAGES if os.environ.get("SCHEDULER_SCREENSHOTS") == "1" else SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1280, "height": height})
    return path


def dead_jobs(dsn: str, queue: str, n: int, status: str = "DeadLetter") -> None:
    """``n`` jobs of ``queue``, customers 0..9 in turn, tagged ``eu``: DeadLetter, or
    Scheduled far ahead."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, type, payload, status, queue, run_at, attempts, "
            "max_attempts, timeout_seconds, finished_at, last_error, tags) "
            "SELECT gen_random_uuid(), 'http_get', jsonb_build_object('customerId', g %% 10, "
            "'url', 'https://example.com/orders/' || g), %s, %s, "
            "CASE WHEN %s = 'DeadLetter' THEN now() ELSE '2999-01-01' END, 3, 3, 60, "
            "CASE WHEN %s = 'DeadLetter' THEN now() END, 'HTTP 503 from example.com', "
            "ARRAY['eu'] FROM generate_series(1, %s) g",
            (status, queue, status, status, n))


def statuses(http: httpx.Client, **params: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        page = http.get("/api/jobs", params={**params, "take": 500,
                                             **({"cursor": cursor} if cursor else {})}).json()
        for j in page["items"]:
            counts[j["status"]] = counts.get(j["status"], 0) + 1
        cursor = page.get("nextCursor")
        if not cursor:
            return counts


def test_a_payload_condition_goes_into_the_url_and_a_reload_restores_it(
        shared_dashboard: Dashboard, shared_coordinator: Coordinator, module_dsn: str) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    dead_jobs(module_dsn, queue, 30)
    page = shared_dashboard.open("#/jobs")
    page.get_by_label("Queue").fill(queue)
    page.get_by_label("Queue").dispatch_event("change")
    expect(page.get_by_test_id("job-row")).to_have_count(30)
    page.get_by_label("Payload or result conditions, one a line").fill("payload.customerId=7")
    page.get_by_label("Tags").fill("eu")
    page.get_by_test_id("search-form").get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("job-row")).to_have_count(3)
    query = parse_qs(urlsplit(page.url).fragment.split("?", 1)[1])
    assert {"queue": [queue], "where": ["payload.customerId=7"], "tag": ["eu"]} == query
    screenshot(page, "search", 560)
    page.reload()
    expect(page.get_by_test_id("job-row")).to_have_count(3)
    expect(page.get_by_label("Payload or result conditions, one a line")).to_have_value(
        "payload.customerId=7")
    expect(page.get_by_label("Tags")).to_have_value("eu")
    assert [] == shared_dashboard.errors


def test_a_bad_condition_shows_the_api_s_message(
        shared_dashboard: Dashboard) -> None:
    page = shared_dashboard.open("#/jobs?where=payload.a%3D%3D1")
    expect(page.get_by_text("Could not list jobs: expected a value after '='")).to_be_visible()


def test_bulk_retry_of_all_matching_confirms_the_count_and_runs_to_the_end(
        shared_dashboard: Dashboard, shared_coordinator: Coordinator, module_dsn: str) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    dead_jobs(module_dsn, queue, 2500)
    dead_jobs(module_dsn, queue, 8, status="Scheduled")  # 4 of them match, not retryable
    page = shared_dashboard.open(f"#/jobs?queue={queue}&where=payload.customerId%3C5")
    expect(page.get_by_test_id("job-row")).to_have_count(50)
    page.get_by_test_id("select-all-matching").click()
    expect(page.get_by_test_id("selection")).to_have_text("All jobs that match this filter")
    page.get_by_test_id("bulk-retry").click()
    plan = page.get_by_test_id("bulk-plan")
    expect(plan).to_have_attribute("data-count", "1250")
    expect(page.get_by_test_id("bulk-confirm")).to_have_text("Retry 1,250 jobs")
    expect(plan).to_contain_text("1,254 match")
    expect(page.get_by_test_id("bulk-skipped")).to_have_text(
        "4 jobs skipped: not retryable: Scheduled")
    screenshot(page, "bulk-action", 620)
    page.get_by_test_id("bulk-confirm").click()
    result = page.get_by_test_id("bulk-result")
    expect(result).to_have_attribute("data-changed", "1250")
    expect(result).to_contain_text("1,250 jobs retried.")
    expect(page.get_by_test_id("bulk-skipped")).to_have_text(
        "4 jobs skipped: not retryable: Scheduled")
    with httpx.Client(base_url=shared_coordinator.url, timeout=30) as http:
        assert {"Pending": 1250, "Scheduled": 4} == statuses(
            http, queue=queue, where="payload.customerId<5")
        assert {"DeadLetter": 1250, "Scheduled": 4} == statuses(
            http, queue=queue, where="payload.customerId>=5")
    assert [] == shared_dashboard.errors


def test_bulk_cancel_of_ticked_rows_changes_only_those(
        shared_dashboard: Dashboard, shared_coordinator: Coordinator) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=shared_coordinator.url) as http:
        resp = http.post("/api/jobs/batch", json={"jobs": [
            {"type": "noop", "queue": queue, "runAt": "2999-01-01T00:00:00Z"}] * 3})
        assert 201 == resp.status_code, resp.text
        page = shared_dashboard.open(f"#/jobs?queue={queue}")
        expect(page.get_by_test_id("job-row")).to_have_count(3)
        boxes = page.get_by_test_id("select-job")
        boxes.nth(0).check()
        boxes.nth(2).check()
        expect(page.get_by_test_id("selection")).to_have_text("2 jobs selected")
        page.get_by_test_id("bulk-cancel").click()
        expect(page.get_by_test_id("bulk-plan")).to_have_attribute("data-count", "2")
        page.get_by_test_id("bulk-confirm").click()
        expect(page.get_by_test_id("bulk-result")).to_have_attribute("data-changed", "2")
        assert {"Cancelled": 2, "Scheduled": 1} == statuses(http, queue=queue)
    assert [] == shared_dashboard.errors
