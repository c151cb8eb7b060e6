"""The README's "Search" and "Bulk actions" examples, run as written against a real
coordinator: the curls with the real ``curl`` binary, the ``scheduler`` lines through
the command's ``main`` (as tests/integration/test_cli.py does). The commands are read
from README.md, so the test follows the document; the jobs they find are inserted by
SQL first (DeadLetter ones need a history)."""

from __future__ import annotations

import re
import shlex
import shutil

import psycopg
import pytest

from scheduler_core.command.cli import main
from tests.integration.test_seed_readme import run_curl
from tests.support import ROOT, Coordinator, query

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl binary")


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def commands(title: str, program: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", section(title), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.startswith(program + " ")]


@pytest.fixture(scope="module", autouse=True)
def jobs(module_dsn: str) -> None:
    """Three DeadLetter jobs of customer 42, one of customer 7, and a Succeeded job
    tagged billing whose result has status 503 (and one with 200)."""
    with psycopg.connect(module_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, type, payload, status, queue, run_at, attempts, "
            "max_attempts, timeout_seconds, finished_at, last_error, result, tags) "
            "SELECT gen_random_uuid(), 'noop', jsonb_build_object('customerId', c), s, "
            "'default', now(), 3, 3, 60, now(), 'boom', r::jsonb, t "
            "FROM (VALUES (42, 'DeadLetter', NULL, NULL), (42, 'DeadLetter', NULL, NULL), "
            "(42, 'DeadLetter', NULL, NULL), (7, 'DeadLetter', NULL, NULL), "
            "(1, 'Succeeded', '{\"status\": 503}', ARRAY['billing']), "
            "(2, 'Succeeded', '{\"status\": 200}', ARRAY['billing'])) v(c, s, r, t)")


def test_the_sections_have_the_curls_and_commands_this_module_runs() -> None:
    assert (2, 2, 3) == (len(commands("Search", "curl")), len(commands("Bulk actions", "curl")),
                         len(commands("Bulk actions", "scheduler")))


def test_the_search_curls_find_the_jobs_they_describe(api: Coordinator) -> None:
    by_payload, by_result = commands("Search", "curl")
    status, page = run_curl(by_payload, api)
    assert (200, [42, 42, 42]) == (status, [j["payload"]["customerId"] for j in page["items"]])
    status, page = run_curl(by_result, api)
    assert (200, [{"status": 503}]) == (status, [j["result"] for j in page["items"]])


def test_the_bulk_commands_count_then_retry(
        api: Coordinator, module_dsn: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORDINATOR_URL", api.url)
    listing, count, retry = commands("Bulk actions", "scheduler")
    assert 0 == main(listing[1:])
    assert 0 == len(re.findall(r"^[0-9a-f-]{36} ", capsys.readouterr().out, re.M))  # untagged
    assert 1 == main(count[1:])
    assert capsys.readouterr().out.startswith("would retry 3 of 3 matching job(s)")
    dry, real = commands("Bulk actions", "curl")
    status, plan = run_curl(dry, api)
    assert (200, 3, 3) == (status, plan["matched"], plan["count"])
    assert 0 == main(retry[1:])
    assert "retried 3 job(s)\n" == capsys.readouterr().out
    status, again = run_curl(real, api)  # none DeadLetter now: nothing matches
    assert (200, 0, 0) == (status, again["matched"], again["count"])
    rows = query(module_dsn, "SELECT status, retry_reason FROM jobs "
                             "WHERE payload @> '{\"customerId\": 42}'")
    assert [("Pending", "fixed the bug")] * 3 == [(r["status"], r["retry_reason"]) for r in rows]
