"""Ordering under faults (issue 16): a workflow's steps run in dependency order, each
Succeeded exactly once, while workers are killed with -9 every few seconds.

Two graphs, each submitted as one workflow (``POST /api/workflows``, ``dependsOn`` by
step name), each run by 3 workers of 4 slots against one coordinator with short
leases:

- ``layered``: a seeded random layered graph of 1,000 steps, 999 in 25 layers, each
  with one parent in the layer just before and up to two more from any earlier layer,
  and a final join of every step that nothing depends on;
- ``diamonds``: about 1,000 steps in chains of diamonds: from one root, four lanes
  where each join fans out to 2-5 steps (now and then to 20-40) that fan back in to
  the lane's next join; a quarter of the joins also wait for another lane's latest
  join, and one final join waits for every lane.

Every step is a sleep of 40-120 ms in a job process, so that kills land on running
steps, with attempts enough that no run of kills dead-letters it. The driver
(``WorkerKiller``, as test_chaos's) kill -9s a random worker every 2-3 s and starts a
replacement until every step is terminal.

Checked from the database afterwards: every step Succeeded, with exactly one Succeeded
run; no job ever had two live runs at once; for every edge of ``job_deps``, every run
of the child (not only its last) started at or after its parent's Succeeded run
finished. The kills must have happened and cost runs, or the test proved nothing.

``SCHEDULER_ORDERING_SEED`` replaces the seed of the graphs, their sleeps and the kills.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.faults.common import (
    TERMINAL,
    WorkerKiller,
    duplicate_successes,
    kill_until,
    overlapping_live_runs,
    query,
    run_outcomes,
    runs_before_parents,
    runs_lost_to_kills,
    succeeded_without_one_succeeded_run,
)
from tests.support import Coordinator, Worker

LEASE = 3.0
COORDINATOR = {
    "SCHEDULER_LEASE_SECONDS": str(LEASE),
    "SCHEDULER_REAP_INTERVAL_SECONDS": "0.5",
    "SCHEDULER_RETRY_BASE_SECONDS": "0.05",
    "SCHEDULER_RETRY_CAP_SECONDS": "1",
    "SCHEDULER_CLAIM_WAIT_SECONDS": "2",
    "SCHEDULER_DB_POOL_SIZE": "8",
}
WORKER = {"SCHEDULER_HEARTBEAT_SECONDS": "0.5", "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
WORKERS, SLOTS = 3, 4
STEPS = 1000
MAX_ATTEMPTS = 20  # runs lost to kills count as attempts: far more than kills can take
DEADLINE = 240.0  # from the workers' start to the last step terminal
MIN_KILLS = 3

Graph = dict[str, list[str]]  # step -> the steps it depends on, parents first


def layered(rng: random.Random, *, steps: int = STEPS, layers: int = 25) -> Graph:
    """``steps - 1`` steps in ``layers`` layers, each after one step of the layer before
    and up to two of any earlier layer, then a join of every step left without a child."""
    graph: Graph = {}
    earlier: list[str] = []
    previous: list[str] = []
    for layer in range(layers):
        current = []
        for i in range((steps - 1) // layers + (layer < (steps - 1) % layers)):
            name = f"l{layer}_{i}"
            parents: set[str] = set()
            if previous:
                parents.add(rng.choice(previous))
                parents.update(rng.sample(earlier, rng.randint(0, 2)))
            graph[name] = sorted(parents)
            current.append(name)
        earlier += current
        previous = current
    has_child = {p for parents in graph.values() for p in parents}
    graph["join"] = [name for name in graph if name not in has_child]
    return graph


def diamonds(rng: random.Random, *, steps: int = STEPS, lanes: int = 4) -> Graph:
    """Chains of diamonds in ``lanes`` lanes from one root to one end, about ``steps``
    steps: each lane's latest join fans out (2-5 wide, one time in seven 20-40) and fans
    back in to its next join, which a quarter of the time also waits for another lane's."""
    graph: Graph = {"root": []}
    joins = ["root"] * lanes  # each lane's latest join
    n = 0
    while len(graph) < steps - 1:
        lane = n % lanes
        width = rng.randint(20, 40) if rng.random() < 1 / 7 else rng.randint(2, 5)
        width = min(width, max(1, steps - 2 - len(graph)))
        middle = [f"d{n}_{i}" for i in range(width)]
        for name in middle:
            graph[name] = [joins[lane]]
        other = joins[rng.randrange(lanes)]
        across = [other] if rng.random() < 0.25 and other not in ("root", joins[lane]) else []
        graph[f"d{n}"] = middle + across
        joins[lane] = f"d{n}"
        n += 1
    graph["end"] = sorted(set(joins))
    return graph


