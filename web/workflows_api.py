"""The workflows API: named steps, each a job, that depend on each other by name
(docs/decisions/0021-dependencies.md).

    POST /api/workflows                  create: the workflow and every step, one transaction
    GET  /api/workflows?status=&take=    newest first, keyset paged
    GET  /api/workflows/{id}             the graph: each step's status, timings, result
    POST /api/workflows/{id}/cancel      every step not finished

A step is a job as ``POST /api/jobs`` takes it (without ``cron`` and ``ref``); its
``dependsOn`` names other steps of the workflow. Bad input (an unknown step, a cycle,
a step name that is not an identifier, more than 10,000 steps, a graph deeper than
1,000) is a 400 naming the field (``steps.load.dependsOn[1]``), and nothing is written.
"""

from __future__ import annotations

import re

from quart import Blueprint, Response, current_app

from scheduler_core.schema import wire
from scheduler_core.schema.store import NewJob, Parent, TooDeep, uuid7
from scheduler_core.web.api import job_of
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import parse_id, parse_take, query_args, read_body

blueprint = Blueprint("workflows", __name__)

_LIST_PARAMS = {"status", "take", "cursor"}
_STATUSES = ("Running", "Succeeded", "Failed")


def _edges(body: wire.SubmitWorkflow) -> dict[str, list[tuple[str, str]]]:
    """Each step's parents as (step, policy), checked to name steps of the workflow."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, step in body.steps.items():
        if len(name) > 100 or not re.fullmatch(wire.REF_PATTERN, name):
            raise ApiError(400, "validation_error",
                           "a step's name is an identifier (letters, digits, _; not starting "
                           f"with a digit; at most 100), found {name[:100]!r}", "steps")
        where = f"steps.{name}"
        for field, value in (("cron", step.cron), ("ref", step.ref)):
            if value is not None:
                raise ApiError(400, "validation_error",
                               f"a workflow's step takes no {field}", f"{where}.{field}")
        if step.depends_on is None and step.on_parent_failure is not None:
            raise ApiError(400, "validation_error",
                           "onParentFailure applies only with dependsOn",
                           f"{where}.onParentFailure")
        default = step.on_parent_failure or "cancel"
        parents: list[tuple[str, str]] = []
        for pos, entry in enumerate(step.depends_on or ()):
            field = f"{where}.dependsOn[{pos}]"
            policy = default
            if isinstance(entry, wire.Dependency):
                policy = entry.on_parent_failure or default
                entry, field = entry.job, field + ".job"
            if not isinstance(entry, str) or entry not in body.steps:
                raise ApiError(400, "validation_error",
                               "a step depends on steps of its workflow, by name; found "
                               f"{str(entry)[:100]!r}, which is none of them", field)
            if entry == name:
                raise ApiError(400, "validation_error",
                               f"step {name!r} cannot depend on itself", field)
            parents.append((entry, policy))
        out[name] = parents
    return out


def _order(edges: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The steps with every parent before its children (Kahn's algorithm, ties in the
    order given); a cycle is a 400 naming one of its steps."""
    children: dict[str, list[str]] = {name: [] for name in edges}
    missing = {name: len(ps) for name, ps in edges.items()}
    for name, ps in edges.items():
        for parent, _ in ps:
            children[parent].append(name)
    ready = [name for name, n in missing.items() if n == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in children[name]:
            missing[child] -= 1
            if missing[child] == 0:
                ready.append(child)
    if len(order) < len(edges):
        stuck = sorted(name for name, n in missing.items() if n > 0)
        raise ApiError(400, "validation_error",
                       "the steps' dependsOn form a cycle through "
                       + ", ".join(stuck[:10]) + ("..." if len(stuck) > 10 else ""),
                       f"steps.{stuck[0]}.dependsOn")
    return order


async def create_workflow() -> Response:
    body: wire.SubmitWorkflow = await read_body(wire.SubmitWorkflow)
    ctx = context(current_app)
    edges = _edges(body)
    order = _order(edges)
    index = {name: i for i, name in enumerate(order)}
    workflow_id = uuid7()
    jobs: list[NewJob] = []
    for name in order:
        job = job_of(ctx, body.steps[name], f"steps.{name}")
        job.parents = [Parent(item=index[p], on_failure=policy) for p, policy in edges[name]]
        job.workflow_id, job.step = workflow_id, name
        jobs.append(job)
    try:
        items = await ctx.store.create_workflow(workflow_id, body.name, jobs)
    except TooDeep as exc:
        raise ApiError(400, "validation_error", str(exc),
                       f"steps.{order[exc.item]}.dependsOn") from None
    return json_response(wire.WorkflowCreated(
        id=workflow_id, name=body.name,
        steps={name: item.id for name, item in zip(order, items, strict=True)}), 201,
        {"Location": f"/api/workflows/{workflow_id}"})


async def list_workflows() -> Response:
    args = query_args(_LIST_PARAMS)
    status = args.get("status") or None
    if status is not None and status not in _STATUSES:
        raise ApiError(400, "validation_error", "status must be one of "
                       + ", ".join(_STATUSES) + f"; found {status[:100]!r}", "status")
    cursor = args.get("cursor") or None
    page = await context(current_app).store.list_workflows(
        status=status, before=parse_id(cursor, "cursor") if cursor else None,
        take=parse_take(args, 50))
    return json_response(page)


async def get_workflow(workflow_id: str) -> Response:
    return json_response(await context(current_app).store.get_workflow(parse_id(workflow_id)))


async def cancel_workflow(workflow_id: str) -> Response:
    return json_response(await context(current_app).store.cancel_workflow(
        parse_id(workflow_id)))
