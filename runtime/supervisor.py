"""Erlang/OTP-style supervisors on trio nurseries.

A :class:`Supervisor` starts its children (actors, or other supervisors) in order, each
with ``nursery.start`` so the next one starts only once the previous one is ready;
restarts them by their :data:`Restart` kind and its :data:`Strategy`, with exponential
backoff; stops them in reverse order; and, past its restart intensity, stops everything
and raises :class:`SupervisorGaveUp` to its parent. docs/supervision.md is the guide.

The decisions are pure functions of explicit inputs (:func:`restart_allowed`, and
:func:`runtime.backoff.delay` for the wait before a restart); every interval reads
trio's clock.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import structlog
import trio
from prometheus_client import Counter

from scheduler_core.runtime import backoff
from scheduler_core.runtime.errors import RuntimeCoreError

__all__ = [
    "ACTOR_RESTARTS",
    "ChildSpec",
    "ChildState",
    "ChildStatistics",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "SupervisorStatistics",
    "restart_allowed",
]

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
ChildState = Literal[
    "idle", "starting", "running", "restarting", "stopping", "stopped", "exited", "crashed"
]

_log = structlog.get_logger("supervisor")

ACTOR_RESTARTS = Counter(
    "scheduler_actor_restarts_total",
    "Actors restarted by their supervisor.",
    ["supervisor", "actor"],
)


class SupervisorGaveUp(RuntimeCoreError):
    """A supervisor exceeded its restart intensity, stopped its children and escalated.

    ``__cause__`` is the exception of the child whose failure used up the budget (None
    when that child returned normally).
    """

    def __init__(
        self, supervisor: str, actor: str, restarts: int, intensity: int, period: float
    ) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: restarting actor {actor!r} would be "
            f"restart {restarts} within {period:g} s, but intensity allows at most {intensity}"
        )
        self.supervisor = supervisor
        self.actor = actor
        self.restarts = restarts
        self.intensity = intensity
        self.period = period

    def __reduce__(self) -> tuple[type[SupervisorGaveUp], tuple[str, str, int, int, float]]:
        return (
            type(self),
            (self.supervisor, self.actor, self.restarts, self.intensity, self.period),
        )


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and what to do when it ends.

    ``start`` is called as ``await start(task_status=...)``: it runs until cancelled and
    calls ``task_status.started()`` once it is ready. ``Supervisor.run`` fits, so
    supervisors nest.
    """

    name: str
    start: Callable[..., Awaitable[object]]
    restart: Restart = "permanent"
    shutdown_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ChildSpec.name must be a non-empty string, got ''")
        if self.restart not in get_args(Restart):
            raise ValueError(
                f"ChildSpec.restart must be one of {get_args(Restart)}, got {self.restart!r}"
            )
        if not self.shutdown_timeout >= 0:
            raise ValueError(
                f"ChildSpec.shutdown_timeout must be >= 0, got {self.shutdown_timeout!r}"
            )


@dataclass(frozen=True)
class ChildStatistics:
    name: str
    state: ChildState
    restarts: int


@dataclass(frozen=True)
class SupervisorStatistics:
    """A snapshot of one supervisor's current (or last) run."""

    name: str
    strategy: Strategy
    children: tuple[ChildStatistics, ...]
    total_restarts: int


def restart_allowed(history: Sequence[float], now: float, intensity: int, period: float) -> bool:
    """May one more restart happen at ``now``, given the times of past restarts?

    A past restart counts while ``now - t < period``. At most ``intensity`` restarts fit
    in any window of ``period`` seconds, so the answer is "fewer than ``intensity`` in the
    window so far". ``intensity=0`` forbids every restart.
    """
    recent = sum(1 for t in history if now - t < period)
    return recent < intensity


@dataclass(eq=False)
class _Run:
    """One incarnation of a child: from ``nursery.start`` until its task ends."""

    child: _Child
    scope: trio.CancelScope
    launched_at: float
    done: trio.Event = field(default_factory=trio.Event)
    task: trio.lowlevel.Task | None = None
    started: bool = False
    started_at: float = 0.0
    stopping: bool = False
    error: Exception | None = None


@dataclass(eq=False)
class _Child:
    index: int
    spec: ChildSpec
    state: ChildState = "idle"
    run: _Run | None = None
    restarts: int = 0
    consecutive: int = 0
    restart_delay: float = 0.0
    restart_cause: str = ""


