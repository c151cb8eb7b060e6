"""bench/run.py's goal table (issue 14) and its reading of hey's output: no benchmark runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location(
    "scbench_run", Path(__file__).resolve().parents[2] / "bench" / "run.py")
assert _spec is not None and _spec.loader is not None
run = importlib.util.module_from_spec(_spec)
sys.modules["scbench_run"] = run
_spec.loader.exec_module(run)

HEY = """
Summary:
  Total:\t1.2026 secs
  Slowest:\t0.0453 secs
  Requests/sec:\t1663.0512

Latency distribution:
  10% in 0.0150 secs
  50% in 0.0188 secs
  99% in 0.0402 secs

Status code distribution:
  [201]\t1990 responses
  [500]\t10 responses

Error distribution:
  [3]\tPost "http://127.0.0.1:1/": dial tcp: connection refused
"""


def test_parse_hey_reads_rate_percentiles_statuses_and_errors() -> None:
    got = run.parse_hey(HEY)
    assert got["per_s"] == 1663.1
    assert got["seconds"] == 1.2026
    assert (got["p50_ms"], got["p99_ms"]) == (18.8, 40.2)
    assert got["statuses"] == {"201": 1990, "500": 10}
    assert len(got["errors"]) == 1 and "connection refused" in got["errors"][0]


def goals(res: dict[str, Any]) -> dict[str, list[str]]:
    rows = run.build_goals({"errors": {}, **res}, run.parse_args(["--quick"]))
    return {r[0]: r for r in rows}


def row(table: dict[str, list[str]], start: str) -> list[str]:
    found = [r for name, r in table.items() if name.startswith(start)]
    assert len(found) == 1, (start, list(table))
    return found[0]


def test_goals_pass_fail_and_ratios_to_the_same_run() -> None:
    table = goals({
        "e2e": {"2x8": {"jobs_per_s": 3000.0}, "inline 2x50": {"jobs_per_s": 12000.0}},
        "cpu": {"noop_inline 2x50": {"cpu_ms_per_job": {"pg backends": 0.154}}},
        "submit": {"sequential": {"jobs_per_s": 1200.0}, "batch": {"jobs_per_s": 40000.0},
                   "hey": {"concurrency": 32, "floor": {"per_s": 1600.0},
                           "ours": {"per_s": 1200.0, "server_cpu_ms_per_request": 0.4}}},
        "latency": {"submit_to_started_at": {"p50_ms": 2.0, "p99_ms": 12.0},
                    "submit_to_body_start": {"p50_ms": 3.0}},
        "peers": {"pgqueuer": {"e2e": [{"processes": 2, "concurrency": 50, "jobs_per_s": 8000.0}],
                               "enqueue": {"batch": {"jobs_per_s": 40000.0}},
                               "latency": {"p50_ms": 4.0}}},
    })
    assert row(table, "1. PostgreSQL")[3:] == ["2.57x", "<= 0.06 ms", "FAIL"]
    assert row(table, "2. e2e inline handlers, best cell (2x50) vs pgqueuer")[3:] == [
        "1.50x", ">= 1.2x", "PASS"]
    assert row(table, "2. e2e job processes, best cell (2x8) vs pgqueuer")[3:] == [
        "0.38x", ">= 0.8x", "FAIL"]
    assert row(table, "2. e2e inline handlers, best cell vs procrastinate")[5] == "n/a"
    assert row(table, "3. single submits, hey")[3:] == ["0.75x", ">= 0.7x", "PASS"]
    assert row(table, "3. coordinator CPU")[5] == "PASS"
    assert row(table, "3. single submits, 1 client")[5] == "PASS"
    assert row(table, "4. batched")[3:] == ["1.00x", ">= 1.2x", "FAIL"]
    assert row(table, "5. pickup p50")[5] == "PASS"
    assert row(table, "5. pickup p99")[5] == "FAIL"
    assert row(table, "5. submit -> job body start")[3:] == ["0.75x", "< 1x", "PASS"]
    assert row(table, "6. claim and list")[5] == "n/a"


def test_goals_say_why_a_cell_is_missing() -> None:
    table = goals({"submit": {"hey": {"error": "n/a: hey not installed"}},
                   "prune": {"skipped": "not run"}})
    assert row(table, "3. single submits, hey")[1] == "n/a: hey not installed"
    assert row(table, "3. single submits, hey")[5] == "n/a"
    assert row(table, "6. claim p99 while pruning")[1] == "not run"


def test_scale_goal_names_the_sizes_used() -> None:
    size = {"claim": {"p50_ms": 5.0}, "list": {"p50_ms": 2.0}, "list_succeeded": {"p50_ms": 3.0}}
    big = {"claim": {"p50_ms": 8.0}, "list": {"p50_ms": 2.0}, "list_succeeded": {"p50_ms": 3.0}}
    table = goals({"scale": {"small": 10000, "big": 100000,
                             "sizes": {"10000": size, "100000": big}},
                   "prune": {"rows": 100000, "workers": 2, "claim_without": {"p99_ms": 10.0},
                             "claim_while_pruning": {"p99_ms": 25.0}}})
    claim = row(table, "6. claim median")
    assert "10k -> 100k, goal at 10k -> 5M" in claim[0]
    assert claim[3:] == ["1.60x", "<= 1.5x", "FAIL"]
    assert row(table, "6. list take=50")[5] == "PASS"
    prune = row(table, "6. claim p99 while pruning 100k")
    assert "goal at 1M" in prune[0]
    assert prune[3:] == ["2.50x", "<= 2x", "FAIL"]
