"""A job type that shows a job process its own environment, loaded with
``--handlers tests.security.env_handlers`` (SCHEDULER_HANDLERS)."""

from __future__ import annotations

import os

import msgspec

from scheduler_core.handlers import REGISTRY, RunContext


class NoPayload(msgspec.Struct, forbid_unknown_fields=True):
    pass


@REGISTRY.handler("env_dump", payload=NoPayload, max_attempts=1, timeout_seconds=10)
def env_dump(payload: NoPayload, ctx: RunContext) -> dict[str, object]:
    """The job process's environment and pid, as the job sees them."""
    return {"environ": dict(os.environ), "pid": os.getpid()}
