"""The coordinator's drain: its graceful stop on the first SIGTERM, so that a load
balancer in front loses no request (docs/decisions/0029-drain-and-balancer.md).

:meth:`Drain.run`, in two steps:

1. draining (:attr:`Drain.requested`): ``/health/ready`` answers 503 and every answer
   says ``Connection: close``; everything else is served as before, for ``delay``
   seconds (SCHEDULER_DRAIN_DELAY_SECONDS): time for the balancer's health check to
   take this coordinator out, so that it sends its next requests elsewhere;
2. closing (:attr:`Drain.closing`): hypercorn's shutdown trigger fires
   (:func:`web.app.serve`): the listeners close (a new connection is refused, which a
   balancer retries on another server), the idle keep-alive connections close, the
   claim gate answers its parked long polls at once (an empty claim: the worker comes
   back, through the balancer, to another coordinator) and parks no more, the
   dashboard's event streams end; the requests in flight are answered, for up to
   ``timeout`` seconds (SCHEDULER_DRAIN_TIMEOUT_SECONDS), then cancelled.

:attr:`Drain.served` is then set, and the composition root stops the actors
(command/compose.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
import trio

from scheduler_core.actors.coordinator.claim_gate import ClaimGate

log = structlog.get_logger("web")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Past ``timeout``, what hypercorn may still take to cancel the requests left and to
# run the app's shutdown; the drain waits no longer than that for the server.
MARGIN_SECONDS = 5.0


class Drain:
    """One coordinator's drain (module docstring): requested once, then closing, then
    served.

    ``delay``: how long the coordinator goes on serving while not ready. ``timeout``:
    the longest the requests in flight get once the listeners are closed.
    """

    def __init__(self, *, delay: float = 0.0, timeout: float) -> None:
        self.delay = delay
        self.timeout = timeout
        self.requested = trio.Event()
        self.closing = trio.Event()
        self.served = trio.Event()
        self.serving = False  # set when the server starts (web/app.py serve)
        self._claims: ClaimGate | None = None
        self.in_flight = 0  # HTTP requests begun and not yet answered in full
        self._none_in_flight = trio.Event()
        self._none_in_flight.set()

    def track(self, app: ASGIApp) -> ASGIApp:
        """``app`` counting its HTTP requests in flight: from their headers to the last
        byte of their answer. (Hypercorn's own graceful wait cannot be the measure:
        with quart-trio an idle keep-alive connection holds it to its deadline.)"""

        async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            answered = False

            def done() -> None:
                nonlocal answered
                if not answered:
                    answered = True
                    self.in_flight -= 1
                    if self.in_flight == 0:
                        self._none_in_flight.set()

            async def send_and_see(message: MutableMapping[str, Any]) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    done()

            self.in_flight += 1
            if self._none_in_flight.is_set():
                self._none_in_flight = trio.Event()
            try:
                await app(scope, receive, send_and_see)
            finally:
                done()

        return tracked

    async def wait_answered(self) -> None:
        """Until no HTTP request is in flight."""
        while self.in_flight:
            await self._none_in_flight.wait()

    @property
    def draining(self) -> bool:
        """Whether the drain has begun (not ready, no keep-alive)."""
        return self.requested.is_set()

    def attach(self, claims: ClaimGate) -> None:
        """The claim gate whose long polls the drain answers (web/context.py)."""
        self._claims = claims

    async def run(self) -> None:
        """The whole drain: not ready, ``delay``, listeners closed and long polls
        answered, requests in flight answered (at most ``timeout`` plus
        MARGIN_SECONDS). A server not started yet has nothing to drain: it returns at
        once.

        Cancellation: safe at any point; the steps taken stay taken (the caller then
        stops the server by cancelling it).
        """
        if self.requested.is_set():
            return
        log.info("drain_started", delay_s=self.delay, timeout_s=self.timeout)
        self.requested.set()
        if self.serving and self.delay > 0:
            await trio.sleep(self.delay)
        self.closing.set()
        if self._claims is not None:
            self._claims.stop_waiting()
        if not self.serving:
            return
        with trio.move_on_after(self.timeout + MARGIN_SECONDS):
            await self.served.wait()
        log.info("drain_finished", served=self.served.is_set())