class _ReadyProbe:
    """The ``task_status`` a child receives.

    Before ``started()`` the child runs under ``nursery.start`` and shares the
    supervisor's cancellation, so cancelling a supervisor that is still starting cancels
    the child being started. Once trio has moved the child into the supervisor's nursery,
    its run is shielded: from then on only the supervisor stops it, in reverse order.
    """

    def __init__(self, run: _Run, inner: trio.TaskStatus[None]) -> None:
        self._run = run
        self._inner = inner

    def started(self, value: object = None) -> None:
        run = self._run
        assert run.task is not None
        before = run.task.parent_nursery
        self._inner.started()
        run.started = True
        run.started_at = trio.current_time()
        run.child.state = "running"
        # trio leaves the task where it is when the supervisor is being cancelled; the
        # child must then stay exposed to that cancellation.
        if run.task.parent_nursery is not before:
            run.scope.shield = True


class Supervisor:
    """Starts, watches, restarts and stops a fixed list of children.

    ``intensity`` restarts are allowed in any ``period`` seconds; one more and the
    supervisor gives up. A restart waits
    ``backoff.delay(n, base=backoff_base, cap=backoff_cap)`` where n counts the failed
    child's consecutive restarts, reset once that child has run for ``period`` seconds. Each call of :meth:`run` is a fresh incarnation: restart
    history, backoff and statistics start from zero, as for a restarted OTP supervisor.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = "one_for_one",
        intensity: int = 5,
        period: float = 10.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
    ) -> None:
        names = [spec.name for spec in children]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"child names must be unique in supervisor {name!r}, got {duplicates} twice or more"
            )
        if strategy not in get_args(Strategy):
            raise ValueError(f"strategy must be one of {get_args(Strategy)}, got {strategy!r}")
        if intensity < 0:
            raise ValueError(f"intensity must be >= 0, got {intensity}")
        if not period > 0:
            raise ValueError(f"period must be > 0, got {period!r}")
        if not (backoff_base >= 0 and backoff_cap >= 0):
            raise ValueError(
                f"backoff_base and backoff_cap must be >= 0, got {backoff_base!r}, {backoff_cap!r}"
            )
        self.name = name
        self.strategy: Strategy = strategy
        self.intensity = intensity
        self.period = period
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._specs = tuple(children)
        self._children = self._fresh_children()
        self._history: list[float] = []
        self._running = False

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self.strategy} children={len(self._specs)}>"

    def statistics(self) -> SupervisorStatistics:
        """Return a frozen snapshot of the children's states and restart counts."""
        children = tuple(ChildStatistics(c.spec.name, c.state, c.restarts) for c in self._children)
        return SupervisorStatistics(
            name=self.name,
            strategy=self.strategy,
            children=children,
            total_restarts=sum(c.restarts for c in children),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, call ``task_status.started()``, then supervise.

        Runs until cancelled or until it gives up. A child that fails before it calls
        ``started()`` counts as a crash, so startup either recovers under the restart
        policy or gives up.

        Cancellation:
            Cancelling ``run`` stops the children in reverse start order, one at a time:
            each is cancelled and awaited before the previous one is cancelled. A child
            still running ``shutdown_timeout`` seconds after its cancellation (it shields
            work) is logged as ``actor_stop_timed_out`` and still awaited; trio cannot
            kill a task. ``run`` returns only when every child task has ended.

        Error handling:
            Child exceptions never propagate as such. Past the restart intensity, the
            children are stopped as above and :class:`SupervisorGaveUp` is raised, chained
            to the failing child's last exception. Raises ``RuntimeError`` if this
            supervisor is already running.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._running = True
        self._children = self._fresh_children()
        self._history = []
        gave_up: SupervisorGaveUp | None = None
        send, receive = trio.open_memory_channel[_Run](math.inf)
        try:
            with send, receive:
                async with trio.open_nursery() as nursery:
                    try:
                        await self._start_children(nursery, send, range(len(self._children)))
                        task_status.started()
                        while True:
                            ended = await receive.receive()
                            if ended.child.run is not ended:
                                continue  # already replaced by a sibling's restart
                            again = await self._handle_end(ended.child, ended)
                            await self._start_children(nursery, send, again)
                    except SupervisorGaveUp as exc:
                        gave_up = exc
                    finally:
                        with trio.CancelScope(shield=True):
                            await self._stop_children(reversed(self._children))
        finally:
            self._running = False
            for child in self._children:
                if child.state in ("starting", "running", "restarting", "stopping"):
                    child.state = "stopped"
        if gave_up is not None:
            raise gave_up

    def _fresh_children(self) -> list[_Child]:
        return [_Child(index, spec) for index, spec in enumerate(self._specs)]

    async def _start_children(
        self,
        nursery: trio.Nursery,
        send: trio.MemorySendChannel[_Run],
        indices: Iterable[int],
    ) -> None:
        """Start children in index order; a failure before ``started()`` is handled inline."""
        queue = sorted(set(indices))
        while queue:
            child = self._children[queue.pop(0)]
            if child.run is not None:
                child.restarts += 1
                ACTOR_RESTARTS.labels(supervisor=self.name, actor=child.spec.name).inc()
                _log.warning(
                    "actor_restarted",
                    supervisor=self.name,
                    actor=child.spec.name,
                    restarts=child.restarts,
                    delay_s=child.restart_delay,
                    cause=child.restart_cause,
                )
            run = _Run(child=child, scope=trio.CancelScope(), launched_at=trio.current_time())
            child.run = run
            child.state = "starting"
            await nursery.start(self._run_child, run, send)
            if run.started:
                _log.info(
                    "actor_started",
                    supervisor=self.name,
                    actor=child.spec.name,
                    restarts=child.restarts,
                    startup_s=run.started_at - run.launched_at,
                )
            else:
                again = await self._handle_end(child, run)
                queue = sorted(set(queue) | set(again))

    async def _run_child(
        self,
        run: _Run,
        send: trio.MemorySendChannel[_Run],
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """Run one incarnation of a child; report how it ended, never raise its error."""
        child = run.child
        run.task = trio.lowlevel.current_task()
        returned = False
        try:
            with run.scope:
                await child.spec.start(task_status=_ReadyProbe(run, task_status))
                returned = True
        except Exception as exc:
            run.error = exc
        finally:
            run.done.set()
            self._log_end(run, returned)
        if not run.started:
            task_status.started()  # lets nursery.start return; the caller reads run.error
        elif not run.stopping:
            send.send_nowait(run)

    def _log_end(self, run: _Run, returned: bool) -> None:
        """The one line per run: how it ended and how long it lived."""
        child = run.child
        duration_s = trio.current_time() - run.launched_at
        keys = {"supervisor": self.name, "actor": child.spec.name, "duration_s": duration_s}
        if run.error is not None:
            child.state = "crashed"
            _log.error(
                "actor_crashed",
                **keys,
                outcome="crashed",
                before_started=not run.started,
                stopping=run.stopping,
                exc_info=run.error,
            )
        elif returned and not run.stopping:
            child.state = "exited"
            _log.info("actor_exited", **keys, outcome="exited", before_started=not run.started)
        else:
            child.state = "stopped"
            _log.info("actor_stopped", **keys, outcome="stopped")

    async def _handle_end(self, child: _Child, run: _Run) -> list[int]:
        """Apply the restart policy to a child that ended on its own.

        Returns the indices to start again (empty: nothing to restart). Stops the
        siblings the strategy names and waits the backoff first. Raises
        SupervisorGaveUp past the intensity.
        """
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and run.error is None):
            return []
        now = trio.current_time()
        if run.started and now - run.started_at >= self.period:
            child.consecutive = 0
        if not restart_allowed(self._history, now, self.intensity, self.period):
            count = 1 + sum(1 for t in self._history if now - t < self.period)
            _log.error(
                "supervisor_gave_up",
                supervisor=self.name,
                actor=child.spec.name,
                restarts=count,
                intensity=self.intensity,
                period_s=self.period,
            )
            raise SupervisorGaveUp(
                self.name, child.spec.name, count, self.intensity, self.period
            ) from run.error
        self._history = [t for t in self._history if now - t < self.period] + [now]

        affected = [child.index]
        if self.strategy == "one_for_all":
            siblings = [c for c in self._children if c is not child]
        elif self.strategy == "rest_for_one":
            siblings = self._children[child.index + 1 :]
        else:
            siblings = []
        live = [c for c in siblings if c.run is not None and not c.run.done.is_set()]
        await self._stop_children(reversed(live))
        # Temporary siblings are stopped but, as in OTP, never restarted.
        affected += [c.index for c in live if c.spec.restart != "temporary"]

        delay = backoff.delay(child.consecutive, base=self.backoff_base,
                              cap=self.backoff_cap)
        child.consecutive += 1
        for index in affected:
            sibling = self._children[index]
            sibling.state = "restarting"
            sibling.restart_delay = delay
            sibling.restart_cause = child.spec.name
        await trio.sleep(delay)
        return affected

    async def _stop_children(self, children: Iterable[_Child]) -> None:
        """Stop each live child in the given order, waiting for each before the next."""
        for child in children:
            run = child.run
            if run is None or run.done.is_set():
                continue
            run.stopping = True
            child.state = "stopping"
            run.scope.cancel()
            with trio.move_on_after(child.spec.shutdown_timeout):
                await run.done.wait()
            if not run.done.is_set():
                _log.warning(
                    "actor_stop_timed_out",
                    supervisor=self.name,
                    actor=child.spec.name,
                    shutdown_timeout_s=child.spec.shutdown_timeout,
                )
                await run.done.wait()
