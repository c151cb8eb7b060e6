"""Python clients for the public API: :class:`Client` (blocking) and :class:`AsyncClient`
(async, under trio or asyncio, as httpx is). The CLI uses :class:`Client`.
:func:`enqueue` and :func:`enqueue_many` (and their ``_async`` forms, module
``enqueue``) add jobs in the application's own database transaction instead, through
its psycopg, SQLAlchemy or Django connection.

    ClientError
     ├─ Unreachable   the coordinator did not answer (connection refused, timeout)
     ├─ ApiFailure    it answered with an error status: ``status``, ``body``, and the
     │                body's ``error`` (code), ``message`` and ``field`` (the culprit input)
     └─ WaitTimeout   ``wait`` gave up before the job finished (also a TimeoutError)

Jobs and schedules come back as the API's JSON objects (camelCase keys, as in the
README); keyword arguments are snake_case and mapped to the camelCase fields.

Flow control: ``submit(..., concurrency_key="tenant-1")`` (also in ``submit_batch``)
puts a job under its queue's per-key limits; ``set_queue_limit`` sets a queue's
concurrency limit, rate windows and per-key limits, each left as it is unless given::

    client.set_queue_limit("emails", 20, rate_limits=["100/1s", "1000/1h:50"],
                           key_concurrency_limit=2, key_rate_limits=["5/1s"])
    client.set_queue_limit("emails", rate_limits=None)   # removes the windows only

Reads (``get``, ``list``, ``iter_jobs``, ``get_schedule``, ``list_schedules``,
``get_queue``, ``list_queues``) take ``consistency="strong"`` to read the primary rather
than a read replica that may lag it: to see a job just submitted, say. ``wait`` reads
strong unless told otherwise (what it waits for is usually a job just submitted).

Both clients share everything but the I/O: each method describes its request as a
:class:`_Call` built by the helpers below, and the class performs it, so the two
differ only in ``await`` (docs/decisions/0006-python-client.md).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Required, TypedDict, Unpack, overload
from urllib.parse import quote

import anyio
import httpx
import msgspec

from scheduler_core.client.sql_enqueue import (
    EnqueueJob,
    enqueue,
    enqueue_async,
    enqueue_many,
    enqueue_many_async,
)
from scheduler_core.schema import wire
from scheduler_core.schema.wire import TERMINAL

__all__ = [
    "TERMINAL",
    "UNSET",
    "ApiFailure",
    "AsyncClient",
    "BatchJob",
    "Client",
    "ClientError",
    "Consistency",
    "EnqueueJob",
    "Job",
    "JobFilter",
    "JobRef",
    "Queue",
    "RateLimitSpec",
    "Schedule",
    "SubmitOptions",
    "Submitted",
    "Unreachable",
    "WaitTimeout",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "is_finished",
    "parse_rate_limit",
]

Job = dict[str, Any]
"""A job as the API answers it (``id``, ``status``, ``result``, ``lastError``, ``runs``...)."""
Schedule = dict[str, Any]
"""A schedule as the API answers it (``id``, ``cron``, ``enabled``, ``nextFireAt``...)."""
JobRef = str | uuid.UUID | Mapping[str, Any]
"""A job (or schedule) id, or the object itself (its ``id`` is used)."""
OnPoll = Callable[[Job], None]
Schedules = list[Schedule]
Queue = dict[str, Any]
"""A queue as the API answers it (``name``, ``paused``, ``concurrencyLimit``,
``rateLimits``, ``keyConcurrencyLimit``, ``keyRateLimits``, ``running``, ``waiting``,
``limits``, ``topKeys``, ``workers``, ``warning``...)."""
Queues = list[Queue]
RateLimitSpec = wire.RateLimit | str | Mapping[str, Any]
"""One rate window: a :class:`~scheduler_core.schema.wire.RateLimit`, its JSON object
(``{"limit": 10, "per": "1s", "burst": 1}``), or text ``limit/per[:burst]`` such as
``"10/1s"`` or ``"1000/1h:50"`` (see :func:`parse_rate_limit`)."""
RateLimits = Sequence[RateLimitSpec] | None
"""A queue's rate windows (at most 8); None or [] removes them all."""
Consistency = Literal["strong", "eventual"]
"""Where a read goes when the coordinator has a read replica
(docs/decisions/0030-read-replica.md): ``"strong"`` reads the primary, so it shows what
this client just wrote; ``"eventual"`` (the server's default, also when None is given)
reads the replica, which may lag the primary. Without a replica both read the primary."""
CONSISTENCIES = ("strong", "eventual")

