"""Enqueue jobs inside the application's own database transaction: thin helpers over the
SQL functions ``scheduler.enqueue`` and ``scheduler.enqueue_many`` (migration 0016), for
the drivers applications use. The job commits with the application's rows or not at
all; a coordinator checks its type and payload after the commit.

    enqueue(conn, job_type, payload=None, *, run_at=..., queue=..., ...) -> uuid.UUID
    enqueue_many(conn, jobs) -> list[uuid.UUID]
    enqueue_async / enqueue_many_async: the same, awaited

``conn`` is what the application already holds, inside the transaction it means:

- psycopg 3: a ``Connection`` or ``Cursor`` (a new cursor on its connection runs the
  call, so the given cursor's results are left alone); async: ``AsyncConnection`` or
  ``AsyncCursor``;
- SQLAlchemy 2: a ``Session`` or ``Connection``; async: ``AsyncSession`` or
  ``AsyncConnection`` (an ``Engine`` holds no transaction and is refused);
- Django: ``django.db.connection`` or ``connections[alias]``, inside
  ``transaction.atomic()`` (outside it Django commits each statement at once). Django's
  connection is synchronous: there is no ``enqueue_async`` for it.

The driver is told by ``type(conn).__module__``, so this module imports SQLAlchemy or
Django only when handed one of their objects: the client keeps no dependency on them.

Only the options given are named in the call (``queue => ...``), so the database's
defaults, and after the commit the job type's, apply to the others. The statement is
joined from constant fragments, one per option given; every value is a bound
parameter.

Error handling: arguments this module can judge alone raise before any SQL runs:
TypeError for a ``conn`` of no supported driver (or a sync one given to an async helper,
and back), ValueError for a naive ``run_at`` or a key ``enqueue_many`` does not know.
What the SQL function refuses (``scheduler.enqueue: queue: expected 1 to 64 of ...``)
is raised as the driver raises any database error: ``psycopg.errors.
InvalidParameterValue`` (``ForeignKeyViolation`` for an unknown parent), SQLAlchemy's
``DBAPIError`` subclass wrapping it (``.orig``), Django's ``DataError`` or
``IntegrityError``. PostgreSQL then aborts the transaction: roll it back, or enqueue
in a savepoint (``conn.transaction()``, ``session.begin_nested()``, a nested
``atomic()``) to keep the rest of it.

Cancellation (async): a cancelled ``enqueue_async`` leaves the transaction as the
driver leaves a cancelled statement; roll it back.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Required, TypedDict

import msgspec

__all__ = ["EnqueueJob", "enqueue", "enqueue_async", "enqueue_many", "enqueue_many_async"]

Payload = Mapping[str, Any] | msgspec.Struct | None
"""A job's payload: a dict, or the job type's payload Struct (encoded by msgspec, so its
``rename`` and field settings apply), or None for ``{}``."""


class EnqueueJob(TypedDict, total=False):
    """One job of :func:`enqueue_many`: ``type``, ``payload`` and :func:`enqueue`'s
    keyword options, under the same snake_case names (those of ``Client.submit_batch``);
    None, or a missing key, means "not set". ``depends_on`` takes job ids only."""

    type: Required[str]
    payload: Payload
    run_at: dt.datetime | None
    queue: str | None
    priority: int | None
    max_attempts: int | None
    timeout_seconds: int | None
    idempotency_key: str | None
    concurrency_key: str | None
    depends_on: Sequence[uuid.UUID | str] | None
    unique_key: str | None
    unique_states: Sequence[str] | None
    unique_window: dt.timedelta | None


# The options of scheduler.enqueue in its order: keyword (= SQL parameter name), SQL
# type, the field's name in enqueue_many's JSON.
_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("run_at", "timestamptz", "runAt"),
    ("queue", "text", "queue"),
    ("priority", "integer", "priority"),
    ("max_attempts", "integer", "maxAttempts"),
    ("timeout_seconds", "integer", "timeoutSeconds"),
    ("idempotency_key", "text", "idempotencyKey"),
    ("concurrency_key", "text", "concurrencyKey"),
    ("depends_on", "uuid[]", "dependsOn"),
    ("unique_key", "text", "unique.key"),
    ("unique_states", "text[]", "unique.states"),
    ("unique_window", "interval", "unique.window"),
)
_JSON_NAMES = {"type": "type", "payload": "payload",
               **{name: field for name, _, field in _OPTIONS}}

# Each argument in the two placeholder styles: %s (psycopg, Django) and :name
# (SQLAlchemy's text()). Typed casts, so every driver resolves the same function.
_TYPE_ARG = ("CAST(%s AS text)", "CAST(:type AS text)")
_PAYLOAD_ARG = ("CAST(%s AS jsonb)", "CAST(:payload AS jsonb)")
_OPTION_ARG = {name: (f"{name} => CAST(%s AS {sql_type})",
                      f"{name} => CAST(:{name} AS {sql_type})")
               for name, sql_type, _ in _OPTIONS}
_MANY = ("SELECT scheduler.enqueue_many(CAST(%s AS jsonb))",
         "SELECT scheduler.enqueue_many(CAST(:jobs AS jsonb))")


@dataclass(frozen=True)
class _Call:
    """One call of a function, apart from the driver that performs it: the statement
    in each placeholder style and its values by name."""

    positional: str
    named: str
    values: dict[str, Any]
    many: bool

    def ids(self, value: Any) -> Any:
        if self.many:
            return [_uuid(v) for v in value or ()]
        return _uuid(value)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _run_at(value: dt.datetime, where: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{where}: expected a zone-aware datetime, found "
                        f"{type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError(f"{where}: expected a zone-aware datetime, found a naive one "
                         f"({value.isoformat()}); the database would read it in its own "
                         "time zone")
    return value


def _window(value: dt.timedelta, where: str) -> str:
    """A unique window as the API spells it: whole milliseconds (``90000ms``)."""
    if not isinstance(value, dt.timedelta):
        raise TypeError(f"{where}: expected a datetime.timedelta, found "
                        f"{type(value).__name__}")
    return f"{round(value.total_seconds() * 1000)}ms"


def _payload_json(payload: Payload) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, Mapping) and not isinstance(payload, dict):
        payload = dict(payload)
    return msgspec.json.encode(payload).decode()


def _enqueue_call(job_type: str, payload: Payload, options: Mapping[str, Any]) -> _Call:
    values: dict[str, Any] = {"type": job_type, "payload": _payload_json(payload)}
    positional, named = [_TYPE_ARG[0], _PAYLOAD_ARG[0]], [_TYPE_ARG[1], _PAYLOAD_ARG[1]]
    for name, _, _ in _OPTIONS:
        value = options.get(name)
        if value is None:
            continue
        if name == "run_at":
            value = _run_at(value, "run_at")
        elif name == "depends_on":
            value = [str(parent) for parent in value]
        elif name == "unique_states":
            value = list(value)
        elif name == "unique_window" and not isinstance(value, dt.timedelta):
            raise TypeError("unique_window: expected a datetime.timedelta, found "
                            f"{type(value).__name__}")
        values[name] = value
        positional.append(_OPTION_ARG[name][0])
        named.append(_OPTION_ARG[name][1])
    return _Call(f"SELECT scheduler.enqueue({', '.join(positional)})",
                 f"SELECT scheduler.enqueue({', '.join(named)})", values, many=False)


def _many_call(jobs: Iterable[EnqueueJob]) -> _Call:
    items: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        if not isinstance(job, Mapping):
            raise TypeError(f"jobs[{i}]: expected a mapping with type, payload and "
                            f"enqueue's options, found {type(job).__name__}")
        item: dict[str, Any] = {}
        given: Mapping[str, Any] = job
        for key, value in given.items():
            field = _JSON_NAMES.get(key)
            if field is None:
                raise ValueError(f"jobs[{i}]: unknown key {key!r}; expected "
                                 f"{', '.join(_JSON_NAMES)} (enqueue's keyword names)")
            if value is None:
                continue
            if key == "run_at":
                value = _run_at(value, f"jobs[{i}].run_at")
            elif key == "depends_on":
                value = [str(parent) for parent in value]
            elif key == "payload" and isinstance(value, Mapping):
                value = dict(value)
            elif key == "unique_states":
                value = list(value)
            elif key == "unique_window":
                value = _window(value, f"jobs[{i}].unique_window")
            if field.startswith("unique."):  # the API's "unique" object
                item.setdefault("unique", {})[field.removeprefix("unique.")] = value
            else:
                item[field] = value
        items.append(item)
    body = msgspec.json.encode(items).decode()
    return _Call(_MANY[0], _MANY[1], {"jobs": body}, many=True)


# -- the drivers ---------------------------------------------------------------------------


def _driver(conn: Any) -> str:
    """``psycopg``, ``sqlalchemy`` or ``django``, from the object's module alone."""
    root = type(conn).__module__.partition(".")[0]
    if root in ("psycopg", "sqlalchemy", "django"):
        return root
    raise TypeError("expected a psycopg Connection or Cursor, a SQLAlchemy Session or "
                    "Connection, or a Django connection; found "
                    f"{type(conn).__module__}.{type(conn).__qualname__}")


