"""Browser fixtures: a real headless Chromium (Debian's /usr/bin/chromium) driven by
sync Playwright, one per module, and a page on a real coordinator's dashboard that
records every console error and uncaught exception.

Playwright's own browser downloads are never used (no ``playwright install``): CI
installs the distribution's chromium (.ci/run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support import OUTPUT, Coordinator, running_coordinator

CHROMIUM = os.environ.get("SCHEDULER_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = OUTPUT / "screenshots"
# Playwright's waits (expect, wait_for): generous for a loaded CI machine; no test
# bounds how fast something appears (the event stream is the page's only way to learn
# of a new job, so seeing it at all says the stream pushed it).
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"expected Chromium at {CHROMIUM}, found nothing: "
                    "apt-get install -y chromium (or set SCHEDULER_TEST_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Dashboard:
    """A page on a coordinator's dashboard and what went wrong in it."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "#/") -> Page:
        self.page.goto(f"{self.url}/{route}")
        self.page.locator("#live[data-state='live']").wait_for(timeout=WAIT_MS)
        return self.page

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def open_dashboard(browser: Browser, coordinator: Coordinator, *, width: int = 1280,
                   height: int = 860) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": width, "height": height},
                                  timezone_id="Europe/Paris", locale="en-GB")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    board = Dashboard(page, coordinator.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            board.errors.append(f"console error: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: board.errors.append(f"uncaught: {exc}"))
    try:
        yield board
    finally:
        context.close()


@pytest.fixture
def dashboard(browser: Browser, coordinator: Coordinator) -> Iterator[Dashboard]:
    """The dashboard of a fresh coordinator (empty database), on a laptop screen."""
    yield from open_dashboard(browser, coordinator)


@pytest.fixture(scope="module")
def shared_coordinator(module_dsn: str) -> Iterator[Coordinator]:
    """One coordinator (no worker) on the module's database (tests/conftest.py) for the
    tests that look only at the jobs they submit themselves: starting one per test
    would cost seconds each."""
    with running_coordinator(module_dsn) as c:
        yield c


@pytest.fixture
def shared_dashboard(browser: Browser, shared_coordinator: Coordinator) -> Iterator[Dashboard]:
    """The shared coordinator's dashboard, on a laptop screen."""
    yield from open_dashboard(browser, shared_coordinator)


@pytest.fixture
def phone(browser: Browser, shared_coordinator: Coordinator) -> Iterator[Dashboard]:
    """The shared coordinator's dashboard on a phone screen."""
    yield from open_dashboard(browser, shared_coordinator, width=390, height=844)
