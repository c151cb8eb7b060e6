"""The dashboard's Audit page in a real headless Chromium, against a coordinator started
with named tokens: signed in as the admin, a queue paused from the API shows as a row
naming the token, the sign-in shows with its session, and the actor filter narrows the
list; a read session is told the list is the admin's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import WAIT_MS, Dashboard, open_dashboard
from tests.support import Coordinator, running_coordinator

ADMIN = "browser-admin-" + "a" * 20
READ = "browser-read-" + "r" * 20
TOKENS = {"SCHEDULER_ADMIN_TOKEN": f"ops:{ADMIN}", "SCHEDULER_READ_TOKEN": f"viewer:{READ}",
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
    page.goto(board.url + "/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#live[data-state='live']").wait_for(timeout=WAIT_MS)
    return page


def test_the_audit_page_lists_writes_and_sign_ins_and_filters_them(
        board: Dashboard, secured: Coordinator) -> None:
    assert 200 == httpx.post(f"{secured.url}/api/queues/audited-q/pause", timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN}"}).status_code
    page = sign_in(board, ADMIN)
    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Audit")).to_be_visible()
    rows = page.get_by_test_id("audit-row")
    pause = rows.filter(has_text="/api/queues/<name>/pause")
    expect(pause).to_have_count(1)
    expect(pause).to_contain_text("ops")
    expect(pause).to_contain_text("audited-q")
    login = rows.filter(has_text="POST /login")
    expect(login.first).to_contain_text("session")
    expect(page.locator("[data-nav='audit']")).to_have_class("active")
    board.screenshot("audit-page")

    page.get_by_label("Actor").fill("nobody-at-all")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No audit rows match these filters.")).to_be_visible()
    assert "actor=nobody-at-all" in page.url
    assert ADMIN not in page.content()
    assert [] == board.errors


def test_a_read_session_is_told_the_audit_is_the_admins(board: Dashboard) -> None:
    page = sign_in(board, READ)
    page.goto(board.url + "/#/audit")
    expect(page.get_by_text("Could not list the audit trail")).to_be_visible()