def _psycopg_connection(conn: Any) -> Any:
    """The connection of a psycopg connection or cursor."""
    import psycopg

    if isinstance(conn, psycopg.Connection | psycopg.AsyncConnection):
        return conn
    return conn.connection


def _is_async(driver: str, conn: Any) -> bool:
    if driver == "psycopg":
        import psycopg

        return isinstance(_psycopg_connection(conn), psycopg.AsyncConnection)
    return type(conn).__module__.startswith("sqlalchemy.ext.asyncio")


def _check_side(conn: Any, *, want_async: bool) -> str:
    driver = _driver(conn)
    if driver == "django" and want_async:
        raise TypeError("Django's connection is synchronous: call enqueue or enqueue_many "
                        "(through sync_to_async in async code)")
    if _is_async(driver, conn) != want_async:
        raise TypeError(f"{type(conn).__qualname__} is "
                        + ("synchronous: use enqueue / enqueue_many" if want_async
                           else "async: use enqueue_async / enqueue_many_async"))
    if driver == "sqlalchemy" and not hasattr(conn, "execute"):
        raise TypeError(f"a SQLAlchemy {type(conn).__qualname__} holds no transaction: "
                        "pass a Session or a Connection (engine.begin())")
    return driver


def _perform(conn: Any, call: _Call) -> Any:
    driver = _check_side(conn, want_async=False)
    if driver == "psycopg":
        import psycopg
        from psycopg.rows import tuple_row

        with psycopg.Cursor(_psycopg_connection(conn), row_factory=tuple_row) as cur:
            cur.execute(call.positional, list(call.values.values()))
            row = cur.fetchone()
        assert row is not None
        return call.ids(row[0])
    if driver == "sqlalchemy":
        from sqlalchemy import text

        return call.ids(conn.execute(text(call.named), call.values).scalar_one())
    with conn.cursor() as cur:  # Django
        cur.execute(call.positional, list(call.values.values()))
        row = cur.fetchone()
    return call.ids(row[0])


