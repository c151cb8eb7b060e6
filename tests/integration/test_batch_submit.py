"""POST /api/jobs/batch against a real coordinator and its database: up to 1000 jobs
in one request, validated item by item like POST /api/jobs, written all or nothing,
idempotency keys honoured within and across batches."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.support import Coordinator


def count_jobs(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert row is not None
        return int(row[0])


def post_batch(c: Coordinator, jobs: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(c.url + "/api/jobs/batch", json={"jobs": jobs}, timeout=30)


def test_a_thousand_jobs_in_one_call_are_created_in_request_order(
        db_dsn: str, coordinator: Coordinator) -> None:
    jobs = [{"type": "noop", "payload": {}, "priority": i % 7} for i in range(1000)]

    resp = post_batch(coordinator, jobs)

    assert 201 == resp.status_code, resp.text
    items = resp.json()["items"]
    assert 1000 == len(items)
    assert [i % 7 for i in range(1000)] == [item["priority"] for item in items]
    assert all(item["created"] and item["status"] == "Pending" for item in items)
    assert 1000 == len({item["id"] for item in items})
    assert 1000 == count_jobs(db_dsn)
    one = httpx.get(f"{coordinator.url}/api/jobs/{items[500]['id']}", timeout=10).json()
    # (One job's GET also says why a waiting job waits.)
    assert {k: v for k, v in items[500].items() if k != "created"} == \
        {k: v for k, v in one.items() if k not in ("runs", "waiting")}
    assert "reason" in one["waiting"]


def test_one_bad_item_is_400_naming_it_and_nothing_is_written(
        db_dsn: str, coordinator: Coordinator) -> None:
    jobs: list[dict[str, Any]] = [{"type": "noop"} for _ in range(5)]
    jobs[3] = {"type": "http_get", "payload": {"url": "ftp://example.com/x"}}

    resp = post_batch(coordinator, jobs)

    assert 400 == resp.status_code, resp.text
    assert "jobs[3].payload.url" == resp.json()["field"]
    assert 0 == count_jobs(db_dsn)


def test_a_bad_field_of_an_item_is_named_with_its_index(
        db_dsn: str, coordinator: Coordinator) -> None:
    resp = post_batch(coordinator, [{"type": "noop"}, {"type": "noop", "maxAttempts": 0}])
    assert (400, "jobs[1].maxAttempts") == (resp.status_code, resp.json()["field"])
    resp = post_batch(coordinator, [{"type": "noop"}, {"type": "nope"}])
    assert (400, "jobs[1].type") == (resp.status_code, resp.json()["field"])
    resp = post_batch(coordinator, [{"type": "noop", "runAt": "tomorrow"}])
    assert (400, "jobs[0].runAt") == (resp.status_code, resp.json()["field"])
    assert 0 == count_jobs(db_dsn)


def test_cron_is_refused_in_a_batch(db_dsn: str, coordinator: Coordinator) -> None:
    resp = post_batch(coordinator, [{"type": "noop"}, {"type": "noop", "cron": "* * * * *"}])
    assert (400, "jobs[1].cron") == (resp.status_code, resp.json()["field"])
    assert 0 == count_jobs(db_dsn)


def test_more_than_1000_jobs_is_400_naming_jobs(db_dsn: str, coordinator: Coordinator) -> None:
    resp = post_batch(coordinator, [{"type": "noop"}] * 1001)
    assert (400, "jobs") == (resp.status_code, resp.json()["field"])
    assert 0 == count_jobs(db_dsn)


def test_a_key_repeated_within_a_batch_makes_one_job_and_the_first_wins(
        db_dsn: str, coordinator: Coordinator) -> None:
    resp = post_batch(coordinator, [
        {"type": "noop", "idempotencyKey": "k1", "priority": 1},
        {"type": "noop"},
        {"type": "noop", "idempotencyKey": "k1", "priority": 2},
    ])

    assert 201 == resp.status_code, resp.text
    first, other, again = resp.json()["items"]
    assert (True, True, False) == (first["created"], other["created"], again["created"])
    assert first["id"] == again["id"]
    assert 1 == again["priority"]
    assert 2 == count_jobs(db_dsn)


def test_keys_known_from_an_earlier_batch_return_the_existing_jobs(
        db_dsn: str, coordinator: Coordinator) -> None:
    earlier = post_batch(coordinator, [{"type": "noop", "idempotencyKey": "a"},
                                       {"type": "noop", "idempotencyKey": "b"}]).json()["items"]

    same = post_batch(coordinator, [{"type": "noop", "idempotencyKey": "b"},
                                    {"type": "noop", "idempotencyKey": "a"}])
    assert 200 == same.status_code, same.text
    assert [earlier[1]["id"], earlier[0]["id"]] == [i["id"] for i in same.json()["items"]]
    assert [False, False] == [i["created"] for i in same.json()["items"]]

    mixed = post_batch(coordinator, [{"type": "noop", "idempotencyKey": "a"},
                                     {"type": "noop", "idempotencyKey": "c"}])
    assert 201 == mixed.status_code, mixed.text
    assert [False, True] == [i["created"] for i in mixed.json()["items"]]
    assert earlier[0]["id"] == mixed.json()["items"][0]["id"]
    assert 3 == count_jobs(db_dsn)


def test_a_key_from_a_single_submission_is_honoured_by_a_batch(
        db_dsn: str, coordinator: Coordinator) -> None:
    single = httpx.post(coordinator.url + "/api/jobs",
                        json={"type": "noop", "idempotencyKey": "solo"}, timeout=10).json()
    resp = post_batch(coordinator, [{"type": "noop", "idempotencyKey": "solo"}])
    assert 200 == resp.status_code
    assert [(single["id"], False)] == [(i["id"], i["created"]) for i in resp.json()["items"]]
    assert 1 == count_jobs(db_dsn)


def test_odd_values_are_stored_as_sent_through_the_statements_json_parameter(
        db_dsn: str, coordinator: Coordinator) -> None:
    # insert_jobs carries a batch as one JSON document (jsonb_to_recordset): quoting,
    # escapes, non-ASCII text, zoned times and range edges must come back unchanged.
    odd = "\x01\x1f\u2028 é 😀 \"q\" \\ </script> %(jobs)s ' ;--"
    jobs: list[dict[str, Any]] = [
        {"type": "fail", "payload": {"message": odd}, "idempotencyKey": odd},
        {"type": "fail", "payload": {"message": "later"},
         "runAt": "2030-01-01T00:00:00.123456+05:00", "priority": -100,
         "maxAttempts": 100, "timeoutSeconds": 86400, "queue": "a.b-c_d"},
    ]

    resp = post_batch(coordinator, jobs)

    assert 201 == resp.status_code, resp.text
    first, second = resp.json()["items"]
    assert (odd, odd) == (first["payload"]["message"], first["idempotencyKey"])
    assert ("Scheduled", "2029-12-31T19:00:00.123456Z", -100, 100, 86400, "a.b-c_d") == (
        second["status"], second["runAt"], second["priority"], second["maxAttempts"],
        second["timeoutSeconds"], second["queue"])
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute("SELECT payload->>'message', idempotency_key FROM jobs "
                           "WHERE id = %s", (first["id"],)).fetchone()
    assert (odd, odd) == row
    again = post_batch(coordinator, [jobs[0]])  # the key is found again, byte for byte
    assert (200, first["id"]) == (again.status_code, again.json()["items"][0]["id"])