DEFAULT_TIMEOUT = 10.0
FIRST_POLL = 0.05
ITER_PAGE = 100


# -- errors ------------------------------------------------------------------------------


class ClientError(Exception):
    """Root of the client's errors."""


class Unreachable(ClientError):
    """The coordinator did not answer: connection refused, reset or timed out."""


class ApiFailure(ClientError):
    """The coordinator answered with a 4xx/5xx. ``error``, ``message`` and ``field`` are
    the body's (``field`` names the input at fault, e.g. ``payload.url``), None when the
    body is not the API's JSON error."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        fields = body if isinstance(body, dict) else {}
        self.error: str | None = fields.get("error")
        self.message: str = str(fields.get("message") or body)
        self.field: str | None = fields.get("field")
        super().__init__(f"HTTP {status}: {self.message}"
                         + (f" (field: {self.field})" if self.field else ""))


class WaitTimeout(ClientError, TimeoutError):
    """``wait`` gave up after ``timeout`` seconds; ``job`` is the last state seen (None if
    no poll answered). The job itself goes on: waiting does not cancel it."""

    def __init__(self, job_id: str, timeout: float, job: Job | None) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.job = job
        status = job.get("status") if job else "unknown"
        super().__init__(f"job {job_id} did not finish within {timeout:g} s "
                         f"(last status: {status})")


class Submitted(dict[str, Any]):
    """What ``submit`` returns: the job (or, with ``cron``, the schedule) as JSON, and
    ``created``: False when the idempotency key was known and nothing was created."""

    created: bool

    def __init__(self, body: Mapping[str, Any], created: bool) -> None:
        super().__init__(body)
        self.created = created


class SubmitOptions(TypedDict, total=False):
    """Optional fields of ``submit``; None means "not set" (the server's default)."""

    run_at: dt.datetime | str | None
    """When to run (a zone-aware datetime or ISO-8601 text); the past means now."""
    max_attempts: int | None
    timeout_seconds: int | None
    idempotency_key: str | None
    queue: str | None
    priority: int | None
    cron: str | None
    """Makes it a schedule: 5 fields, 6 with seconds first, or ``@daily`` and the like."""
    timezone: str | None
    misfire_policy: str | None
    overlap_policy: str | None
    concurrency_key: str | None
    """The job's flow-control key (a tenant, a customer; 1 to 200 characters): its
    queue's per-key limits (``key_concurrency_limit``, ``key_rate_limits``) apply to it."""
    depends_on: Sequence[str | int | Mapping[str, Any]] | None
    """Jobs this one waits for (job ids; in a batch also an earlier item's index or
    ``ref``; ``{"job": ..., "onParentFailure": "run"}`` for a policy of its own)."""
    on_parent_failure: str | None
    """When a parent ends DeadLetter or Cancelled: ``cancel`` (the default), ``run`` or
    ``wait``."""
    ref: str | None
    """A batch item's name, for the items after it (``depends_on``)."""
    tags: Sequence[str] | None
    """Labels to search by (``list(tag=...)``): 1 to 20 strings of 1 to 64 characters."""


class JobFilter(TypedDict, total=False):
    """The search filter of ``list``, ``iter_jobs`` and ``bulk`` (docs/search.md);
    None means "any"."""

    status: str | None
    type: str | None
    queue: str | None
    tag: str | Sequence[str] | None
    """The job has every tag given."""
    where: str | Sequence[str] | None
    """Conditions on payload or result fields: ``"payload.customerId=42"``,
    ``["result.status>=500", 'payload.region="eu-1"']``."""
    created_after: dt.datetime | str | None
    """At or after (a zone-aware datetime or ISO-8601 text with a zone)."""
    created_before: dt.datetime | str | None
    """Before."""
    finished_after: dt.datetime | str | None
    finished_before: dt.datetime | str | None
    last_error: str | None
    """The last error contains this text (any case)."""


BULK_ACTIONS = ("retry", "cancel", "delete")


class BatchJob(SubmitOptions, total=False):
    """One job of ``submit_batch``: ``type``, ``payload`` and the options of ``submit``
    (snake_case, None for "not set"; a batch takes no ``cron``)."""

    type: Required[str]
    payload: Mapping[str, Any] | None


# -- rate windows ------------------------------------------------------------------------

_RATE_TEXT = re.compile(r"([0-9]+)/([^:]*)(?::([0-9]+))?")
_RATE_COUNT_MAX = 1_000_000_000


def parse_rate_limit(text: str) -> wire.RateLimit:
    """``limit/per[:burst]`` as a window: at most ``limit`` starts in any ``per`` (a
    whole number and ms, s, m, h or d; 1ms to 1d), ``burst`` of them at once (default
    1). ``"10/1s"``, ``"1000/1h:50"``. ValueError saying what is wrong, checked as the
    API checks it, so a window parsed here is not refused by the coordinator."""
    m = _RATE_TEXT.fullmatch(text)
    if m is None:
        raise ValueError(f"expected LIMIT/PER[:BURST] such as 10/1s or 1000/1h:50, "
                         f"found {text[:80]!r}")
    limit, per, burst = int(m.group(1)), m.group(2), int(m.group(3) or 1)
    if not 1 <= limit <= _RATE_COUNT_MAX:
        raise ValueError(f"the limit must be 1 to {_RATE_COUNT_MAX}, found {limit} "
                         f"(in {text[:80]!r})")
    if not wire.RATE_PER.fullmatch(per):
        raise ValueError("the window must be a whole number and ms, s, m, h or d, "
                         f"such as 500ms, 1s, 1h or 1d; found {per[:80]!r} (in {text[:80]!r})")
    window = wire.RateLimit(limit=limit, per=per, burst=burst)
    if window.per_ms > wire.RATE_PER_MAX_MS:
        raise ValueError(f"the window must be at most 1d, found {per} (in {text[:80]!r})")
    if not 1 <= burst <= limit:
        raise ValueError(f"the burst must be 1 to the limit ({limit}), found {burst} "
                         f"(in {text[:80]!r})")
    return window


def _window_json(window: RateLimitSpec) -> dict[str, Any]:
    if isinstance(window, str):
        window = parse_rate_limit(window)
    if isinstance(window, wire.RateLimit):
        body: dict[str, Any] = msgspec.to_builtins(window)
        return body
    if isinstance(window, Mapping):
        return dict(window)
    raise TypeError("a rate window is a RateLimit, its JSON object or text such as "
                    f"'10/1s'; found {type(window).__name__}")


def _windows_json(windows: RateLimits) -> list[dict[str, Any]] | None:
    if windows is None:
        return None
    if isinstance(windows, (str, Mapping, wire.RateLimit)):
        raise TypeError("rate limits are a list of windows (e.g. ['10/1s']), "
                        f"found one {type(windows).__name__}: put it in a list")
    return [_window_json(w) for w in windows]


# -- the requests, without I/O -----------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    timeout: float | None = None  # this request only; None: the client's
    headers: dict[str, str] | None = None


def _id(ref: JobRef) -> str:
    if isinstance(ref, Mapping):
        ref = ref["id"]
    return str(ref)


def _path(kind: str, ref: JobRef, suffix: str = "") -> str:
    """``/api/<kind>/<id><suffix>``, the id quoted so it cannot reach another route."""
    return f"/api/{kind}/{quote(_id(ref), safe='')}{suffix}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _job_body(type: str, payload: Mapping[str, Any] | None,
              options: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type}
    if payload is not None:
        body["payload"] = dict(payload)
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        body[_camel(name)] = value
    return body


