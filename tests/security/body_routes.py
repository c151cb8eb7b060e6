"""What the hostile-input tests share: every route that takes a body, read from the
route table (web/routes.py ROUTES), with the token its role needs (the entry's role),
a coordinator started with all three tokens, and its log lines.

A route added to ROUTES with a body is covered by these tests without a change here.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler_core.web.openapi import JSON, openapi_path
from scheduler_core.web.routes import ROUTES
from tests import support
from tests.support import Coordinator, Proc, running_coordinator

ADMIN = "sec-admin-" + "a" * 24
READ = "sec-read-" + "r" * 24
WORKER = "sec-worker-" + "w" * 24
TOKENS = {"SCHEDULER_ADMIN_TOKEN": ADMIN, "SCHEDULER_READ_TOKEN": READ,
          "SCHEDULER_WORKER_TOKEN": WORKER}
TOKEN_OF_ROLE = {"admin": ADMIN, "read": READ, "worker": WORKER, "public": None}
# The values path parameters get: a well-formed id (no such job) and a queue name.
PATH_VALUES = {"id": str(uuid.UUID(int=1)), "name": "default"}


@dataclass(frozen=True)
class BodyRoute:
    method: str
    path: str  # with its parameters filled in
    operation_id: str
    media: str  # the body's media type
    token: str | None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.media}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def body_routes(*, media: str | None = JSON) -> list[BodyRoute]:
    """Every route of ROUTES that takes a body (of ``media``; None: of any type)."""
    found = []
    for route in ROUTES:
        if route.body is None or (media is not None and route.body_media != media):
            continue
        method = route.method.upper()
        path = re.sub(r"\{([^}]*)\}", lambda m: PATH_VALUES[m.group(1)],
                      openapi_path(route))
        found.append(BodyRoute(method, path, route.operation_id, route.body_media,
                               TOKEN_OF_ROLE[route.role]))
    return found


def secured_coordinator(dsn: str, **env: str) -> Iterator[Coordinator]:
    """A coordinator with all three tokens (a module fixture's body)."""
    with running_coordinator(dsn, env={**TOKENS, "SCHEDULER_CLAIM_WAIT_SECONDS": "0.05",
                                       **env}) as c:
        yield c


def log_events(proc: Proc, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of ``proc`` whose event is ``name``."""
    found = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == name:
                found.append(entry)
    return found


def record_figures(name: str, figures: dict[str, Any]) -> Path:
    """A security test's measured figures, to test-output/security/<name>.json."""
    return support.record_figures(name, figures, under="security")
