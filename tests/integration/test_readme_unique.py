"""The README's "Unique jobs" examples, run as written (its curls, with the real ``curl``
binary, against a real coordinator): the throttle's second press gets the first job,
the debounce's second edit moves the waiting job. The commands are read from
README.md, so the test follows the document."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from typing import Any

import pytest

from tests.integration.test_seed_readme import run_curl
from tests.support import ROOT, Coordinator

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


def unique_curls() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Unique jobs", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [shlex.split(block.replace("\\\n", " ")) for block in blocks]


def with_body(argv: list[str], change: dict[str, Any]) -> list[str]:
    """``argv`` with its ``-d`` JSON body's top-level fields updated."""
    at = argv.index("-d") + 1
    body = json.loads(argv[at])
    body.update(change)
    return [*argv[:at], json.dumps(body), *argv[at + 1:]]


def test_the_readme_has_a_throttle_and_a_debounce_curl() -> None:
    throttle, debounce = unique_curls()
    assert '"onConflict": "replace"' not in " ".join(throttle)
    assert '"onConflict": "replace"' in " ".join(debounce)


def test_the_throttle_example_answers_the_first_job_to_a_second_press(
        api: Coordinator) -> None:
    throttle, _ = unique_curls()
    status, first = run_curl(throttle, api)
    assert (201, True) == (status, first["created"])
    status, again = run_curl(throttle, api)
    assert (200, False, first["id"]) == (status, again["created"], again["id"])


def test_the_debounce_example_moves_the_waiting_job_to_the_last_edit(
        api: Coordinator) -> None:
    _, debounce = unique_curls()
    status, first = run_curl(debounce, api)
    assert (201, "Scheduled") == (status, first["status"])
    later = with_body(debounce, {"payload": {"seconds": 3}, "runAt": "2030-01-01T00:01:00Z"})
    status, moved = run_curl(later, api)
    assert (200, False, first["id"]) == (status, moved["created"], moved["id"])
    assert ({"seconds": 3}, "2030-01-01T00:01:00Z") == (
        moved["payload"], moved["runAt"].replace("+00:00", "Z"))
