"""GET /api/dashboard/meta: the status sets the dashboard's filters and views need,
served from schema/wire.py, on the app itself without a database."""

from __future__ import annotations

from typing import Any

from scheduler_core.handlers import REGISTRY
from scheduler_core.runtime.config import load_config
from scheduler_core.schema.store import Store
from scheduler_core.web.app import AppContext, create_app


class _NoPool:
    """Stands in for the database pool: the meta route reads none."""


async def meta() -> Any:
    app = create_app(AppContext(store=Store(_NoPool()),  # type: ignore[arg-type]
                                registry=REGISTRY, config=load_config({})))
    resp = await app.test_client().get("/api/dashboard/meta")
    assert 200 == resp.status_code
    return await resp.get_json()


async def test_meta_lists_every_status_in_display_order() -> None:
    assert ["Waiting", "Scheduled", "Pending", "Running", "Succeeded", "Failed",
            "DeadLetter", "Cancelled"] == (await meta())["statuses"]


async def test_meta_lists_the_terminal_statuses_in_display_order() -> None:
    body = await meta()
    assert ["Succeeded", "DeadLetter", "Cancelled"] == body["terminalStatuses"]
    assert ["Cancelled", "DeadLetter", "Succeeded"] == body["terminal"]  # the older key


async def test_meta_lists_the_active_statuses() -> None:
    assert ["Waiting", "Scheduled", "Pending", "Running", "Failed"] == (
        await meta())["activeStatuses"]


async def test_meta_lists_the_registered_job_types() -> None:
    assert sorted(REGISTRY.names()) == (await meta())["types"]
