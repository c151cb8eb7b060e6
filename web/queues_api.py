"""The queues API: see and change a queue's pause state and concurrency limit.

A queue exists as soon as a job names it; one never configured is active and has no
limit. A bad queue name is a 400 naming ``name``.

    GET    /api/queues                  queues with settings, waiting or running jobs
                                        (the first 1000 by name; waiting counted to 10,000)
    GET    /api/queues/{name}           one queue (any valid name answers)
    PATCH  /api/queues/{name}           {"concurrencyLimit": n | null, "paused": bool,
                                         "rateLimits": [{"limit", "per", "burst"}] | null,
                                         "keyConcurrencyLimit": n | null,
                                         "keyRateLimits": [...] | null}
    POST   /api/queues/{name}/pause     no new claims; running jobs finish
    POST   /api/queues/{name}/resume    claims again

A paused queue still accepts jobs; they wait. A concurrency limit caps how many of the
queue's jobs are Running at once across every worker and coordinator (claims of a
limited queue take a row lock on its settings, so the cap holds under any race). Rate
limits (up to 8 windows, each "at most limit starts in any per") hold the same way:
the claim that takes jobs moves the windows' state in the statement that takes them.
Per-key limits apply to each concurrency key of the queue's jobs on its own
(docs/decisions/0020-keys-and-fairness.md).
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app

from scheduler_core.schema import wire
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import CONSISTENCY, query_args, read_body, strong_reads

blueprint = Blueprint("queues", __name__)

def parse_name(name: str) -> str:
    if not wire.QUEUE_NAME.fullmatch(name):
        raise ApiError(400, "validation_error",
                       "a queue name is 1 to 64 letters, digits, _ . or -; found "
                       f"{name[:80]!r}", "name")
    return name


async def list_queues() -> Response:
    strong = strong_reads(query_args({CONSISTENCY}))
    items = await context(current_app).read(lambda r: r.queues.list_queues(), strong)
    return json_response(wire.QueuePage(items=items))


async def get_queue(name: str) -> Response:
    name = parse_name(name)
    return json_response(await context(current_app).read(lambda r: r.queues.get(name),
                                                         strong_reads()))


async def update_queue(name: str) -> Response:
    name = parse_name(name)
    change: wire.UpdateQueue = await read_body(wire.UpdateQueue)
    for field, windows in (("rateLimits", change.rate_limits),
                           ("keyRateLimits", change.key_rate_limits)):
        if isinstance(windows, list) and windows:
            problem = wire.rate_limit_problem(windows, field)
            if problem is not None:
                raise ApiError(400, "validation_error", problem[1], problem[0])
    return json_response(await context(current_app).queues.update(name, change))


async def pause_queue(name: str) -> Response:
    return json_response(await context(current_app).queues.update(
        parse_name(name), wire.UpdateQueue(paused=True)))


async def resume_queue(name: str) -> Response:
    return json_response(await context(current_app).queues.update(
        parse_name(name), wire.UpdateQueue(paused=False)))