async def _perform_async(conn: Any, call: _Call) -> Any:
    driver = _check_side(conn, want_async=True)
    if driver == "psycopg":
        import psycopg
        from psycopg.rows import tuple_row

        async with psycopg.AsyncCursor(_psycopg_connection(conn),
                                       row_factory=tuple_row) as cur:
            await cur.execute(call.positional, list(call.values.values()))
            row = await cur.fetchone()
        assert row is not None
        return call.ids(row[0])
    from sqlalchemy import text

    result = await conn.execute(text(call.named), call.values)
    return call.ids(result.scalar_one())


# -- the helpers ----------------------------------------------------------------------------


def enqueue(conn: Any, job_type: str, payload: Payload = None, *,
            run_at: dt.datetime | None = None, queue: str | None = None,
            priority: int | None = None, max_attempts: int | None = None,
            timeout_seconds: int | None = None, idempotency_key: str | None = None,
            concurrency_key: str | None = None,
            depends_on: Sequence[uuid.UUID | str] | None = None,
            unique_key: str | None = None, unique_states: Sequence[str] | None = None,
            unique_window: dt.timedelta | None = None) -> uuid.UUID:
    """Insert a job of ``job_type`` in ``conn``'s current transaction and return its id.
    Nobody sees it before the commit; a rollback leaves nothing.

    ``payload``: a dict or the type's payload Struct (None: ``{}``); ``run_at``: a
    zone-aware datetime (None: now); ``queue``, ``max_attempts``, ``timeout_seconds``:
    None leaves them to the job type's defaults; ``priority`` -100 to 100;
    ``idempotency_key``: a known key returns that job's id and writes nothing;
    ``concurrency_key``: the job's flow-control key; ``depends_on``: ids of jobs this
    one waits for; ``unique_key`` (with ``unique_states`` and ``unique_window``, a
    ``timedelta``): at most one job of that key among jobs in those states (README,
    "Unique jobs"); a held key returns the holder's id and writes nothing.

    Error handling: see the module's docstring (TypeError/ValueError before any SQL;
    the function's refusals as the driver's exception)."""
    call = _enqueue_call(job_type, payload, {
        "run_at": run_at, "queue": queue, "priority": priority,
        "max_attempts": max_attempts, "timeout_seconds": timeout_seconds,
        "idempotency_key": idempotency_key, "concurrency_key": concurrency_key,
        "depends_on": depends_on, "unique_key": unique_key, "unique_states": unique_states,
        "unique_window": unique_window})
    job_id: uuid.UUID = _perform(conn, call)
    return job_id


