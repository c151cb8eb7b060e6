"""One scenario of client/sql_enqueue.py's helpers, written once and played on every driver
(tests/integration/test_enqueue_helpers.py checks the rows it leaves).

A :class:`Driver` is the application's side: the object handed to the helpers, and its
way of running a transaction (committed at the end of the block, rolled back when the
block raises). The async drivers run the async helpers on an event loop of their own,
one call at a time, so the same sync scenario plays them too.

Django's global state stays out of the test process: ``python -m tests.enqueue_scenario
DSN TAG VARIANT`` configures Django in a process of its own, plays the scenario on
``django.db.connection`` (VARIANT ``proxy``) or ``connections["default"]`` (``alias``)
and prints the outcome as one JSON line.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from scheduler_core.client import (
    EnqueueJob,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)

T = TypeVar("T")
RUN_AT = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
BAD_QUEUE = "a b"


class FileWrite(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A payload Struct as a handler declares it; stored as ``fileName``."""

    file_name: str
    content: str


class Rollback(Exception):
    """Raised inside a transaction to roll it back."""


@dataclass
class Driver:
    """What the scenario needs of a driver: the object the helpers are given, a
    transaction block, and the helpers as plain calls."""

    conn: Any
    transaction: Callable[[], AbstractContextManager[None]]
    enqueue: Callable[..., uuid.UUID] = enqueue
    enqueue_many: Callable[[Any, Sequence[EnqueueJob]], list[uuid.UUID]] = enqueue_many


def async_driver(loop: asyncio.AbstractEventLoop, conn: Any,
                 begin: Callable[[], Coroutine[Any, Any, None]],
                 commit: Callable[[], Coroutine[Any, Any, None]],
                 rollback: Callable[[], Coroutine[Any, Any, None]]) -> Driver:
    """A driver whose helpers are ``enqueue_async`` and ``enqueue_many_async``, each call
    run to its end on ``loop``."""

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return loop.run_until_complete(coro)

    @contextmanager
    def transaction() -> Iterator[None]:
        run(begin())
        try:
            yield
        except BaseException:
            run(rollback())
            raise
        run(commit())

    return Driver(conn, transaction,
                  lambda *a, **kw: run(enqueue_async(*a, **kw)),
                  lambda c, jobs: run(enqueue_many_async(c, jobs)))


def play(driver: Driver, tag: str) -> dict[str, Any]:
    """The scenario; every job is marked with ``tag`` (its payload's or its keys), so
    the drivers share one database. Returns ids (as text) and the error seen."""
    conn, out = driver.conn, {}
    with driver.transaction():
        out["committed"] = driver.enqueue(
            conn, "noop", {"tag": tag}, run_at=RUN_AT, queue="helpers", priority=7,
            max_attempts=2, timeout_seconds=9, concurrency_key=f"{tag}-tenant")
        out["defaults"] = driver.enqueue(conn, "noop")
    try:
        with driver.transaction():
            out["rolled_back"] = driver.enqueue(conn, "noop", {"tag": tag})
            raise Rollback
    except Rollback:
        pass
    with driver.transaction():
        out["struct"] = driver.enqueue(conn, "file_write",
                                       FileWrite(file_name=f"{tag}.txt", content="hi"))
    with driver.transaction():
        out["many"] = driver.enqueue_many(conn, [
            {"type": "noop", "payload": {"i": 0, "tag": tag}, "queue": "helpers"},
            {"type": "file_write", "payload": FileWrite(file_name="one.txt", content=tag),
             "run_at": RUN_AT, "max_attempts": 4},
            {"type": "noop", "payload": {"i": 2}, "idempotency_key": f"{tag}-many"},
            {"type": "noop", "payload": {"i": 3}, "depends_on": [out["committed"]]},
            {"type": "noop", "payload": {"i": 4}, "idempotency_key": f"{tag}-many"},
        ])
    same_key = []
    for _ in range(2):
        with driver.transaction():
            same_key.append(driver.enqueue(conn, "noop", {"tag": tag},
                                           idempotency_key=f"{tag}-key"))
    out["same_key"] = same_key
    same_unique = []
    for _ in range(2):
        with driver.transaction():
            same_unique.append(str(driver.enqueue(
                conn, "noop", {"tag": tag}, queue="nowhere", unique_key=f"{tag}-unique",
                unique_window=dt.timedelta(hours=1))))
    with driver.transaction():
        same_unique += [str(i) for i in driver.enqueue_many(conn, [
            {"type": "noop", "queue": "nowhere", "unique_key": f"{tag}-unique",
             "unique_window": dt.timedelta(hours=1)}])]
    out["same_unique"] = same_unique
    try:
        with driver.transaction():
            driver.enqueue(conn, "noop", {}, queue=BAD_QUEUE)
    except Exception as exc:
        out["error"] = {"class": f"{type(exc).__module__}.{type(exc).__qualname__}",
                        "message": str(exc)}
    return json.loads(json.dumps(out, default=str))


def play_django(dsn: str, tag: str, variant: str) -> dict[str, Any]:
    """Configure Django on ``dsn`` (its psycopg 3 backend) and play the scenario."""
    import django
    from django.conf import settings
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    settings.configure(USE_TZ=True, INSTALLED_APPS=[], DATABASES={"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": params["dbname"],
        "USER": params.get("user", ""), "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""), "PORT": params.get("port", "")}})
    django.setup()
    from django.db import connection, connections, transaction

    conn = connection if variant == "proxy" else connections["default"]
    try:
        return play(Driver(conn, transaction.atomic), tag)
    finally:
        connections.close_all()


if __name__ == "__main__":
    print(json.dumps(play_django(*sys.argv[1:4])))
