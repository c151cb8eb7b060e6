"""What a workflow schedule fires: the workflow's steps, validated once at submission and
kept normalised in ``schedules.workflow`` (migration 0015).

The API validates ``POST /api/jobs``'s ``workflow`` as ``POST /api/workflows`` does and
stores the result here: the steps in parents-first order, each with its job type, its
valid payload, the defaults already applied (queue, priority, attempts, timeout) and
its parents as (index of an earlier step, failure policy). The cron expander turns it
into the jobs of one workflow per fire (schema/schedule_store.py) without validating
anything again: a handler's defaults changed later do not change a schedule's steps,
as they do not change a job schedule's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from scheduler_core.schema import wire

# A held fire (overlap queue) waits Scheduled at this time: no claim or promotion
# reaches it until a trigger releases it (migrations 0002 and 0015).
HELD_UNTIL = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)

# What a workflow schedule's job_type column holds (NOT NULL): this, then the name.
TYPE_PREFIX = "workflow:"


class TemplateStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step: a job as the API validated it, and its parents by index."""

    step: str
    type: str
    payload: dict[str, Any]
    queue: str
    priority: int
    max_attempts: int
    timeout_seconds: int
    concurrency_key: str | None = None
    parents: list[tuple[int, str]] = []  # (index of an earlier step, onParentFailure)


class WorkflowTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """The workflow a schedule fires: its name and its steps, parents first.

    Error handling: decoding one whose parent names a step that is not earlier, or whose
    step names repeat, is a ``msgspec.ValidationError`` (a row can only hold one the API
    wrote, so this guards the code that builds one)."""

    name: str
    steps: list[TemplateStep]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a workflow has at least one step")
        names = [s.step for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("expected distinct step names")
        for i, s in enumerate(self.steps):
            for parent, _ in s.parents:
                if not 0 <= parent < i:
                    raise ValueError(f"step {s.step!r} (index {i}) names parent {parent}: "
                                     "expected an earlier step")

    def out(self) -> wire.ScheduledWorkflowOut:
        """As ``GET /api/schedules/{id}`` shows it."""
        return wire.ScheduledWorkflowOut(name=self.name, steps=[
            wire.ScheduledStepOut(name=s.step, type=s.type,
                                  depends_on=[self.steps[p].step for p, _ in s.parents])
            for s in self.steps])

    def roots(self) -> list[int]:
        """The indexes of the steps without parents (held when the fire is held)."""
        return [i for i, s in enumerate(self.steps) if not s.parents]


def encode(template: WorkflowTemplate) -> dict[str, Any]:
    """The JSON object stored in ``schedules.workflow`` (as it reads back: arrays are
    lists, so a stored definition compares equal to a new one)."""
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(template))
    return out


def decode(value: Any) -> WorkflowTemplate | None:
    """A ``schedules.workflow`` value (None for a job schedule) as its template."""
    return None if value is None else msgspec.convert(value, WorkflowTemplate)
