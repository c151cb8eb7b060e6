"""The one backoff formula: capped exponential, without jitter.

Used for supervisor restarts (runtime/supervisor.py), a worker's reconnects to its
coordinator (actors/worker/coordinator_link.py) and the cron expander's retries after a
database error (actors/coordinator/cron_expander.py). A job's retry delay is the same curve with
full jitter, computed in SQL where the retry is decided (schema/queries/runs.sql,
complete_runs), from SCHEDULER_RETRY_BASE_SECONDS and SCHEDULER_RETRY_CAP_SECONDS.
"""

from __future__ import annotations

__all__ = ["delay"]

# 2.0**1000 is finite; past it every sane base has long reached the cap.
_MOST_DOUBLINGS = 1000


def delay(failures_before: int, *, base: float, cap: float) -> float:
    """Seconds to wait before the next try: ``min(cap, base * 2**failures_before)``.

    ``failures_before`` counts the failures before the one just seen, so the first
    wait is ``base``, the next ``2 * base``, and so on up to ``cap``. A pure function
    of its inputs (no clock, no randomness).

    Error handling: raises ValueError for a negative ``failures_before``, ``base`` or
    ``cap``.
    """
    if failures_before < 0:
        raise ValueError(f"failures_before must be >= 0, found {failures_before}")
    if base < 0 or cap < 0:
        raise ValueError(f"base and cap must be >= 0, found base={base!r} cap={cap!r}")
    return float(min(cap, base * 2.0 ** min(failures_before, _MOST_DOUBLINGS)))
