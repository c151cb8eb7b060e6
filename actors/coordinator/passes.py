"""The loop of an actor that works off rows the database queues for it: the validator
(jobs enqueued through SQL) and the releaser (the children of wide fan-outs).

Each pass handles up to a batch; a full batch is followed by another at once, else
the loop waits for a ring of its doorbell (the listener rings it on the table's NOTIFY)
or ``interval`` seconds (a notification is lost while the listener reconnects; it rings
every bell once it is back, too). After a ring it waits ``gather`` seconds more, so
that a burst of commits is handled in one pass, not one pass (one more transaction)
each. Database errors are logged and retried with capped backoff: an outage must not
kill the coordinator.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import psycopg
import structlog
import trio

from scheduler_core.runtime import backoff
from scheduler_core.runtime.doorbell import Doorbell
from scheduler_core.runtime.errors import DatabaseUnavailable


async def run_passes(one_pass: Callable[[], Awaitable[bool]], doorbell: Doorbell, *,
                     actor: str, interval: float, gather: float = 0.005,
                     retry_cap: float = 5.0) -> None:
    """Run ``one_pass`` until cancelled; it returns True when its batch was full (more
    may be waiting right now).

    Cancellation: safe at any point; a cancelled pass is the store's to roll back."""
    log = structlog.get_logger(f"actors.{actor}")
    failures = 0
    while True:
        generation = doorbell.generation
        try:
            full = await one_pass()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            delay = backoff.delay(failures, base=0.1, cap=retry_cap)
            failures += 1
            log.warning(f"{actor}_pass_failed", actor=actor, error=str(exc), retry_in_s=delay)
        else:
            failures = 0
            if full:
                await trio.lowlevel.checkpoint()
                continue
            delay = interval if interval > 0 else math.inf
        with trio.move_on_after(delay):
            await doorbell.wait_since(generation)
            await trio.sleep(gather)
