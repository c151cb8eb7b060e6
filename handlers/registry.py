"""The handler registry: job types by their stable name, each with a payload Struct.

A handler is a plain function ``fn(payload, ctx)`` declared with
:meth:`Registry.handler`. Payloads are validated with :meth:`Registry.validate` at
submission and again by :meth:`Registry.run` in the child process that runs the job.
This package knows nothing of trio or of the runtime; an ``async def`` handler is run
with ``trio.run`` imported lazily, inside the child.

Errors::

    HandlerError               a run failed; the job may be retried
     ├─ PayloadError           the payload does not fit the handler's Struct (``field``)
     ├─ PermanentError         a failure that retrying cannot fix: straight to DeadLetter
     ├─ RateLimited            the remote said slow down (``retry_after`` seconds): the
     │                         job waits again without spending its attempt
     ├─ Snooze                 run again in ``seconds`` without spending an attempt
     │                         (raised or returned; counted in ``snoozes``, capped)
     ├─ UnknownHandler         no handler is registered under that name
     └─ PluginError            a plug-in module or entry point would not load
                               (handlers.plugins)

``HandlerError.permanent`` says whether a failure may be retried: true for
PermanentError, PayloadError and UnknownHandler, false for HandlerError itself (and
RateLimited and Snooze, which are not failures at all). Any other exception out of a handler is a
bug in it and counts as retryable.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Protocol, TypeVar, cast

import msgspec

__all__ = [
    "REGISTRY",
    "HandlerError",
    "HandlerSpec",
    "PayloadError",
    "PermanentError",
    "RateLimited",
    "Registry",
    "RunContext",
    "RunReporter",
    "Snooze",
    "UnknownHandler",
]

F = TypeVar("F", bound=Callable[..., object])


class HandlerError(Exception):
    """Root of every error raised by ``handlers``; a run that may be retried."""

    permanent: ClassVar[bool] = False


class PayloadError(HandlerError):
    """The payload does not fit the handler's Struct.

    ``field`` is the path of the offending value as the API spells it
    (``payload.durationSeconds``); the message says what was expected and what was found.
    """

    permanent = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class PermanentError(HandlerError):
    """A run-time failure that retrying cannot fix; the job goes straight to DeadLetter."""

    permanent = True


MAX_RETRY_AFTER_SECONDS = 86400.0
"""The longest a handler may ask its bucket to be held (a day), as the wire allows."""


def _clamp_seconds(seconds: float, most: float) -> float:
    """``seconds`` within ``[0, most]``; NaN and negatives are 0."""
    seconds = float(seconds)
    if math.isnan(seconds) or seconds <= 0:
        return 0.0
    return min(seconds, most)


def clamp_retry_after(seconds: float) -> float:
    """``seconds`` within ``[0, MAX_RETRY_AFTER_SECONDS]``; NaN and negatives are 0."""
    return _clamp_seconds(seconds, MAX_RETRY_AFTER_SECONDS)


class RateLimited(HandlerError):
    """The remote said slow down: try this job again in ``retry_after`` seconds.

    Not a failure: the job goes back to waiting without spending its attempt, and its
    bucket (its concurrency key's, else its queue's) is held for ``retry_after``
    seconds, so no job of that key (or queue) starts meanwhile. ``retry_after`` is
    clamped to ``[0, 86400]`` (NaN and negatives count as 0); ``message`` (the
    remote's words, say) goes into the run's error text. :meth:`RunContext.backoff`
    raises it.
    """

    permanent = False

    def __init__(self, retry_after: float, message: str = "") -> None:
        self.retry_after = clamp_retry_after(retry_after)
        self.reason = message
        super().__init__(f"retry after {seconds_text(self.retry_after)}s"
                         + (f": {message}" if message else ""))


def seconds_text(seconds: float) -> str:
    """A number of seconds as a message shows it: ``30``, ``0.25`` (to the ms)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


MAX_SNOOZE_SECONDS = 30 * 86400.0
"""The longest a job may snooze at once (30 days), as the wire allows."""


def clamp_snooze(seconds: float) -> float:
    """``seconds`` within ``[0, MAX_SNOOZE_SECONDS]``; NaN and negatives are 0."""
    return _clamp_seconds(seconds, MAX_SNOOZE_SECONDS)


class Snooze(HandlerError):
    """Run this job again in ``seconds``, without spending an attempt.

    A handler returns it or raises it. Not a failure: the job goes back to Scheduled
    with its run time ``seconds`` from now (clamped to ``[0, 30 days]``, NaN and
    negatives count as 0), its attempts as they were and its ``snoozes`` one more; the
    run ends ``Snoozed``. Past the coordinator's cap (SCHEDULER_MAX_SNOOZES) the job
    fails for good instead, the error naming the cap.
    """

    permanent = False

    def __init__(self, seconds: float) -> None:
        self.seconds = clamp_snooze(seconds)
        super().__init__(f"snoozed for {seconds_text(self.seconds)}s")


class UnknownHandler(HandlerError):
    """No handler is registered under the requested name."""

    permanent = True


MAX_PROGRESS_MESSAGE = 1000
"""A progress message longer than this is cut to it."""


class RunReporter(Protocol):
    """Where a run's progress and meta go: the job process's pipe to its worker, or,
    inline, the worker's own record of the run. Neither call blocks on I/O."""

    def progress(self, fraction: float, message: str | None) -> None: ...

    def meta(self, meta: dict[str, Any]) -> None:
        """Raises ValueError when ``meta`` may not be stored (not JSON-able, too
        large, nested too deep)."""


@dataclass(frozen=True)
class RunContext:
    """What a handler knows about the run it serves.

    ``data_dir`` is the worker's data folder, the only place ``file_write`` may write.
    ``parent_results``: the results of the jobs this one depended on (``dependsOn``),
    by step name in a workflow, else by parent job id, those that returned one, 64 KB
    of them at most; ``parent_ids`` and ``parent_counts`` (by status) name them all.
    """

    job_id: str
    attempt: int
    data_dir: str
    parent_results: Mapping[str, Any] = field(default_factory=dict)
    # The parents' ids, and how many ended in each status: a batch callback's members.
    parent_ids: Sequence[str] = ()
    parent_counts: Mapping[str, int] = field(default_factory=dict)
    # Where progress and meta go; None (a handler called outside a worker): nowhere.
    reporter: RunReporter | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Say how far the run is: ``fraction`` of the work done (0 to 1, clamped),
        with an optional ``message`` ("step 2 of 5", cut to 1000 characters).

        Cheap and non-blocking: the newest value is kept and sent with the worker's
        next heartbeat (or the run's completion), so calling it in a tight loop costs
        no request. A message is replaced with each call (None clears it). Raises
        ValueError for a fraction that is not a number (NaN).
        """
        value = float(fraction)
        if math.isnan(value):
            raise ValueError("progress: expected a number from 0 to 1, found NaN")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message: expected a string, found "
                            f"{type(message).__name__}")
        if self.reporter is not None:
            if message is not None:  # PostgreSQL's text refuses NUL
                message = message.replace("\x00", "")[:MAX_PROGRESS_MESSAGE]
            self.reporter.progress(min(max(value, 0.0), 1.0), message)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        """Set the job's meta, a JSON object shown with the job (``meta`` in its GET):
        it replaces the meta set before. Sent like :meth:`progress`. Raises TypeError
        for a non-mapping, ValueError for one that is not JSON-able, larger than
        16 KiB as JSON or nested deeper than 16 levels.
        """
        if not isinstance(meta, Mapping):
            raise TypeError(f"meta: expected a mapping, found {type(meta).__name__}")
        if self.reporter is not None:
            self.reporter.meta(dict(meta))

    def backoff(self, seconds: float, message: str = "") -> NoReturn:
        """The remote said slow down: stop this run and try the job again later.

        Raises :class:`RateLimited` (``seconds`` clamped to ``[0, 86400]``): the job
        goes back to waiting without spending its attempt, and its bucket (its
        concurrency key's, else its queue's) is held for ``seconds``, so no job of that
        key (or queue) starts meanwhile. ``message`` goes into the run's error text.
        """
        raise RateLimited(seconds, message)


# What a job gets for a setting neither its submission nor its type's spec sets: the
# API and the validator of SQL-enqueued jobs apply them alike (and migration 0016's
# scheduler.enqueue writes them until the validator fills the type's own).
DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class HandlerSpec:
    """One registered job type: its payload Struct, its function and optional defaults.

    ``timeout_seconds``, ``max_attempts`` and ``queue`` are the defaults a submission
    gets when it does not set them; ``None`` means the system-wide default. ``inline``:
    run by the worker in its own process (see :meth:`Registry.handler`).
    """

    name: str
    payload_type: type[msgspec.Struct]
    fn: Callable[[Any, RunContext], object]
    timeout_seconds: int | None = None
    max_attempts: int | None = None
    queue: str | None = None
    inline: bool = False
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))


class Registry:
    """Handlers by name. ``REGISTRY`` (in ``handlers``) is the one the system uses."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def handler(
        self,
        name: str,
        *,
        payload: type[msgspec.Struct],
        timeout_seconds: int | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
        inline: bool = False,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of job type ``name``.

        The name is a stable API: submitted jobs carry it. Registering a name twice is
        a programming error (``ValueError``).

        ``inline=True`` (``async def`` handlers only, else ``TypeError``): the worker
        runs the handler in its own process and event loop instead of a child
        process, which saves the process round trip (for jobs that take microseconds,
        most of their cost). There is no isolation (a crash or a leak is the
        worker's) and no hard kill: the timeout, a cancel request and a drain
        cancel the handler at its next ``await``; one that blocks without awaiting
        runs on, holding the worker. Sleep and do I/O through anyio (or trio), never
        with blocking calls.
        """
        if not (isinstance(payload, type) and issubclass(payload, msgspec.Struct)):
            raise TypeError(f"payload: expected a msgspec.Struct subclass, found {payload!r}")
        if name in self._specs:
            raise ValueError(f"handler {name!r} is already registered")

        def register(fn: F) -> F:
            if name in self._specs:
                raise ValueError(f"handler {name!r} is already registered")
            if inline and not inspect.iscoroutinefunction(fn):
                raise TypeError(f"handler {name!r}: inline=True expects an async function, "
                                f"found {fn!r}")
            self._specs[name] = HandlerSpec(
                name=name,
                payload_type=payload,
                fn=fn,
                timeout_seconds=timeout_seconds,
                max_attempts=max_attempts,
                queue=queue,
                inline=inline,
            )
            return fn

        return register

    def get(self, name: str) -> HandlerSpec:
        """Return the spec of ``name``; raise UnknownHandler listing the known names."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownHandler(
                f"expected a registered job type ({known}), found {name!r}"
            ) from None

    def names(self) -> list[str]:
        """The registered job types, sorted."""
        return sorted(self._specs)

    def validate(self, name: str, payload: object) -> msgspec.Struct:
        """Convert a decoded JSON payload into the handler's Struct.

        A missing payload (``None``) is validated as ``{}``. Raises UnknownHandler, or
        PayloadError naming the field, e.g.
        ``payload.durationSeconds: expected a number, found str``.
        """
        spec = self.get(name)
        if payload is None:
            payload = {}
        try:
            return msgspec.convert(payload, type=spec.payload_type)
        except msgspec.ValidationError as exc:
            raise _payload_error(str(exc), payload, spec.payload_type) from None

    def run(self, name: str, payload: object, ctx: RunContext) -> object:
        """Validate ``payload`` and run the handler; return its JSON-able result.

        Runs in the calling thread. An ``async def`` handler gets its own ``trio.run``.
        """
        spec = self.get(name)
        value = self.validate(name, payload)
        if spec.is_async:
            import trio  # lazily: only async handlers need it, and only in the child

            async_fn = cast(Callable[[], Awaitable[object]], functools.partial(spec.fn, value, ctx))
            return trio.run(async_fn)
        return spec.fn(value, ctx)


REGISTRY = Registry()
"""The default registry; ``handlers.builtin`` registers the built-ins on it."""


# msgspec's ValidationError messages, turned into "field: expected X, found Y".
_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TYPE_MISMATCH = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<found>[^`]+)`$")
_CONSTRAINT = re.compile(r"^Expected `(?P<expected>[^`]+)` (?P<constraint>.+)$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_NOUNS = {
    "float": "a number",
    "int": "an integer",
    "str": "a string",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
}


def _payload_error(raw: str, payload: object, payload_type: type[msgspec.Struct]) -> PayloadError:
    match = _AT.match(raw)
    assert match is not None  # the pattern matches any string
    message, path = match["message"], match["path"] or ""
    field = "payload" + path
    if m := _TYPE_MISMATCH.match(message):
        return PayloadError(field, f"expected {_noun(m['expected'])}, found {m['found']}")
    if m := _CONSTRAINT.match(message):
        constraint = m["constraint"]
        found = _describe(_lookup(payload, path), by_length="length" in constraint)
        return PayloadError(field, f"expected {_noun(m['expected'])} {constraint}, found {found}")
    if m := _MISSING.match(message):
        return PayloadError(f"{field}.{m['name']}", "expected a value, found the field missing")
    if m := _UNKNOWN.match(message):
        if path:
            expected = "no other fields"
        elif allowed := ", ".join(payload_type.__struct_encode_fields__):
            expected = f"only the fields {allowed}"
        else:
            expected = "no fields"
        return PayloadError(f"{field}.{m['name']}", f"expected {expected}, found an unknown field")
    return PayloadError(field, message[:1].lower() + message[1:])


def _noun(type_name: str) -> str:
    return _NOUNS.get(type_name, f"`{type_name}`")


def _lookup(value: object, path: str) -> object:
    for name, index in _SEGMENT.findall(path):
        if name and isinstance(value, dict):
            value = value.get(name)
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def _describe(value: object, *, by_length: bool) -> str:
    if by_length and isinstance(value, str | list | dict):
        return f"length {len(value)}"
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
