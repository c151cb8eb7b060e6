"""Odd values that used to be accepted (issue 12, item 11), through real HTTP against a
real coordinator: each is a 400 whose body names the field, and nothing is written.

The unit tables (tests/unit/test_cron.py, tests/unit/test_handlers.py) cover more
variants of each rule; this module shows that the API applies them.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import query

BDO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE

# (case, method, path, query string, JSON body or None, the field named)
CASES: list[tuple[str, str, str, str, Any, str]] = [
    ("http_get_port_99999", "POST", "/api/jobs", "",
     {"type": "http_get", "payload": {"url": "http://example.com:99999/"}}, "payload.url"),
    ("http_get_port_0", "POST", "/api/jobs", "",
     {"type": "http_get", "payload": {"url": "http://example.com:0/"}}, "payload.url"),
    ("http_get_port_99999_in_a_batch", "POST", "/api/jobs/batch", "",
     {"jobs": [{"type": "noop"},
               {"type": "http_get", "payload": {"url": "https://example.com:99999"}}]},
     "jobs[1].payload.url"),
    ("http_get_port_99999_on_a_schedule", "POST", "/api/jobs", "",
     {"type": "http_get", "payload": {"url": "http://example.com:99999/"}, "cron": "@daily"},
     "payload.url"),
    ("cron_huge_step", "POST", "/api/jobs", "",
     {"type": "noop", "cron": "*/99999999999999999999 * * * *"}, "cron"),
    ("cron_hour_step_25", "POST", "/api/jobs", "", {"type": "noop", "cron": "0 */25 * * *"},
     "cron"),
    ("cron_second_step_61", "POST", "/api/jobs", "", {"type": "noop", "cron": "*/61 * * * * *"},
     "cron"),
    ("timezone_localtime", "POST", "/api/jobs", "",
     {"type": "noop", "cron": "@hourly", "timezone": "localtime"}, "timezone"),
    ("timezone_posix_path", "POST", "/api/jobs", "",
     {"type": "noop", "cron": "@hourly", "timezone": "posix/Europe/Berlin"}, "timezone"),
    ("file_name_bidi_override", "POST", "/api/jobs", "",
     {"type": "file_write", "payload": {"fileName": f"invoice{BDO}fdp.exe", "content": "x"}},
     "payload.fileName"),
    ("file_name_bidi_isolate_in_a_folder", "POST", "/api/jobs", "",
     {"type": "file_write", "payload": {"fileName": "a\u2067b/c.txt", "content": "x"}},
     "payload.fileName"),
    ("file_name_zero_width", "POST", "/api/jobs", "",
     {"type": "file_write", "payload": {"fileName": "re\u200bport.txt", "content": "x"}},
     "payload.fileName"),
    ("file_name_not_nfc", "POST", "/api/jobs", "",
     {"type": "file_write", "payload": {"fileName": "cafe\u0301.txt", "content": "x"}},
     "payload.fileName"),
    ("file_name_bidi_in_a_batch", "POST", "/api/jobs/batch", "",
     {"jobs": [{"type": "file_write", "payload": {"fileName": f"a{BDO}b", "content": ""}}]},
     "jobs[0].payload.fileName"),
    ("jobs_take_repeated", "GET", "/api/jobs", "take=5&take=1000", None, "take"),
    ("jobs_take_repeated_same_value", "GET", "/api/jobs", "take=5&take=5", None, "take"),
    ("jobs_status_repeated", "GET", "/api/jobs", "status=Pending&status=Running", None,
     "status"),
    ("jobs_cursor_repeated", "GET", "/api/jobs",
     "cursor=00000000-0000-0000-0000-000000000000&cursor=", None, "cursor"),
    ("schedules_take_repeated", "GET", "/api/schedules", "take=5&take=1000", None, "take"),
]


def counts(dsn: str) -> tuple[int, int]:
    row = query(dsn, "SELECT (SELECT count(*) FROM jobs) AS jobs, "
                     "(SELECT count(*) FROM schedules) AS schedules")[0]
    return row["jobs"], row["schedules"]


@pytest.mark.parametrize(("method", "path", "params", "body", "field"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_odd_value_is_400_naming_its_field_and_writes_nothing(
        http: httpx.Client, module_dsn: str, method: str, path: str, params: str,
        body: Any, field: str) -> None:
    before = counts(module_dsn)
    url = f"{path}?{params}" if params else path
    resp = http.request(method, url, json=body)
    assert 400 == resp.status_code, resp.text
    error = resp.json()
    assert {"error", "message", "field"} <= set(error)
    assert field == error["field"], error
    assert error["message"], error
    assert before == counts(module_dsn)


@pytest.mark.parametrize(("path", "params"), [
    ("/api/jobs", "take=5&status=Pending&type=noop&queue=default"),
    ("/api/schedules", "take=5"),
])
def test_each_parameter_given_once_is_still_accepted(http: httpx.Client, path: str,
                                                    params: str) -> None:
    assert 200 == http.get(f"{path}?{params}").status_code


@pytest.mark.parametrize(("payload", "cron", "timezone"), [
    ({"url": "http://example.com:8080/"}, None, None),
    ({"url": "https://example.com:65535/x"}, "*/60 * * * *", "Europe/Berlin"),
], ids=["port_8080", "port_65535_hourly_in_berlin"])
def test_the_edges_of_each_rule_are_accepted(http: httpx.Client, payload: dict[str, str],
                                             cron: str | None, timezone: str | None) -> None:
    body: dict[str, Any] = {"type": "http_get", "payload": payload}
    if cron is not None:
        body.update(cron=cron, timezone=timezone)
    assert 201 == http.post("/api/jobs", json=body).status_code


def test_an_nfc_file_name_with_non_ascii_letters_is_accepted(http: httpx.Client) -> None:
    resp = http.post("/api/jobs", json={"type": "file_write", "payload": {
        "fileName": "caf\u00e9/\u05e9\u05dc\u05d5\u05dd.txt", "content": "x"}})
    assert 201 == resp.status_code, resp.text
