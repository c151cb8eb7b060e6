"""The README's "Flow control" example, run as written (its curls, with the real
``curl`` binary, against a real coordinator and a real worker): the queue it sets up
holds 10 starts a second and 2 at once per customer, counted from ``job_runs``.

The commands are read from README.md, so the test follows the document.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import shutil
import uuid

import httpx
import pytest

from tests.integration.test_concurrency_keys import overlap_peak, wait_succeeded
from tests.integration.test_rate_limits import most_in_any_window
from tests.integration.test_seed_readme import run_curl
from tests.support import ROOT, Coordinator, Worker, query, submit_batch

README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


def flow_curls() -> list[list[str]]:
    text = README.read_text()
    section = text.split("### Flow control", 1)[1].split("\n### ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [shlex.split(line) for line in block.splitlines() if line.startswith("curl ")]


def test_the_flow_control_example_does_what_the_readme_says(
        api: Coordinator, http: httpx.Client, module_dsn: str) -> None:
    setup, submit_one, show = flow_curls()
    query(module_dsn, "DELETE FROM jobs WHERE queue = 'partner' RETURNING id")
    query(module_dsn, "DELETE FROM job_keys WHERE queue = 'partner' RETURNING key")
    status, queue = run_curl(setup, api)
    assert 200 == status, queue
    assert ([{"limit": 10, "per": "1s", "burst": 1}, {"limit": 1000, "per": "1h", "burst": 50}],
            2) == (queue["rateLimits"], queue["keyConcurrencyLimit"])
    status, job = run_curl(submit_one, api)
    assert (201, "customer:42", "partner") == (status, job["concurrencyKey"], job["queue"])
    # More of the same customer's, and of others', then a worker with plenty of slots.
    ids = [job["id"], *submit_batch(http, [
        {"type": "sleep", "payload": {"seconds": 0.3}, "queue": "partner",
         "concurrencyKey": f"customer:{40 + i % 3}"} for i in range(23)])]
    worker = Worker(api.url, slots=8, extra=["--queues", "partner"])
    try:
        wait_succeeded(module_dsn, ids, timeout=90, what="the example's jobs succeeded")
    finally:
        worker.stop()
    status, shown = run_curl(show, api)
    assert (200, "partner") == (status, shown["name"])
    assert ["rate", "rate"] == [lim["kind"] for lim in shown["limits"]]
    runs = query(module_dsn, "SELECT j.concurrency_key AS key, r.started_at, r.finished_at "
                 "FROM job_runs r JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ANY(%s)",
                 [uuid.UUID(i) for i in ids])
    assert most_in_any_window([r["started_at"] for r in runs], dt.timedelta(seconds=1)) <= 10
    for key in {r["key"] for r in runs}:
        mine = [(r["started_at"], r["finished_at"]) for r in runs if r["key"] == key]
        assert overlap_peak(mine) <= 2, key
