"""The overview's read replica note in real Chromium: "replica lag N s" with a replica
configured (a real streaming standby, tests/pg_cluster.py), nothing without one."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from tests.browser.conftest import WAIT_MS, Dashboard, open_dashboard
from tests.integration.test_read_replica import nodes, start_coordinator  # noqa: F401
from tests.pg_cluster import PgNode


def test_the_overview_shows_the_replica_lag_when_a_replica_is_configured(
        browser: Browser, nodes: tuple[PgNode, PgNode]) -> None:  # noqa: F811
    primary, standby = nodes
    c = start_coordinator(primary, standby)
    try:
        for board in open_dashboard(browser, c):
            page = board.open("#/")
            note = page.get_by_test_id("replica-lag")
            expect(note).to_have_text(re.compile(r"replica lag \d+\.\d s"), timeout=WAIT_MS)
            assert [] == board.errors
    finally:
        c.stop()


def test_without_a_replica_the_overview_shows_no_replica_lag(
        shared_dashboard: Dashboard) -> None:
    page = shared_dashboard.open("#/")
    expect(page.get_by_text(re.compile("Snapshot read"))).to_be_visible()
    expect(page.get_by_test_id("replica-lag")).to_have_count(0)
    assert [] == shared_dashboard.errors