GRAPHS: dict[str, tuple[Callable[[random.Random], Graph], int]] = {
    "layered": (layered, 16_001), "diamonds": (diamonds, 16_002)}  # builder, default seed


def depth(graph: Graph) -> int:
    """Steps on the longest path (the graph lists parents before children)."""
    level: dict[str, int] = {}
    for name, parents in graph.items():
        level[name] = 1 + max((level[p] for p in parents), default=0)
    return max(level.values())


def workflow_body(name: str, graph: Graph, rng: random.Random) -> dict[str, Any]:
    return {"name": name, "steps": {
        step: {"type": "sleep", "payload": {"seconds": round(rng.uniform(0.04, 0.12), 3)},
               "maxAttempts": MAX_ATTEMPTS, **({"dependsOn": parents} if parents else {})}
        for step, parents in graph.items()}}


@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_every_step_succeeds_once_and_after_its_parents_while_workers_are_killed(
        shape: str, db_dsn: str, start_coordinator: Callable[..., Coordinator],
        start_worker: Callable[..., Worker], figures: dict[str, Any]) -> None:
    build, default_seed = GRAPHS[shape]
    seed = int(os.environ.get("SCHEDULER_ORDERING_SEED", default_seed))
    rng = random.Random(seed)
    graph = build(rng)
    edges = sum(len(parents) for parents in graph.values())
    figures.update(graph=shape, seed=seed, steps=len(graph), edges=edges,
                   depth=depth(graph), workers=WORKERS, slots=SLOTS, lease_s=LEASE)

    c = start_coordinator(env=COORDINATOR)
    submitted = time.monotonic()
    resp = httpx.post(c.url + "/api/workflows", json=workflow_body(shape, graph, rng),
                      timeout=60)
    assert 201 == resp.status_code, resp.text[:500]
    workflow_id = resp.json()["id"]
    figures["submit_s"] = round(time.monotonic() - submitted, 2)

    def statuses() -> Counter[str]:
        return Counter({r["status"]: r["n"] for r in query(db_dsn, """
            SELECT status, count(*) AS n FROM jobs WHERE workflow_id = %s GROUP BY status""",
            (workflow_id,))})

    killer = WorkerKiller(
        lambda worker_id: start_worker(c.url, slots=SLOTS, env=WORKER,
                                       extra=["--worker-id", worker_id]),
        WORKERS, rng, prefix="order")
    elapsed = kill_until(
        killer, lambda: sum(n for s, n in statuses().items() if s in TERMINAL) == len(graph),
        deadline=DEADLINE, why_not=lambda: f"steps not all terminal: {dict(statuses())}")

    ended = statuses()
    early = runs_before_parents(db_dsn)
    overlaps = overlapping_live_runs(db_dsn)
    duplicates = duplicate_successes(db_dsn)
    not_one = succeeded_without_one_succeeded_run(db_dsn)
    outcomes = run_outcomes(db_dsn)
    lost = runs_lost_to_kills(db_dsn)
    [row] = query(db_dsn, """
        SELECT (SELECT count(*) FROM job_deps d JOIN jobs j ON j.id = d.child
                WHERE j.workflow_id = %(w)s) AS edges,
               extract(epoch FROM max(r.finished_at) - min(r.started_at)) AS span_s
        FROM job_runs r JOIN jobs j ON j.id = r.job_id WHERE j.workflow_id = %(w)s""",
        {"w": workflow_id})
    figures.update(
        kills=killer.kills, outages=killer.kills, statuses=dict(ended),
        runs=sum(outcomes.values()), run_outcomes=outcomes,
        runs_lost_to_kills=lost["runs"], steps_rerun_after_a_kill=lost["jobs"],
        runs_released=outcomes.get("Released", 0), duplicates=len(duplicates),
        overlapping_live_runs=len(overlaps), runs_before_parents=len(early),
        span_s=round(float(row["span_s"]), 1), duration_s=round(elapsed, 1),
        steps_per_s=round(len(graph) / elapsed, 1))

    assert {"Succeeded": len(graph)} == dict(ended)
    assert edges == row["edges"]  # the order check below saw every edge
    assert [] == early[:10], f"{len(early)} runs started before a parent had succeeded"
    assert [] == duplicates
    assert [] == not_one
    assert [] == overlaps
    assert killer.kills >= MIN_KILLS, f"only {killer.kills} kills: the faults did not last"
    assert lost["runs"] + outcomes.get("Released", 0) > 0, \
        "no run was ever lost to a kill: the kills missed"
