"""The dashboard's login in a real headless Chromium, against a coordinator started
with tokens: the page asks for the token once, then the dashboard works (its writes
carry the CSRF header bound to the session), and signing out (a POST) ends the session
on the server and asks again."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import WAIT_MS, Dashboard, open_dashboard
from tests.support import Coordinator, running_coordinator

ADMIN = "browser-admin-" + "a" * 20
READ = "browser-read-" + "r" * 20
TOKENS = {"SCHEDULER_ADMIN_TOKEN": ADMIN, "SCHEDULER_READ_TOKEN": READ,
          "SCHEDULER_WORKER_TOKEN": "browser-worker-" + "w" * 20}


@pytest.fixture(scope="module")
def secured(module_dsn: str) -> Iterator[Coordinator]:
    with running_coordinator(module_dsn, env=TOKENS) as c:
        yield c


@pytest.fixture
def board(browser: Browser, secured: Coordinator) -> Iterator[Dashboard]:
    yield from open_dashboard(browser, secured)


def sign_in(board: Dashboard, token: str) -> Page:
    page = board.page
    page.goto(board.url + "/")
    expect(page).to_have_url(board.url + "/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live[data-state='live']").wait_for(timeout=WAIT_MS)
    return page


def test_the_login_page_takes_the_token_and_shows_the_overview(board: Dashboard) -> None:
    page = sign_in(board, ADMIN)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    board.screenshot("login-overview")
    assert [] == board.errors


def test_a_wrong_token_is_refused_on_the_login_page(board: Dashboard) -> None:
    page = board.page
    page.goto(board.url + "/login")
    page.get_by_label("Token").fill("not-the-token-" + "x" * 20)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    board.screenshot("login-refused")


def test_a_signed_in_admin_cancels_a_job_and_signs_out(board: Dashboard,
                                                       secured: Coordinator) -> None:
    resp = httpx.post(secured.url + "/api/jobs", headers={"Authorization": f"Bearer {ADMIN}"},
                      json={"type": "noop", "runAt": "2999-01-01T00:00:00Z"})
    job = resp.json()
    page = sign_in(board, ADMIN)
    page.goto(f"{board.url}/#/jobs/{job['id']}")
    page.get_by_role("button", name="Cancel").click()  # a write: needs the CSRF header
    expect(page.get_by_test_id("job-status")).to_have_text("Cancelled")
    session = next(c["value"] for c in page.context.cookies()
                   if c["name"] == "scheduler_session")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(board.url + "/login")
    page.goto(board.url + "/")
    expect(page).to_have_url(board.url + "/login")  # asked again
    # The session ended on the coordinator, not only in this browser.
    replayed = httpx.get(secured.url + "/api/jobs", cookies={"scheduler_session": session})
    assert 401 == replayed.status_code
    assert [] == board.errors


def test_a_read_only_login_cannot_cancel(board: Dashboard, secured: Coordinator) -> None:
    resp = httpx.post(secured.url + "/api/jobs", headers={"Authorization": f"Bearer {ADMIN}"},
                      json={"type": "noop", "runAt": "2999-01-01T00:00:00Z"})
    job = resp.json()
    page = sign_in(board, READ)
    page.goto(f"{board.url}/#/jobs/{job['id']}")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#toast")).to_contain_text("needs the admin role")
    expect(page.get_by_test_id("job-status")).to_have_text("Scheduled")