async def enqueue_async(conn: Any, job_type: str, payload: Payload = None, *,
                        run_at: dt.datetime | None = None, queue: str | None = None,
                        priority: int | None = None, max_attempts: int | None = None,
                        timeout_seconds: int | None = None,
                        idempotency_key: str | None = None,
                        concurrency_key: str | None = None,
                        depends_on: Sequence[uuid.UUID | str] | None = None,
                        unique_key: str | None = None,
                        unique_states: Sequence[str] | None = None,
                        unique_window: dt.timedelta | None = None) -> uuid.UUID:
    """:func:`enqueue` on a psycopg ``AsyncConnection``/``AsyncCursor`` or a SQLAlchemy
    ``AsyncSession``/``AsyncConnection``."""
    call = _enqueue_call(job_type, payload, {
        "run_at": run_at, "queue": queue, "priority": priority,
        "max_attempts": max_attempts, "timeout_seconds": timeout_seconds,
        "idempotency_key": idempotency_key, "concurrency_key": concurrency_key,
        "depends_on": depends_on, "unique_key": unique_key, "unique_states": unique_states,
        "unique_window": unique_window})
    job_id: uuid.UUID = await _perform_async(conn, call)
    return job_id


def enqueue_many(conn: Any, jobs: Iterable[EnqueueJob]) -> list[uuid.UUID]:
    """Insert many jobs (at most 10,000) in ``conn``'s current transaction, in one call;
    their ids in the order given. Each job is an :class:`EnqueueJob`:
    ``{"type": "email", "payload": {...}, "queue": "mail", "run_at": ...}``, with
    :func:`enqueue`'s keyword names. Jobs with an idempotency key or parents are
    inserted one by one, in order, so a later one may repeat an earlier one's key (and
    gets its id).

    Error handling: as :func:`enqueue`; the function's messages name the job
    (``scheduler.enqueue_many: jobs[3].priority: ...``)."""
    call = _many_call(jobs)
    ids: list[uuid.UUID] = _perform(conn, call)
    return ids


async def enqueue_many_async(conn: Any, jobs: Iterable[EnqueueJob]) -> list[uuid.UUID]:
    """:func:`enqueue_many` on the async connections :func:`enqueue_async` takes."""
    call = _many_call(jobs)
    ids: list[uuid.UUID] = await _perform_async(conn, call)
    return ids
