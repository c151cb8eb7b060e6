"""The workflow pages (view-workflows.js, view-workflow.js) in a real headless Chromium
against a real coordinator: the graph is drawn (a node per step, an edge per
dependency, left to right by depth), a node's colour follows its step's status live as
a worker ends it, a node opens its job, and the list filters by status. Waits are
Playwright's (expect)."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import Dashboard
from tests.support import HandWorker

LIVE = 20_000  # ms: a snapshot reaches the page within a few seconds


def create(url: str, queue: str) -> dict[str, str]:
    resp = httpx.post(f"{url}/api/workflows", timeout=10, json={"name": "pages", "steps": {
        "extract": {"type": "noop", "queue": queue},
        "left": {"type": "noop", "queue": queue, "dependsOn": ["extract"]},
        "right": {"type": "noop", "queue": queue, "dependsOn": ["extract"]},
        "load": {"type": "noop", "queue": queue, "dependsOn": ["left", "right"]}}})
    resp.raise_for_status()
    return dict(resp.json())


def test_the_graph_is_drawn_follows_the_steps_live_and_a_node_opens_its_job(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    made = create(dashboard.url, "wf-pages")
    page = dashboard.open(f"#/workflows/{made['id']}")
    graph = page.get_by_test_id("workflow-graph")
    expect(graph).to_be_visible()
    expect(graph.locator("a.node")).to_have_count(4)
    expect(graph.locator("line.edge")).to_have_count(4)
    expect(page.get_by_test_id("node-extract")).to_have_attribute("data-status", "Pending")
    expect(page.get_by_test_id("node-load")).to_have_attribute("data-status", "Waiting")
    # Left to right by depth: extract, then left and right side by side, then load.
    xs = {name: float(page.get_by_test_id(f"node-{name}").locator("rect").get_attribute("x")
                      or "nan") for name in ("extract", "left", "right", "load")}
    assert xs["extract"] < xs["left"] == xs["right"] < xs["load"]

    hand = HandWorker(dashboard.url).register(capacity=5)
    try:
        [claimed] = hand.claim_some(5, queues=["wf-pages"])
        assert made["steps"]["extract"] == claimed["jobId"]
        assert 200 == hand.finish(claimed).status_code
    finally:
        hand.close()
    expect(page.get_by_test_id("node-extract")).to_have_attribute(
        "data-status", "Succeeded", timeout=LIVE)
    expect(page.get_by_test_id("node-left")).to_have_attribute(
        "data-status", "Pending", timeout=LIVE)

    page.get_by_test_id("node-load").click()
    expect(page.get_by_role("heading", name=f"Job {made['steps']['load']}")).to_be_visible()
    assert [] == dashboard.errors


def test_the_list_shows_workflows_and_filters_by_status(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    made = create(dashboard.url, "wf-list")
    page = dashboard.open("#/workflows")
    expect(page.get_by_role("heading", name="Workflows", exact=True)).to_be_visible()
    row = page.locator(f'tr[data-workflow-id="{made["id"]}"]')
    expect(row).to_contain_text("Running")
    page.get_by_label("Status").select_option("Succeeded")
    expect(page.get_by_role("heading", name="Workflows", exact=True)).to_be_visible()
    expect(page.locator(f'tr[data-workflow-id="{made["id"]}"]')).to_have_count(0)
    page.get_by_label("Status").select_option("Running")
    row = page.locator(f'tr[data-workflow-id="{made["id"]}"]')
    expect(row).to_have_count(1)
    row.get_by_role("link").click()
    expect(page.get_by_test_id("workflow-graph")).to_be_visible()
    assert [] == dashboard.errors


def test_a_workflow_schedule_shows_its_steps_and_links_its_workflows(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    resp = httpx.post(f"{dashboard.url}/api/jobs", timeout=10, json={
        "cron": "* * * * * *", "workflow": {"name": "ticking", "steps": {
            "a": {"type": "noop", "queue": "wf-sched"},
            "b": {"type": "noop", "queue": "wf-sched", "dependsOn": ["a"]}}}})
    assert 201 == resp.status_code, resp.text
    sid = resp.json()["id"]
    page = dashboard.open(f"#/schedules/{sid}")
    expect(page.get_by_test_id("schedule-workflow")).to_have_text("ticking")
    expect(page.get_by_test_id("schedule-steps").locator("tbody tr")).to_have_count(2)
    link = page.get_by_test_id("schedule-fires").locator('a[href^="#/workflows/"]').first
    expect(link).to_be_visible(timeout=LIVE)
    httpx.post(f"{dashboard.url}/api/schedules/{sid}/pause", timeout=10).raise_for_status()
    link.click()
    expect(page.get_by_test_id("workflow-graph")).to_be_visible()
    expect(page.get_by_test_id("workflow-graph").locator("a.node")).to_have_count(2)
    assert [] == dashboard.errors
