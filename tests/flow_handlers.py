"""Job types for the flow-control tests, loaded with ``--handlers tests.flow_handlers``.

``slow_down_once``: the first run of a job is told by "the remote" to slow down
(RateLimited, ``retryAfter`` seconds), every later run of it succeeds. Which runs came
first is kept as a marker file per job in the worker's data folder.
"""

from __future__ import annotations

import msgspec
import trio

from scheduler_core.handlers import REGISTRY, RateLimited, RunContext


class SlowDownPayload(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    retry_after: float = 1.0
    use_backoff: bool = False


@REGISTRY.handler("slow_down_once", payload=SlowDownPayload, max_attempts=1,
                  timeout_seconds=30, inline=True)
async def slow_down_once(payload: SlowDownPayload, ctx: RunContext) -> dict[str, object]:
    folder = trio.Path(ctx.data_dir)
    await folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"slowed-{ctx.job_id}"
    if not await marker.exists():
        await marker.write_text("1")
        if payload.use_backoff:
            ctx.backoff(payload.retry_after)
        raise RateLimited(payload.retry_after, "the remote said 429")
    return {"attempt": ctx.attempt}
