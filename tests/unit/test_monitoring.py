"""The ready-made monitoring of deploy/: the alerting rules pass ``promtool check rules``
and their unit tests ``promtool test rules``; every alert is tested firing and not
firing and says how bad it is; the Grafana dashboard is a dashboard, and each of its
queries is valid PromQL. (That every metric they read exists is
tests/integration/test_monitoring_metrics.py.)

promtool comes with Prometheus (Debian: ``apt-get install prometheus``). Without it
these tests skip, except in CI (``CI=true``), where a missing promtool fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring import (
    ALERTS,
    ALERTS_TEST,
    Query,
    alert_rules,
    as_promql,
    dashboard,
    dashboard_queries,
    metric_names,
    panels,
)

SEVERITIES = {"critical", "warning", "info"}


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed, and CI must run the rules' checks "
                        "(.ci/run installs it: apt-get install prometheus)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return path


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


# --- alerts ------------------------------------------------------------------------

def test_promtool_check_rules_accepts_every_alert(promtool: str) -> None:
    done = run(promtool, "check", "rules", ALERTS)
    assert 0 == done.returncode, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_promtool_test_rules_passes_the_alerts_unit_tests(promtool: str) -> None:
    done = run(promtool, "test", "rules", ALERTS_TEST)
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    found = {rule["alert"]: (rule.get("labels", {}).get("severity") in SEVERITIES,
                             bool(rule.get("annotations", {}).get("summary")),
                             bool(rule.get("annotations", {}).get("description")))
             for rule in alert_rules()}
    assert {name: (True, True, True) for name in found} == found


def test_every_alert_is_tested_both_firing_and_not_firing() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert (names, names) == (fired, quiet)


def test_alerts_test_file_loads_the_alerts_beside_it() -> None:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    assert [ALERTS.name] == doc["rule_files"]


# --- the Grafana dashboard -----------------------------------------------------------

def test_dashboard_is_a_grafana_dashboard_with_its_variables() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert board["schemaVersion"] >= 36  # Grafana 9 and later
    assert ("datasource", "prometheus") == (variables["datasource"]["type"],
                                            variables["datasource"]["query"])
    assert variables["queue"]["query"]["query"].startswith("label_values(")
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_every_panel_queries_the_chosen_prometheus_and_fits_the_grid() -> None:
    board = dashboard()
    wrong = [(p["title"], p.get("datasource"), p["gridPos"]) for p in panels(board)
             if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}
             or not p.get("targets")
             or p["gridPos"]["x"] + p["gridPos"]["w"] > 24]
    assert [] == wrong


def test_dashboard_covers_what_an_operator_watches() -> None:
    read = set().union(*(metric_names(q.expr) for q in dashboard_queries(dashboard())))
    watched = {
        "scheduler_jobs_finished_total",            # throughput by outcome, failures
        "scheduler_jobs_dead_lettered_total",
        "scheduler_queue_lag_seconds",
        "scheduler_job_queue_wait_seconds_bucket",  # wait histogram
        "scheduler_job_run_duration_seconds_bucket",
        "scheduler_workers", "scheduler_slots", "scheduler_slots_busy",
        "scheduler_jobs_claimed_total",
        "scheduler_leases_reaped_total",
        "scheduler_queue_rate_bucket_fill", "scheduler_queue_jobs_held",
        "up",
        "scheduler_actor_restarts_total",
    }
    assert set() == watched - read


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each query, its Grafana variables replaced, becomes a recording rule that
    promtool parses."""
    queries = dashboard_queries(dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": as_promql(q.expr)}
        for n, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = run(promtool, "check", "rules", path)
    assert 0 == done.returncode, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


# --- reading metric names out of PromQL (used by the integration test) ------------------

@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (outcome) (rate(scheduler_jobs_finished_total{type=~"$type"}[$__rate_interval]))',
     {"scheduler_jobs_finished_total"}),
    ("histogram_quantile(0.95, sum by (le, type) (rate(a_seconds_bucket[5m])))",
     {"a_seconds_bucket"}),
    ('max(scheduler_workers{state="Active"}) == 0\n  and on ()\n'
     "max(lag unless on (queue) paused == 1) > 0", {"scheduler_workers", "lag", "paused"}),
    ('up{job="scheduler-coordinator"} == 1 unless on (job, instance) scheduler_slots',
     {"up", "scheduler_slots"}),
    ("sum(x) without (instance) / ignoring (le) group_left (type) y offset 5m",
     {"x", "y"}),
    ('absent(up{job="by(x)"} == 1) * 1e-9', {"up"}),
])
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert names == metric_names(expr)


def test_grafana_variables_become_durations_and_match_all_regexes() -> None:
    assert (Query("q", 'rate(x{queue=~".*"}[5m])')
            == Query("q", as_promql('rate(x{queue=~"$queue"}[$__rate_interval])')))