def _submit_call(type: str, payload: Mapping[str, Any] | None,
                 options: SubmitOptions) -> _Call:
    # The key also goes in the Idempotency-Key header, where a load balancer can see it:
    # deploy/haproxy/haproxy.cfg resends a submit cut off mid-way only when it has one.
    key = options.get("idempotency_key")
    return _Call("POST", "/api/jobs", json=_job_body(type, payload, options),
                 headers=None if key is None else {"Idempotency-Key": key})


def _batch_call(jobs: Iterable[BatchJob]) -> _Call:
    bodies = []
    for job in jobs:
        options = {k: v for k, v in job.items() if k not in ("type", "payload")}
        bodies.append(_job_body(job["type"], job.get("payload"), options))
    return _Call("POST", "/api/jobs/batch", json={"jobs": bodies})


def _batch_items(body: dict[str, Any]) -> list[Submitted]:
    return [Submitted(item, bool(item.get("created"))) for item in body["items"]]


def _filter_params(filter: JobFilter) -> dict[str, str | list[str]]:
    """The filter as the API names it (``created_after`` -> ``createdAfter``), its
    datetimes ISO-8601, ``tag`` and ``where`` lists; None left out."""
    out: dict[str, str | list[str]] = {}
    value: object
    for name, value in filter.items():
        if value is None:
            continue
        if isinstance(value, Sequence) and not isinstance(value, str):
            out[name] = [str(v) for v in value]  # tag, where
        elif name in ("tag", "where"):
            out[name] = [str(value)]
        elif isinstance(value, dt.datetime):
            out[_camel(name)] = value.isoformat()
        else:
            out[_camel(name)] = str(value)
    return out


