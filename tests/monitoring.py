"""The ready-made monitoring of deploy/ as the tests read it: the Grafana dashboard's
queries, the alerting rules' expressions and the series their unit tests feed in, and
the metric names a PromQL expression reads.

The names are found by a small scanner, not a PromQL parser: strings, label matchers,
range selectors and the label lists of ``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right`` are cut out, and of the identifiers left those that are
neither called (a function or an aggregation) nor a keyword are metric names. It is
enough for the expressions of deploy/, which ``promtool check rules`` also parses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "scheduler-core.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"

# What a Grafana variable stands for when an expression is checked as plain PromQL.
_VARIABLE = re.compile(r"\$\{?(\w+)(?::\w+)?\}?")
_DURATION_VARIABLES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "Inf", "NaN"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of deploy/ and where it is."""

    where: str
    expr: str


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` reads (Grafana variables taken out first)."""
    text = _VARIABLE.sub("", expr)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names: set[str] = set()
    for m in _IDENTIFIER.finditer(text):
        if text[m.end():].lstrip().startswith("(") or m.group() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def as_promql(expr: str) -> str:
    """A Grafana query as plain PromQL: ``$__rate_interval`` and the other interval
    variables become durations, every other variable (queue, type, job: used in
    ``=~`` matchers) the regex ``.*``."""
    def value(m: re.Match[str]) -> str:
        return _DURATION_VARIABLES.get(m.group(1), ".*")
    return _VARIABLE.sub(value, expr)


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too (rows themselves left out)."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_queries(board: dict[str, Any]) -> list[Query]:
    """Each panel target's ``expr``, and the metric each query variable reads
    (``label_values(metric, label)``), as a query of that metric alone."""
    out = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            out.append(Query(f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        m = _LABEL_VALUES.match(text)
        assert m is not None, f"variable {variable['name']}: not label_values(metric, ...)"
        out.append(Query(f"variable {variable['name']!r}", m.group(1)))
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_queries() -> list[Query]:
    """The alerts' expressions, and the series their unit tests feed in (a test of an
    alert on a series no coordinator exposes would prove nothing)."""
    out = [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for series in test["input_series"]:
            out.append(Query(f"alerts_test {test['name']!r}", series["series"]))
    return out
