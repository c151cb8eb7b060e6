"""Garbage-collector settings for the long-running processes (coordinator, worker).

Every job makes thousands of short-lived objects (rows, Structs, trio's bookkeeping)
and CPython's default runs a young-generation collection every 700 net allocations:
measured on the coordinator's batched claim/complete path, collections took about a
sixth of its CPU. After start-up, :func:`tune` freezes what is alive then (modules,
the app: never garbage, never scanned again) and collects the young generation every
20,000 allocations instead; the cost fell to about a twentieth (docs/decisions/
0009-fast-path.md). Cyclic garbage waits a little longer to be freed, which costs a
few megabytes at most.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def tune() -> None:
    """Freeze the objects alive now and space out young-generation collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
