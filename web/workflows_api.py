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

from quart import Blueprint, Response, current_app

from scheduler_core.schema import wire
from scheduler_core.schema.store import NewJob, Parent, TooDeep, uuid7
from scheduler_core.web.api import job_of
from scheduler_core.web.context import context, json_response
from scheduler_core.web.errors import ApiError
from scheduler_core.web.inputs import (
    CONSISTENCY,
    parse_id,
    parse_take,
    query_args,
    read_body,
    strong_reads,
)
from scheduler_core.web.tracing import traced_submit
from scheduler_core.web.workflow_graph import edges_of, order_of

blueprint = Blueprint("workflows", __name__)

_LIST_PARAMS = {"status", "take", "cursor", CONSISTENCY}
_STATUSES = ("Running", "Succeeded", "Failed")


@traced_submit
async def create_workflow() -> Response:
    body: wire.SubmitWorkflow = await read_body(wire.SubmitWorkflow)
    ctx = context(current_app)
    edges = edges_of(body)
    order = order_of(edges)
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
    before = parse_id(cursor, "cursor") if cursor else None
    take = parse_take(args, 50)
    page = await context(current_app).read(
        lambda r: r.store.list_workflows(status=status, before=before, take=take),
        strong_reads(args))
    return json_response(page)


async def get_workflow(workflow_id: str) -> Response:
    strong = strong_reads()
    found = parse_id(workflow_id)
    return json_response(await context(current_app).read(
        lambda r: r.store.get_workflow(found), strong))


async def cancel_workflow(workflow_id: str) -> Response:
    return json_response(await context(current_app).store.cancel_workflow(
        parse_id(workflow_id)))
