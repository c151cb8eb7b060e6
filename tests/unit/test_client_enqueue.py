"""client/sql_enqueue.py without a database: the call it builds (only the options given
are named; no value in the statement), what it refuses before any SQL, and that the
client imports neither SQLAlchemy nor Django by itself."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from typing import Any

import msgspec
import pytest

from scheduler_core.client import enqueue, enqueue_async, enqueue_many
from scheduler_core.client.sql_enqueue import _enqueue_call, _many_call
from tests.support import ROOT

WHEN = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


class Email(msgspec.Struct, rename="camel"):
    to_address: str


def fake(module: str, name: str = "Thing", **attrs: Any) -> Any:
    """An object whose type claims to live in ``module`` (what the helpers look at)."""
    return type(name, (), {"__module__": module, **attrs})()


def test_only_the_options_given_are_named_in_the_call() -> None:
    call = _enqueue_call("email", {"a": 1}, {"queue": "mail", "priority": None,
                                             "depends_on": [uuid.UUID(int=1)]})
    assert ("SELECT scheduler.enqueue(CAST(%s AS text), CAST(%s AS jsonb), "
            "queue => CAST(%s AS text), depends_on => CAST(%s AS uuid[]))") == call.positional
    assert ("SELECT scheduler.enqueue(CAST(:type AS text), CAST(:payload AS jsonb), "
            "queue => CAST(:queue AS text), depends_on => CAST(:depends_on AS uuid[]))"
            ) == call.named
    assert {"type": "email", "payload": '{"a":1}', "queue": "mail",
            "depends_on": [str(uuid.UUID(int=1))]} == call.values


def test_no_value_reaches_the_statement() -> None:
    hostile = "x'); DROP TABLE jobs; --"
    options = {"queue": hostile, "idempotency_key": hostile, "concurrency_key": hostile,
               "priority": 1, "max_attempts": 1, "timeout_seconds": 1, "run_at": WHEN,
               "depends_on": [hostile]}
    plain = dict(options, queue="q", idempotency_key="k", concurrency_key="c",
                 depends_on=["p"])
    call, other = _enqueue_call(hostile, {"k": hostile}, options), _enqueue_call("t", {}, plain)
    assert (other.positional, other.named) == (call.positional, call.named)
    assert hostile not in call.positional + call.named


def test_unique_options_are_named_and_a_batch_item_gets_the_apis_object() -> None:
    call = _enqueue_call("email", {}, {"unique_key": "k", "unique_states": ("Pending",),
                                       "unique_window": dt.timedelta(minutes=10)})
    assert call.positional.endswith("unique_key => CAST(%s AS text), unique_states => "
                                    "CAST(%s AS text[]), unique_window => CAST(%s AS interval))")
    assert ["Pending"] == call.values["unique_states"]
    many = _many_call([{"type": "email", "unique_key": "k",
                        "unique_window": dt.timedelta(minutes=10)}])
    assert '[{"type":"email","unique":{"key":"k","window":"600000ms"}}]' == many.values["jobs"]
    with pytest.raises(TypeError, match="unique_window"):
        _enqueue_call("email", {}, {"unique_window": 600})


def test_a_struct_payload_is_encoded_with_its_renames() -> None:
    assert '{"toAddress":"a@example.com"}' == _enqueue_call(
        "email", Email("a@example.com"), {}).values["payload"]


def test_no_payload_is_null_for_the_functions_default() -> None:
    assert _enqueue_call("noop", None, {}).values["payload"] is None


def test_a_naive_run_at_is_refused_before_any_sql() -> None:
    with pytest.raises(ValueError, match="run_at: expected a zone-aware datetime"):
        _enqueue_call("noop", None, {"run_at": dt.datetime(2030, 1, 1)})


def test_enqueue_many_sends_the_apis_field_names_and_drops_unset_ones() -> None:
    call = _many_call([
        {"type": "email", "payload": Email("a@b"), "run_at": WHEN, "max_attempts": 2,
         "idempotency_key": "k", "queue": None},
        {"type": "noop", "depends_on": [uuid.UUID(int=1)], "timeout_seconds": 5,
         "concurrency_key": "c", "priority": -1},
    ])
    assert "SELECT scheduler.enqueue_many(CAST(%s AS jsonb))" == call.positional
    assert [{"type": "email", "payload": {"toAddress": "a@b"},
             "runAt": "2030-01-02T03:04:05Z", "maxAttempts": 2, "idempotencyKey": "k"},
            {"type": "noop", "dependsOn": [str(uuid.UUID(int=1))], "timeoutSeconds": 5,
             "concurrencyKey": "c", "priority": -1}] == msgspec.json.decode(
        call.values["jobs"])


def test_enqueue_many_refuses_an_unknown_key_naming_the_job() -> None:
    with pytest.raises(ValueError, match=r"jobs\[1\]: unknown key 'runAt'"):
        _many_call([{"type": "noop"}, {"type": "noop", "runAt": WHEN}])


def test_an_object_of_no_known_driver_is_refused() -> None:
    with pytest.raises(TypeError, match=r"found builtins\.object"):
        enqueue(object(), "noop")


def test_a_sync_helper_refuses_an_async_session_and_back() -> None:
    session = fake("sqlalchemy.ext.asyncio.session", "AsyncSession", execute=None)
    with pytest.raises(TypeError, match="AsyncSession is async: use enqueue_async"):
        enqueue_many(session, [])
    with pytest.raises(TypeError, match="Session is synchronous: use enqueue /"):
        _run(enqueue_async(fake("sqlalchemy.orm.session", "Session", execute=None), "noop"))
    with pytest.raises(TypeError, match="Django's connection is synchronous"):
        _run(enqueue_async(fake("django.utils.connection", "ConnectionProxy"), "noop"))


def test_a_sqlalchemy_engine_is_refused_for_holding_no_transaction() -> None:
    with pytest.raises(TypeError, match="Engine holds no transaction"):
        enqueue(fake("sqlalchemy.engine.base", "Engine"), "noop")


def test_the_client_imports_neither_sqlalchemy_nor_django() -> None:
    code = ("import sys, scheduler_core.client, scheduler_core.client.sql_enqueue; "
            "print(sorted(m for m in ('sqlalchemy', 'django') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    assert "[]" == done.stdout.strip()


def _run(coro: Any) -> Any:
    """Drive a coroutine that finishes without awaiting anything real."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine waited for something")
