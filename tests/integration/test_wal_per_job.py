"""bench/wal_per_job.py, the measurement docs/decisions/0018 and 0031 cite, still runs
the coordinator's own statements and measures real work: each of the insert, the claim
and the completion writes WAL for every job (a claim or completion that matched nothing
would write none)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "wal_per_job.py"


def test_wal_per_job_measures_each_statement_of_a_job(pg_admin_dsn: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--dsn", pg_admin_dsn, "--jobs", "20"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(
        r"^(insert|claim|complete|total)\s+([\d.]+)", done.stdout, re.MULTILINE)}
    assert set(rows) == {"insert", "claim", "complete", "total"}, done.stdout
    # At least the row itself per job in each statement: the heap insert, the job's
    # update at the claim, its update and the history row at the completion.
    assert rows["insert"] >= 1 and rows["claim"] >= 1 and rows["complete"] >= 2, done.stdout
    parts = rows["insert"] + rows["claim"] + rows["complete"]
    assert abs(rows["total"] - parts) < 0.2, done.stdout  # each rounded to 0.1