def _read(consistency: Consistency | None, **params: Any) -> dict[str, Any]:
    """The query of a read: ``params`` (None left out) and ``consistency`` when given; a
    ValueError for a consistency other than strong or eventual, before any request."""
    if consistency is not None and consistency not in CONSISTENCIES:
        raise ValueError(f"expected consistency strong or eventual, found {consistency!r}")
    return {k: v for k, v in {**params, "consistency": consistency}.items() if v is not None}


def _read_call(path: str, consistency: Consistency | None, **params: Any) -> _Call:
    return _Call("GET", path, params=_read(consistency, **params))


def _list_call(filter: JobFilter, take: int | None, cursor: str | None,
               consistency: Consistency | None) -> _Call:
    params: dict[str, Any] = _filter_params(filter)
    params.update(_read(consistency, take=take, cursor=cursor))
    return _Call("GET", "/api/jobs", params=params)


def _bulk_call(action: str, filter: JobFilter, ids: Iterable[JobRef] | None, dry_run: bool,
               limit: int | None, after: str | None, reason: str | None) -> _Call:
    """``POST /api/jobs/bulk``; a misspelt action is a ValueError before any request."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"expected an action among {', '.join(BULK_ACTIONS)}, "
                         f"found {action!r}")
    body: dict[str, Any] = {"action": action, "filter": _filter_params(filter)}
    if ids is not None:
        body["ids"] = [_id(ref) for ref in ids]
    if dry_run:
        body["dryRun"] = True
    for name, value in (("limit", limit), ("after", after), ("reason", reason)):
        if value is not None:
            body[name] = value
    return _Call("POST", "/api/jobs/bulk", json=body)


Unset = msgspec.UnsetType
UNSET = msgspec.UNSET  # an argument not given: the setting stays as it is


def _limit_call(name: str, limit: int | Unset | None, rate_limits: RateLimits | Unset,
                key_concurrency_limit: int | Unset | None,
                key_rate_limits: RateLimits | Unset) -> _Call:
    """``PATCH /api/queues/{name}`` with the settings given, and only those."""
    body: dict[str, Any] = {}
    if not isinstance(limit, Unset):
        body["concurrencyLimit"] = limit
    if not isinstance(rate_limits, Unset):
        body["rateLimits"] = _windows_json(rate_limits)
    if not isinstance(key_concurrency_limit, Unset):
        body["keyConcurrencyLimit"] = key_concurrency_limit
    if not isinstance(key_rate_limits, Unset):
        body["keyRateLimits"] = _windows_json(key_rate_limits)
    return _Call("PATCH", _path("queues", name), json=body)


def _decode(resp: httpx.Response) -> Any:
    """The body of a successful answer; :class:`ApiFailure` for an error status."""
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if resp.status_code >= 400:
        raise ApiFailure(resp.status_code, body)
    return body


def _object(call: _Call, body: Any) -> dict[str, Any]:
    """Every answer of the API is a JSON object; anything else (a proxy's page) is not
    the coordinator speaking."""
    if not isinstance(body, dict):
        raise ClientError(f"{call.method} {call.path}: expected a JSON object, "
                          f"found {str(body)[:200]!r}")
    return body


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _poll_delays(poll_interval: float) -> Iterator[float]:
    """Between polls: 50 ms, doubling up to ``poll_interval`` (a short job is seen done
    quickly, a long one costs one request per interval)."""
    delay = min(FIRST_POLL, poll_interval)
    while True:
        yield delay
        delay = min(delay * 2, poll_interval)


def is_finished(job: Mapping[str, Any]) -> bool:
    """Whether the job is in a terminal status: Succeeded, DeadLetter or Cancelled."""
    return job.get("status") in TERMINAL


# -- the blocking client -----------------------------------------------------------------


class Client:
    """A blocking client. Use it as a context manager, or call :meth:`close`.

    Error handling: every method raises :class:`Unreachable` when the coordinator does
    not answer and :class:`ApiFailure` for an error status (404 for an unknown id,
    409 for a conflict, 400 naming the field of a bad input).
    """

    def __init__(self, base_url: str, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``token``: sent as ``Authorization: Bearer <token>``; ``timeout``: seconds per
        request; ``transport``: httpx's (tests, proxies)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  headers=_headers(token), transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: _Call) -> httpx.Response:
        try:
            return self._http.request(
                call.method, call.path, params=call.params, json=call.json,
                headers=call.headers, timeout=call.timeout if call.timeout is not None else self.timeout)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the coordinator at {self.base_url}: {exc}") from exc

    def _call(self, call: _Call) -> dict[str, Any]:
        return _object(call, _decode(self._send(call)))

    # jobs

    @overload
    def submit(self, type: str, payload: Mapping[str, Any] | None = None,
               **options: Unpack[SubmitOptions]) -> Submitted: ...

    @overload
    def submit(self, type: Mapping[str, Any], /) -> tuple[int, dict[str, Any]]: ...

    def submit(self, type: str | Mapping[str, Any], payload: Mapping[str, Any] | None = None,
               **options: Unpack[SubmitOptions]) -> Submitted | tuple[int, dict[str, Any]]:
        """Submit a job of ``type`` (with ``cron``: define a schedule).

        The older form ``submit(body)`` sends a whole request body as it is and returns
        ``(HTTP status, answer)``.
        """
        if isinstance(type, Mapping):
            resp = self._send(_Call("POST", "/api/jobs", json=dict(type)))
            return resp.status_code, _decode(resp)
        resp = self._send(_submit_call(type, payload, options))
        return Submitted(_decode(resp), resp.status_code == 201)

    def submit_batch(self, jobs: Iterable[BatchJob]) -> list[Submitted]:
        """Submit up to 1000 jobs at once, all or none, each a :class:`BatchJob`
        (``{"type": "noop", "payload": {...}, "concurrency_key": "t1"}``); the jobs in
        the order given, each with ``created`` (False: its idempotency key was known)."""
        return _batch_items(self._call(_batch_call(jobs)))

    def get(self, job: JobRef, *, consistency: Consistency | None = None) -> Job:
        """The job with its runs (``consistency``: :data:`Consistency`)."""
        return self._call(_read_call(_path("jobs", job), consistency))

    def list(self, *, take: int | None = None, cursor: str | None = None,
             consistency: Consistency | None = None,
             **filter: Unpack[JobFilter]) -> dict[str, Any]:
        """One page of the jobs ``filter`` matches (:class:`JobFilter`), newest first:
        ``{"items": [...], "nextCursor": ...}``. ``consistency="strong"``: read the
        primary, not a read replica that may not have a job just submitted yet."""
        return self._call(_list_call(filter, take, cursor, consistency))

    def iter_jobs(self, *, take: int = ITER_PAGE, consistency: Consistency | None = None,
                  **filter: Unpack[JobFilter]) -> Iterator[Job]:
        """Every matching job, newest first, fetching ``take`` per request."""
        cursor: str | None = None
        while True:
            page = self.list(take=take, cursor=cursor, consistency=consistency, **filter)
            yield from page["items"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def bulk(self, action: str, *, ids: Iterable[JobRef] | None = None,
             dry_run: bool = False, limit: int | None = None, after: str | None = None,
             reason: str | None = None, **filter: Unpack[JobFilter]) -> dict[str, Any]:
        """Retry, cancel or delete (``action``) the jobs ``filter`` matches, among
        ``ids`` when given: one request, at most ``limit`` jobs (the server's
        SCHEDULER_BULK_MAX by default). The answer: ``matched``, ``count`` (changed; with
        ``dry_run`` what the real call would change), ``skipped`` by reason, and
        ``next``: when not None, more may match; pass it as ``after`` to go on."""
        return self._call(_bulk_call(action, filter, ids, dry_run, limit, after, reason))

    def cancel(self, job: JobRef) -> Job:
        """Cancel a waiting job, or ask a running one's worker to kill it (409 if finished)."""
        return self._call(_Call("POST", _path("jobs", job, "/cancel")))

    def retry(self, job: JobRef, reason: str | None = None) -> Job:
        """Run a DeadLetter, Cancelled or Failed job again now (409 otherwise)."""
        return self._call(
            _Call("POST", _path("jobs", job, "/retry"), json={"reason": reason}))

    def wait(self, job: JobRef, *, timeout: float | None = None, poll_interval: float = 0.5,
             on_poll: OnPoll | None = None, consistency: Consistency | None = "strong") -> Job:
        """Poll the job until it is Succeeded, DeadLetter or Cancelled, and return it.

        ``timeout`` (seconds; None: no limit) bounds the whole wait, requests included;
        ``on_poll`` sees every state polled (for progress displays). ``consistency``:
        strong by default, since a read replica may not have a job just submitted yet
        (a 404) nor its end.

        Error handling: :class:`WaitTimeout` past the timeout (the job goes on); an
        error of any poll (:class:`Unreachable`, :class:`ApiFailure`) is raised as is.
        """
        job_id = _id(job)
        params = _read(consistency)
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Job | None = None
        for delay in _poll_delays(poll_interval):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(job_id, timeout or 0.0, last)
            call = _Call("GET", _path("jobs", job_id), params=params,
                         timeout=None if left is None else min(left, self.timeout))
            try:
                last = self._call(call)
            except Unreachable as exc:
                if deadline is not None and isinstance(exc.__cause__, httpx.TimeoutException) \
                        and time.monotonic() >= deadline:
                    raise WaitTimeout(job_id, timeout or 0.0, last) from None
                raise
            assert last is not None
            if on_poll is not None:
                on_poll(last)
            if is_finished(last):
                return last
            if deadline is not None:
                delay = min(delay, max(deadline - time.monotonic(), 0.0))
            time.sleep(delay)
        raise AssertionError("unreachable")  # _poll_delays never ends

    # schedules

    def list_schedules(self, *, take: int | None = None,
                       consistency: Consistency | None = None) -> Schedules:
        """The schedules, newest first (deleted ones excluded)."""
        call = _read_call("/api/schedules", consistency, take=take)
        items: Schedules = self._call(call)["items"]
        return items

    def get_schedule(self, schedule: JobRef, *,
                     consistency: Consistency | None = None) -> Schedule:
        """The schedule with ``recentFires``, its newest jobs."""
        return self._call(_read_call(_path("schedules", schedule), consistency))

    def pause_schedule(self, schedule: JobRef) -> Schedule:
        """Stop new fires (idempotent)."""
        return self._call(_Call("POST", _path("schedules", schedule, "/pause")))

    def resume_schedule(self, schedule: JobRef) -> Schedule:
        """Fire again; fires missed meanwhile follow the schedule's misfire policy."""
        return self._call(_Call("POST", _path("schedules", schedule, "/resume")))

    def delete_schedule(self, schedule: JobRef) -> Schedule:
        """Soft delete: no more fires, its past jobs stay."""
        return self._call(_Call("DELETE", _path("schedules", schedule)))

    # queues

    def list_queues(self, *, consistency: Consistency | None = None) -> Queues:
        """Queues with settings, waiting jobs or running jobs, by name."""
        items: Queues = self._call(_read_call("/api/queues", consistency))["items"]
        return items

    def get_queue(self, name: str, *, consistency: Consistency | None = None) -> Queue:
        """A queue's settings and load (``paused``, ``concurrencyLimit``, ``running``...)."""
        return self._call(_read_call(_path("queues", name), consistency))

    def pause_queue(self, name: str) -> Queue:
        """No new claims from the queue; its running jobs finish (idempotent)."""
        return self._call(_Call("POST", _path("queues", name, "/pause")))

    def resume_queue(self, name: str) -> Queue:
        """Claims from the queue again (idempotent)."""
        return self._call(_Call("POST", _path("queues", name, "/resume")))

    def set_queue_limit(self, name: str, limit: int | Unset | None = UNSET, *,
                        rate_limits: RateLimits | Unset = UNSET,
                        key_concurrency_limit: int | Unset | None = UNSET,
                        key_rate_limits: RateLimits | Unset = UNSET) -> Queue:
        """A queue's limits, cluster-wide; each argument not given stays as it is, and
        None removes that limit:

        - ``limit``: at most that many of the queue's jobs Running at once;
        - ``rate_limits``: at most ``limit`` starts in any ``per``, for each window (up
          to 8; a new list replaces the old one and its windows start full; [] or None
          removes them): :class:`~scheduler_core.schema.wire.RateLimit` objects or text
          such as ``"10/1s"``, ``"1000/1h:50"`` (``limit/per[:burst]``);
        - ``key_concurrency_limit``, ``key_rate_limits``: the same, for the jobs of each
          concurrency key (``submit(concurrency_key=...)``) apart.

        Returns the queue as it is now. ValueError for a window's text that is not
        valid (before any request); :class:`ApiFailure` (400 naming the field) for any
        other value the API refuses."""
        return self._call(_limit_call(name, limit, rate_limits, key_concurrency_limit,
                                      key_rate_limits))

    def health(self) -> tuple[int, Any]:
        """``GET /health``: (status, body); 503 is an answer here, not an error."""
        resp = self._send(_Call("GET", "/health"))
        return resp.status_code, resp.json()


# -- the async client --------------------------------------------------------------------


class AsyncClient:
    """The same API as :class:`Client`, awaited; runs under trio or asyncio. Use it as an
    async context manager, or call :meth:`aclose`.

    Cancellation: any call can be cancelled (a cancelled ``wait`` leaves the job running).
    Error handling: as :class:`Client`.
    """

    def __init__(self, base_url: str, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """As :class:`Client`'s."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                       headers=_headers(token), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: _Call) -> httpx.Response:
        try:
            return await self._http.request(
                call.method, call.path, params=call.params, json=call.json,
                headers=call.headers, timeout=call.timeout if call.timeout is not None else self.timeout)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the coordinator at {self.base_url}: {exc}") from exc

    async def _call(self, call: _Call) -> dict[str, Any]:
        return _object(call, _decode(await self._send(call)))

    # jobs

    async def submit(self, type: str, payload: Mapping[str, Any] | None = None,
                     **options: Unpack[SubmitOptions]) -> Submitted:
        """Submit a job of ``type`` (with ``cron``: define a schedule)."""
        resp = await self._send(_submit_call(type, payload, options))
        return Submitted(_decode(resp), resp.status_code == 201)

    async def submit_batch(self, jobs: Iterable[BatchJob]) -> list[Submitted]:
        """As :meth:`Client.submit_batch`."""
        return _batch_items(await self._call(_batch_call(jobs)))

    async def get(self, job: JobRef, *, consistency: Consistency | None = None) -> Job:
        """As :meth:`Client.get`."""
        return await self._call(_read_call(_path("jobs", job), consistency))

    async def list(self, *, take: int | None = None, cursor: str | None = None,
                   consistency: Consistency | None = None,
                   **filter: Unpack[JobFilter]) -> dict[str, Any]:
        """As :meth:`Client.list`."""
        return await self._call(_list_call(filter, take, cursor, consistency))

    async def iter_jobs(self, *, take: int = ITER_PAGE, consistency: Consistency | None = None,
                        **filter: Unpack[JobFilter]) -> AsyncIterator[Job]:
        """Every matching job, newest first, fetching ``take`` per request
        (``async for job in client.iter_jobs(...)``)."""
        cursor: str | None = None
        while True:
            page = await self.list(take=take, cursor=cursor, consistency=consistency,
                                   **filter)
            for job in page["items"]:
                yield job
            cursor = page.get("nextCursor")
            if not cursor:
                return

    async def bulk(self, action: str, *, ids: Iterable[JobRef] | None = None,
                   dry_run: bool = False, limit: int | None = None, after: str | None = None,
                   reason: str | None = None, **filter: Unpack[JobFilter]) -> dict[str, Any]:
        """As :meth:`Client.bulk`."""
        return await self._call(_bulk_call(action, filter, ids, dry_run, limit, after, reason))

    async def cancel(self, job: JobRef) -> Job:
        """Cancel a waiting job, or ask a running one's worker to kill it (409 if finished)."""
        return await self._call(_Call("POST", _path("jobs", job, "/cancel")))

    async def retry(self, job: JobRef, reason: str | None = None) -> Job:
        """Run a DeadLetter, Cancelled or Failed job again now (409 otherwise)."""
        return await self._call(
            _Call("POST", _path("jobs", job, "/retry"), json={"reason": reason}))

    # A timeout parameter rather than the caller's cancel scope: the same call as
    # Client.wait, and a WaitTimeout that carries the last state seen.
    async def wait(self, job: JobRef, *, timeout: float | None = None,  # noqa: ASYNC109
                   poll_interval: float = 0.5, on_poll: OnPoll | None = None,
                   consistency: Consistency | None = "strong") -> Job:
        """Poll the job until it is Succeeded, DeadLetter or Cancelled, and return it.

        ``timeout`` (seconds; None: no limit) bounds the whole wait, requests included,
        on the event loop's clock; ``on_poll`` sees every state polled; ``consistency``
        as :meth:`Client.wait`'s (strong by default).

        Error handling: :class:`WaitTimeout` past the timeout (the job goes on); an
        error of any poll (:class:`Unreachable`, :class:`ApiFailure`) is raised as is.
        """
        job_id = _id(job)
        call = _read_call(_path("jobs", job_id), consistency)
        last: Job | None = None
        with anyio.move_on_after(timeout):
            for delay in _poll_delays(poll_interval):
                last = await self._call(call)
                assert last is not None
                if on_poll is not None:
                    on_poll(last)
                if is_finished(last):
                    return last
                await anyio.sleep(delay)
        raise WaitTimeout(job_id, timeout or 0.0, last)

    # schedules

    async def list_schedules(self, *, take: int | None = None,
                             consistency: Consistency | None = None) -> Schedules:
        """The schedules, newest first (deleted ones excluded)."""
        body = await self._call(_read_call("/api/schedules", consistency, take=take))
        items: Schedules = body["items"]
        return items

    async def get_schedule(self, schedule: JobRef, *,
                           consistency: Consistency | None = None) -> Schedule:
        """The schedule with ``recentFires``, its newest jobs."""
        return await self._call(_read_call(_path("schedules", schedule), consistency))

    async def pause_schedule(self, schedule: JobRef) -> Schedule:
        """Stop new fires (idempotent)."""
        return await self._call(
            _Call("POST", _path("schedules", schedule, "/pause")))

    async def resume_schedule(self, schedule: JobRef) -> Schedule:
        """Fire again; fires missed meanwhile follow the schedule's misfire policy."""
        return await self._call(
            _Call("POST", _path("schedules", schedule, "/resume")))

    async def delete_schedule(self, schedule: JobRef) -> Schedule:
        """Soft delete: no more fires, its past jobs stay."""
        return await self._call(_Call("DELETE", _path("schedules", schedule)))

    # queues

    async def list_queues(self, *, consistency: Consistency | None = None) -> Queues:
        """Queues with settings, waiting jobs or running jobs, by name."""
        items: Queues = (await self._call(_read_call("/api/queues", consistency)))["items"]
        return items

    async def get_queue(self, name: str, *, consistency: Consistency | None = None) -> Queue:
        """A queue's settings and load (``paused``, ``concurrencyLimit``, ``running``...)."""
        return await self._call(_read_call(_path("queues", name), consistency))

    async def pause_queue(self, name: str) -> Queue:
        """No new claims from the queue; its running jobs finish (idempotent)."""
        return await self._call(_Call("POST", _path("queues", name, "/pause")))

    async def resume_queue(self, name: str) -> Queue:
        """Claims from the queue again (idempotent)."""
        return await self._call(_Call("POST", _path("queues", name, "/resume")))

    async def set_queue_limit(self, name: str, limit: int | Unset | None = UNSET, *,
                              rate_limits: RateLimits | Unset = UNSET,
                              key_concurrency_limit: int | Unset | None = UNSET,
                              key_rate_limits: RateLimits | Unset = UNSET) -> Queue:
        """As :meth:`Client.set_queue_limit`."""
        return await self._call(_limit_call(name, limit, rate_limits,
                                            key_concurrency_limit, key_rate_limits))

    async def health(self) -> tuple[int, Any]:
        """``GET /health``: (status, body); 503 is an answer here, not an error."""
        resp = await self._send(_Call("GET", "/health"))
        return resp.status_code, resp.json()
