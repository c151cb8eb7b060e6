"""schema/workflow_template.py and schedule_store.steps_of: a workflow schedule's stored
steps, what the schedule shows of them, and the jobs one fire makes (held or not)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from scheduler_core.schema import wire
from scheduler_core.schema.schedule_store import steps_of
from scheduler_core.schema.store import Parent
from scheduler_core.schema.workflow_template import (
    HELD_UNTIL,
    TemplateStep,
    WorkflowTemplate,
    decode,
    encode,
)


def step(name: str, *parents: tuple[int, str], **kw: Any) -> TemplateStep:
    return TemplateStep(step=name, type=kw.get("type", "noop"), payload={}, queue="q",
                        priority=1, max_attempts=2, timeout_seconds=30,
                        parents=list(parents))


DIAMOND = WorkflowTemplate(name="nightly", steps=[
    step("extract"), step("left", (0, "cancel")), step("right", (0, "run")),
    step("load", (1, "cancel"), (2, "wait"))])


def test_a_template_reads_back_as_it_was_stored() -> None:
    assert DIAMOND == decode(encode(DIAMOND))


def test_the_stored_form_is_what_jsonb_gives_back() -> None:
    stored = encode(DIAMOND)
    assert stored == msgspec.json.decode(msgspec.json.encode(stored))
    assert [[1, "cancel"], [2, "wait"]] == stored["steps"][3]["parents"]


def test_no_template_for_a_job_schedule() -> None:
    assert None is decode(None)


def test_the_schedule_shows_the_name_and_each_steps_parents_by_name() -> None:
    assert wire.ScheduledWorkflowOut(name="nightly", steps=[
        wire.ScheduledStepOut(name="extract", type="noop", depends_on=[]),
        wire.ScheduledStepOut(name="left", type="noop", depends_on=["extract"]),
        wire.ScheduledStepOut(name="right", type="noop", depends_on=["extract"]),
        wire.ScheduledStepOut(name="load", type="noop", depends_on=["left", "right"]),
    ]) == DIAMOND.out()


def test_the_roots_are_the_steps_without_parents() -> None:
    assert [0] == DIAMOND.roots()


@pytest.mark.parametrize(("steps", "why"), [
    ([], "at least one step"),
    ([step("a"), step("a")], "distinct"),
    ([step("a", (0, "cancel"))], "earlier"),
    ([step("a", (1, "cancel")), step("b")], "earlier"),
], ids=["no_steps", "a_name_twice", "its_own_parent", "a_later_parent"])
def test_a_template_that_the_api_cannot_have_written_does_not_decode(
        steps: list[TemplateStep], why: str) -> None:
    raw = {"name": "w", "steps": msgspec.to_builtins(steps)}
    with pytest.raises(msgspec.ValidationError, match=why):
        decode(raw)


def test_a_fire_makes_one_job_per_step_in_order_with_parents_by_index() -> None:
    wid = uuid.uuid4()
    jobs = steps_of(DIAMOND, wid, held=False)
    assert ["extract", "left", "right", "load"] == [j.step for j in jobs]
    assert {wid} == {j.workflow_id for j in jobs}
    assert [None, [Parent(item=0, on_failure="cancel")], [Parent(item=0, on_failure="run")],
            [Parent(item=1, on_failure="cancel"), Parent(item=2, on_failure="wait")]] == [
        j.parents for j in jobs]
    assert ("noop", "q", 1, 2, 30) == (jobs[3].type, jobs[3].queue, jobs[3].priority,
                                       jobs[3].max_attempts, jobs[3].timeout_seconds)
    assert [None] * 4 == [j.run_at for j in jobs]


def test_a_held_fire_holds_only_its_root_steps() -> None:
    jobs = steps_of(DIAMOND, uuid.uuid4(), held=True)
    assert [HELD_UNTIL, None, None, None] == [j.run_at for j in jobs]
