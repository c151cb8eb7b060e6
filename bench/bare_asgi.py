"""The bare-hypercorn floor of ``bench/run.py``'s submit phase (issue 14, goal 3).

    .venv/bin/python bench/bare_asgi.py --port PORT

A plain ASGI app, no framework and no database: every HTTP request has its body read
and is answered ``201`` with a small JSON document (the size of a job's answer's first
fields). It is served by hypercorn's trio worker with the settings web/app.py's
``serve`` uses, so ``hey`` against it measures what hypercorn alone costs per request
on this machine: the most our ``POST /api/jobs`` could serve under the same load.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import hypercorn.trio
import trio

from scheduler_core.web.app import hypercorn_config

Scope = dict[str, Any]
Message = dict[str, Any]


async def app(scope: Scope, receive: Callable[[], Awaitable[Message]],
              send: Callable[[Message], Awaitable[None]]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    size = 0
    while True:  # read the whole body, as a real handler must
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = (b'{"id":"' + str(uuid.uuid4()).encode() + b'","status":"Pending","size":'
            + str(size).encode() + b"}")
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def serve(host: str, port: int) -> None:
    cfg = hypercorn_config(host, port)  # exactly as the coordinator serves
    await hypercorn.trio.serve(app, cfg)  # type: ignore[arg-type]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    trio.run(serve, a.host, a.port)


if __name__ == "__main__":
    main()
