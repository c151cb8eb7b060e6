"""Dependencies on the dashboard (migration 0013), in a real headless Chromium against
a real coordinator: a waiting child's page says it waits for its parent and links to
it; the parent's page links to its dependents. Waits are Playwright's (expect)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import Dashboard
from tests.support import submit

FUTURE = "2999-01-01T00:00:00Z"


def short(job_id: str) -> str:
    """The dashboard's short form of an id (dom.js shortId)."""
    return f"{job_id[:8]}…{job_id[-4:]}"


def test_a_waiting_childs_page_links_its_parent_and_the_parents_page_its_children(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    parent = submit(dashboard.url, queue="dep-pages", runAt=FUTURE)
    children = [submit(dashboard.url, queue="dep-pages", dependsOn=[parent["id"]])
                for _ in range(2)]
    page = dashboard.open(f"#/jobs/{children[0]['id']}")
    expect(page.get_by_text("Waiting", exact=True).first).to_be_visible()
    waiting = page.get_by_test_id("job-waiting")
    expect(waiting).to_have_text(
        f"waits: for 1 job it depends on to succeed: {short(parent['id'])}")
    expect(page.get_by_test_id("parents").get_by_role("link")).to_have_count(1)
    waiting.get_by_role("link").click()
    expect(page.get_by_role("heading", name=f"Job {parent['id']}")).to_be_visible()
    links = page.get_by_test_id("children").get_by_role("link")
    expect(links).to_have_count(2)
    expect(links).to_have_text([short(i) for i in sorted(c["id"] for c in children)])
    assert [] == dashboard.errors
