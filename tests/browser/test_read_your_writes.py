"""The dashboard reads its own writes with a read replica (web/static/api.js): after a
cancel, the reads it reloads ask for ``consistency=strong`` until the replica has
replayed it. On a real streaming standby whose replay is paused (tests/pg_cluster.py),
so the replica never shows the cancel by itself; and on a coordinator without a
replica, where the page never sends the parameter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Request, expect

from tests.browser.conftest import WAIT_MS, Dashboard, open_dashboard
from tests.integration.test_read_replica import DB, nodes, start_coordinator  # noqa: F401
from tests.pg_cluster import PgNode, wait_replayed
from tests.support import Coordinator, submit, wait_until


@pytest.fixture(scope="module")
def replicated(nodes: tuple[PgNode, PgNode]) -> Iterator[Coordinator]:  # noqa: F811
    primary, standby = nodes
    c = start_coordinator(primary, standby)
    try:
        yield c
    finally:
        c.stop()


def pause_replay(standby: PgNode) -> None:
    standby.scalar("SELECT pg_wal_replay_pause()", DB)
    wait_until(lambda: standby.scalar("SELECT pg_get_wal_replay_pause_state()", DB)
               == "paused", what="replay paused")


def eventual_status(c: Coordinator, job_id: str) -> str:
    with httpx.Client(base_url=c.url, timeout=20) as http:
        resp = http.get(f"/api/jobs/{job_id}")
        assert 200 == resp.status_code, resp.text
        return str(resp.json()["status"])


def test_a_job_cancelled_from_the_list_shows_cancelled_while_the_replica_lags(
        browser: Browser, nodes: tuple[PgNode, PgNode],  # noqa: F811
        replicated: Coordinator) -> None:
    primary, standby = nodes
    queue = f"ryw-{uuid.uuid4().hex[:8]}"
    job = submit(replicated.url, "noop", {}, queue=queue)  # no worker serves it
    wait_replayed(primary, standby)
    for board in open_dashboard(browser, replicated):
        page = board.open(f"#/jobs?queue={queue}")
        row = page.locator(f"[data-job-id='{job['id']}']")
        expect(row).to_contain_text("Pending")
        pause_replay(standby)
        try:
            row.get_by_test_id("select-job").check()
            page.get_by_test_id("bulk-cancel").click()
            expect(page.get_by_test_id("bulk-plan")).to_have_attribute("data-count", "1")
            page.get_by_test_id("bulk-confirm").click()
            expect(page.get_by_test_id("bulk-result")).to_have_attribute("data-changed", "1")
            expect(row).to_contain_text("Cancelled", timeout=WAIT_MS)
            # The replica has not replayed it: an eventual read still says Pending.
            assert "Pending" == eventual_status(replicated, job["id"])
            # The live reloads after it read the primary too: no flick back to Pending.
            with page.expect_response(lambda r: "/api/jobs?" in r.url
                                      and "consistency=strong" in r.url):
                pass
            with page.expect_response(lambda r: "/api/jobs?" in r.url
                                      and "consistency=strong" in r.url):
                pass
            expect(row).to_contain_text("Cancelled")
        finally:
            standby.scalar("SELECT pg_wal_replay_resume()", DB)
        assert [] == board.errors


def test_a_job_cancelled_from_its_page_stays_cancelled_while_the_replica_lags(
        browser: Browser, nodes: tuple[PgNode, PgNode],  # noqa: F811
        replicated: Coordinator) -> None:
    primary, standby = nodes
    job = submit(replicated.url, "noop", {}, queue=f"ryw-{uuid.uuid4().hex[:8]}")
    wait_replayed(primary, standby)
    for board in open_dashboard(browser, replicated):
        page = board.open(f"#/jobs/{job['id']}")
        status = page.get_by_test_id("job-status")
        expect(status).to_have_text("Pending")
        pause_replay(standby)
        try:
            # The page renders the cancel's answer, then reloads the job: that reload
            # (and the live ones after it) must not bring Pending back.
            with page.expect_response(lambda r: f"/api/jobs/{job['id']}?consistency=strong"
                                      in r.url) as reloaded:
                page.get_by_role("button", name="Cancel").click()
            assert 200 == reloaded.value.status
            assert "Cancelled" == reloaded.value.json()["status"]
            with page.expect_response(lambda r: f"/api/jobs/{job['id']}?consistency=strong"
                                      in r.url):
                pass
            expect(status).to_have_text("Cancelled")
            assert "Pending" == eventual_status(replicated, job["id"])
        finally:
            standby.scalar("SELECT pg_wal_replay_resume()", DB)
        assert [] == board.errors


def test_without_a_replica_the_page_never_asks_for_strong_reads(
        shared_dashboard: Dashboard, shared_coordinator: Coordinator) -> None:
    queue = f"ryw-{uuid.uuid4().hex[:8]}"
    job = submit(shared_coordinator.url, "noop", {}, queue=queue)
    sent: list[str] = []

    def on_request(request: Request) -> None:
        sent.append(request.url)

    page = shared_dashboard.open("#/")
    # The overview has its snapshot (with no replica field) before the write.
    page.get_by_text("Snapshot read").wait_for()
    page.on("request", on_request)
    page.evaluate("id => { location.hash = `#/jobs/${id}`; }", job["id"])
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("Pending")
    page.get_by_role("button", name="Cancel").click()
    expect(status).to_have_text("Cancelled")
    page.evaluate("q => { location.hash = `#/jobs?queue=${q}`; }", queue)
    expect(page.locator(f"[data-job-id='{job['id']}']")).to_contain_text("Cancelled")
    reads = [u for u in sent if "/api/jobs" in u and "/cancel" not in u]
    assert reads, sent
    assert [] == [u for u in reads if "consistency" in u]
    assert [] == shared_dashboard.errors
