"""The schedules API: list, read, pause, resume and delete recurring jobs.

Schedules are created by ``POST /api/jobs`` with ``cron`` (web/api.py). Every route
here answers a schedule as JSON; an id that is not a UUID is a 400 naming ``id``, an
unknown (or deleted) schedule a 404 naming ``id``, like the rest of the API.

    GET    /api/schedules?take=N         newest first, {"items": [...]}
    GET    /api/schedules/{id}           the schedule and its recentFires
    POST   /api/schedules/{id}/pause     no new fires
    POST   /api/schedules/{id}/resume    fires again; missed fires per misfirePolicy
    DELETE /api/schedules/{id}           soft delete: no fires, past jobs kept
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app

from scheduler_core.web.context import context, json_response
from scheduler_core.web.inputs import CONSISTENCY, parse_id, parse_take, query_args, strong_reads

blueprint = Blueprint("schedules", __name__)

_LIST_PARAMS = {"take", CONSISTENCY}


async def list_schedules() -> Response:
    args = query_args(_LIST_PARAMS)
    take = parse_take(args, 100)
    items = await context(current_app).read(lambda r: r.schedules.list_schedules(take),
                                            strong_reads(args))
    return json_response({"items": items})


async def get_schedule(schedule_id: str) -> Response:
    strong = strong_reads()
    found = parse_id(schedule_id)
    return json_response(await context(current_app).read(
        lambda r: r.schedules.get_schedule(found), strong))


async def pause_schedule(schedule_id: str) -> Response:
    return json_response(await context(current_app).schedules.pause(parse_id(schedule_id)))


async def resume_schedule(schedule_id: str) -> Response:
    return json_response(await context(current_app).schedules.resume(parse_id(schedule_id)))


async def delete_schedule(schedule_id: str) -> Response:
    return json_response(await context(current_app).schedules.delete(parse_id(schedule_id)))
