"""The progress bar (issue 18): a running job's ctx.progress on its page and in the jobs
table, live through the event stream, on a real coordinator and worker (heartbeat
0.2 s). The 2 s is the issue's acceptance bound, the deadline of each poll.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import SCREENSHOTS, Dashboard, open_dashboard
from tests.support import ROOT, Coordinator, Worker, running_coordinator, submit

ENV = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_HANDLERS": "tests.progress_handlers"}
WITHIN_MS = 2000  # the acceptance bound for an update to show
# The README's picture when SCHEDULER_SCREENSHOTS=1 (as the bulk and search pages'
# tests do), else the test output's: a test run leaves the checkout as it was.
SCREENSHOT = ((ROOT / "docs" / "images") if os.environ.get("SCHEDULER_SCREENSHOTS") == "1"
              else SCREENSHOTS) / "progress-bar.png"


@pytest.fixture(scope="module")
def api(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=ENV) as c:
        yield c


@pytest.fixture(scope="module")
def worker(api: Coordinator) -> Iterator[Worker]:
    w = Worker(api.url, slots=2, env=ENV, extra=["--handlers", "tests.progress_handlers"])
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def board(browser: Browser, api: Coordinator) -> Iterator[Dashboard]:
    yield from open_dashboard(browser, api)


def test_the_progress_bar_appears_and_follows_the_job_within_2_s(
        board: Dashboard, api: Coordinator, worker: Worker, tmp_path: Path) -> None:
    job = submit(api.url, "progress_steps", {"folder": str(tmp_path), "steps": 4})
    page = board.open(f"#/jobs/{job['id']}")
    expect(page.get_by_test_id("job-status")).to_have_text("Running")
    bar = page.get_by_test_id("job-progress")
    for step in (1, 2):
        (tmp_path / f"step-{step}").touch()
        expect(bar).to_have_attribute("data-value", str(step / 4), timeout=WITHIN_MS)
    expect(page.get_by_test_id("progress-message")).to_have_text("step 2 of 4")
    page.locator("progress").evaluate("el => el.scrollIntoView()")
    page.screenshot(path=str(SCREENSHOT), clip={"x": 0, "y": 0, "width": 1280, "height": 420})
    # The jobs table shows it too, and follows it.
    board.open("#/jobs")
    row_bar = page.locator(f"tr[data-job-id='{job['id']}'] [data-testid=job-progress]")
    expect(row_bar).to_have_attribute("data-value", "0.5")
    (tmp_path / "step-3").touch()
    expect(row_bar).to_have_attribute("data-value", "0.75", timeout=WITHIN_MS)
    (tmp_path / "step-4").touch()
    (tmp_path / "done").touch()
    expect(page.locator(f"tr[data-job-id='{job['id']}'] td").nth(2)).to_have_text("Succeeded")
    assert [] == board.errors
