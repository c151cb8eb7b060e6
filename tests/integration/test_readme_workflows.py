"""The README's workflow curl, run as written (the real ``curl`` binary, a real
coordinator): it answers the workflow and its steps, and the graph reads back."""

from __future__ import annotations

import re
import shlex
import shutil

import httpx
import pytest

from tests.integration.test_seed_readme import run_curl
from tests.support import ROOT, Coordinator

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


def test_the_workflow_curl_creates_the_graph_the_readme_describes(
        api: Coordinator, http: httpx.Client) -> None:
    section = (ROOT / "README.md").read_text().split("### Jobs that depend on jobs", 1)[1]
    section = section.split("\n### ", 1)[0]
    [curl] = [shlex.split(line) for block in re.findall(r"```bash\n(.*?)```", section, re.S)
              for line in block.splitlines() if "/api/workflows" in line]
    status, made = run_curl(curl, api)
    assert (201, "nightly", ["extract", "load", "transform"]) == (
        status, made["name"], sorted(made["steps"]))
    wf = http.get(f"/api/workflows/{made['id']}").json()
    assert "Running" == wf["status"]
    assert {"extract": [], "transform": ["extract"], "load": ["transform"]} == {
        s["name"]: s["dependsOn"] for s in wf["steps"]}


def test_the_scheduled_workflow_curl_creates_the_schedule_the_readme_describes(
        api: Coordinator, http: httpx.Client) -> None:
    section = (ROOT / "README.md").read_text().split("### Jobs that depend on jobs", 1)[1]
    section = section.split("\n### ", 1)[0]
    [curl] = [shlex.split(line) for block in re.findall(r"```bash\n(.*?)```", section, re.S)
              for line in block.splitlines() if '"workflow"' in line]
    status, made = run_curl(curl, api)
    assert (201, "0 2 * * *", "queue") == (status, made["cron"], made["overlapPolicy"])
    assert {"name": "nightly", "steps": [
        {"name": "extract", "type": "noop", "dependsOn": []},
        {"name": "load", "type": "noop", "dependsOn": ["extract"]}]} == made["workflow"]
    got = http.get(f"/api/schedules/{made['id']}").json()
    assert (made["workflow"], []) == (got["workflow"], got["recentFires"])
