"""The fault suite: real processes killed, stopped and cut off, a PostgreSQL restarted.

Run by ``just test-faults`` (SCHEDULER_FAULTS=1); left out of ``just test`` by
tests/conftest.py. The root fixtures apply (``db_dsn``, ``processes``, ...). Each test
fills ``figures``: they are written to ``test-output/faults/<test>.json``, with the
test's outcome, even when it fails, and listed in pytest's terminal summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.support import OUTPUT

FAULTS_OUTPUT = OUTPUT / "faults"
_reported: dict[str, dict[str, Any]] = {}  # test name -> its figures, for the summary


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_outcome] = report.outcome
    return report


_outcome = pytest.StashKey[str]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The test's figures (jobs, kills, outages, lost, duplicates, ...)."""
    found: dict[str, Any] = {}
    started = time.monotonic()
    yield found
    name = request.node.name
    found.setdefault("duration_s", round(time.monotonic() - started, 1))
    found["outcome"] = request.node.stash.get(_outcome, "error")
    FAULTS_OUTPUT.mkdir(parents=True, exist_ok=True)
    (FAULTS_OUTPUT / f"{name}.json").write_text(json.dumps(found, indent=2, default=str) + "\n")
    _reported[name] = found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of every fault test run, one line each (the files have them too)."""
    if _reported:
        terminalreporter.section("fault figures")
        for name, found in _reported.items():
            terminalreporter.write_line(f"[{name}] " + ", ".join(
                f"{k}={v}" for k, v in found.items()))
