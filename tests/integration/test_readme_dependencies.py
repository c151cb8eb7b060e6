"""The README's "Jobs that depend on jobs" example, run as written (its curl, with the
real ``curl`` binary, against a real coordinator and real worker processes): extract,
then the three transforms, then load, each started after its parents succeeded, and
the batch's callback after all of them, counted from ``job_runs``."""

from __future__ import annotations

import re
import shlex
import shutil
import uuid

import pytest

from tests.integration.test_concurrency_keys import wait_succeeded
from tests.integration.test_seed_readme import run_curl
from tests.support import ROOT, Coordinator, Worker, query

README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


def the_curl() -> list[str]:
    section = README.read_text().split("### Jobs that depend on jobs", 1)[1].split("\n### ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[0]  # the first: the batch
    [line] = [shlex.split(line) for line in block.splitlines() if line.startswith("curl ")]
    return line


def test_the_pipeline_example_runs_in_the_order_the_readme_says(
        api: Coordinator, module_dsn: str) -> None:
    status, body = run_curl(the_curl(), api)
    assert 201 == status, body
    ids = [item["id"] for item in body["items"]]
    callback = body["callbacks"]["onFinish"]["id"]
    assert ["Pending", "Waiting", "Waiting", "Waiting", "Waiting"] == [
        item["status"] for item in body["items"]]
    workers = [Worker(api.url, slots=4) for _ in range(2)]
    try:
        wait_succeeded(module_dsn, [*ids, callback], timeout=90,
                       what="the pipeline and its callback succeeded")
    finally:
        for w in workers:
            w.stop()
    runs = {str(r["job_id"]): r for r in query(
        module_dsn, "SELECT job_id, started_at, finished_at FROM job_runs "
        "WHERE job_id = ANY(%s) AND outcome = 'Succeeded'",
        [uuid.UUID(i) for i in [*ids, callback]])}
    extract, t1, t2, t3, load = (runs[i] for i in ids)
    for t in (t1, t2, t3):
        assert t["started_at"] >= extract["finished_at"]
        assert load["started_at"] >= t["finished_at"]
    assert runs[callback]["started_at"] >= max(r["finished_at"] for r in (
        extract, t1, t2, t3, load))
