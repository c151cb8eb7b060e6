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


def flow_res(rate_limited: float, unlimited: float = 6000.0) -> dict[str, Any]:
    cell = {"workers": 2, "slots": 50, "jobs": 10000, "claims": 140, "jobs_per_claim": 71.4}
    return {"errors": {},
            "e2e": {"inline 2x50": {"jobs_per_s": 6400.0, "jobs": 10000}},
            "flow": {"unlimited": {**cell, "keys": 0, "jobs_per_s": unlimited},
                     "rate-limited": {**cell, "keys": 10000, "jobs_per_s": rate_limited},
                     "key-concurrency": {**cell, "keys": 10000, "jobs_per_s": 4500.0}}}


def test_flow_is_a_phase_of_quick_runs_and_can_be_left_out() -> None:
    quick = run.parse_args(["--quick"])
    assert "flow" in quick.only
    assert (quick.flow_jobs, quick.flow_keys) == (10000, 10000)
    assert run.parse_args([]).flow_jobs == 20000
    assert "flow" not in run.parse_args(["--quick", "--skip", "flow"]).only
    assert run.parse_args(["--only", "flow"]).only == ["flow"]


def test_flow_cells_allow_the_throughput() -> None:
    # a window's burst is how many may start at once: without one each claim takes 1 job
    rate = run.FLOW_CELLS["rate-limited"][0]
    assert all(w.get("burst", 1) >= 100 for w in rate["rateLimits"] + rate["keyRateLimits"])
    assert run.FLOW_CELLS["unlimited"] == ({}, False)
    assert run.FLOW_CELLS["key-concurrency"] == ({"keyConcurrencyLimit": 2}, True)


def test_flow_rows_show_ratios_to_the_unlimited_cell() -> None:
    args = run.parse_args(["--quick"])
    rows = {r[0]: r for r in run.build_rows(flow_res(5400.0), args)[0]}
    assert row(rows, "flow: unlimited queue")[1] == "6,000"
    rate = row(rows, "flow: rate-limited queue, 10k keys")
    assert rate[1:4] == ["5,400 (0.90x unlimited)", ">= 5,000", "PASS"]
    assert row(rows, "flow: key-concurrency-limited")[1] == "4,500 (0.75x unlimited)"
    assert row(rows, "  flow unlimited vs e2e noop_inline 2x50")[1] == "6,000 vs 6,400 (0.94x)"
    assert row(rows, "  rate-limited: claims")[1] == "140, 71.4"


def test_flow_goals() -> None:
    table = goals(flow_res(4000.0))
    assert row(table, "flow: rate-limited queue, 10k keys")[3:] == ["0.80x", ">= 5,000/s", "FAIL"]
    assert row(table, "flow: unlimited queue vs the e2e")[1:4] == [
        "6,000/s", "6,400/s (10,000 queued)", "0.94x"]
    assert row(goals(flow_res(5000.0)), "flow: rate-limited")[5] == "PASS"
    missing = goals({"errors": {"flow rate-limited": "Timeout: 600 of 10000 jobs not finished"}})
    assert row(missing, "flow: rate-limited")[1].startswith("error: Timeout")
    assert row(missing, "flow: rate-limited")[5] == "n/a"
    assert row(missing, "flow: unlimited queue vs")[5] == "n/a"
