"""The ``bench_probe`` job type, for bench/run.py's pickup-latency phase.

Loaded with ``--handlers bench.probe_handlers`` by the coordinator and the worker that
bench/run.py starts (from the repository root, so ``bench`` is importable). The job's
first statement sends ``"<seq> <time.time()>"`` over UDP to 127.0.0.1:<port>: the
moment the job body started, on the same clock as the benchmark driver, like the UDP
probe of the peer harness (/work/shared/bench, ``bench_common.probe``).
"""

from __future__ import annotations

import socket
import time
from typing import Annotated

import msgspec

from scheduler_core.handlers import REGISTRY, RunContext


class ProbePayload(msgspec.Struct, forbid_unknown_fields=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]
    seq: int


_sock: socket.socket | None = None


@REGISTRY.handler("bench_probe", payload=ProbePayload, max_attempts=1, timeout_seconds=30)
def bench_probe(payload: ProbePayload, ctx: RunContext) -> None:
    global _sock
    started = time.time()
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _sock.sendto(f"{payload.seq} {started:.6f}".encode(), ("127.0.0.1", payload.port))
