"""The executor's own cost per job: noop jobs through a warm pool of ``command.child``.

    .venv/bin/python bench/executor_overhead.py [--children N] [--calls M] [--spawns K]

Opens a pool of N children, runs M ``noop`` calls from N concurrent callers, and prints
the per-job overhead, the jobs per second and the call latency; then, for comparison,
the cost of starting a bare Python per job (``trio.run_process([python, "-c", "pass"])``).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import trio

from scheduler_core.runtime import job_protocol
from scheduler_core.runtime.procpool import open_pool

CHILD = [sys.executable, "-m", "scheduler_core.command.child"]


async def bench_pool(children: int, calls: int) -> None:
    request = job_protocol.encode_request(job_protocol.Request("noop", {}, "b", 1))
    started = trio.current_time()
    async with open_pool(CHILD, children) as pool:
        ready = trio.current_time() - started
        for _ in range(min(200, calls)):  # warm up the children's code paths
            await pool.call(request, timeout=10)
        latencies: list[float] = []

        async def caller(count: int) -> None:
            for _ in range(count):
                before = trio.current_time()
                response = await pool.call(request, timeout=10)
                latencies.append(trio.current_time() - before)
                reply = job_protocol.decode_reply(response)
                assert (reply.ok, reply.result) == (True, None), reply

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(children):
                nursery.start_soon(caller, calls // children + (i < calls % children))
        elapsed = trio.current_time() - started
        stats = pool.statistics()
    latencies.sort()
    print(f"warm pool: {children} children, {calls} noop calls, {children} concurrent callers")
    print(f"  pool ready in            {ready * 1000:8.1f} ms ({children} children started)")
    print(f"  per-job overhead         {elapsed / calls * 1000:8.3f} ms (wall time / jobs)")
    print(f"  throughput               {calls / elapsed:8.0f} jobs/s")
    print(
        f"  call latency             {statistics.mean(latencies) * 1000:8.3f} ms mean, "
        f"{latencies[len(latencies) // 2] * 1000:.3f} p50, "
        f"{latencies[int(len(latencies) * 0.99)] * 1000:.3f} p99"
    )
    print(f"  spawned {stats.spawned}, killed {stats.killed}")


async def bench_spawn(samples: int) -> None:
    durations: list[float] = []
    for _ in range(samples):
        before = trio.current_time()
        await trio.run_process([sys.executable, "-c", "pass"])
        durations.append(trio.current_time() - before)
    print(f"process per job: trio.run_process([python, '-c', 'pass']) x {samples}")
    print(
        f"  per-job cost             {statistics.mean(durations) * 1000:8.3f} ms mean, "
        f"{statistics.median(durations) * 1000:.3f} median"
    )
    print(
        f"  throughput               {1 / statistics.mean(durations):8.0f} jobs/s (one at a time)"
    )


async def main(children: int, calls: int, spawns: int) -> None:
    await bench_pool(children, calls)
    await bench_spawn(spawns)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--spawns", type=int, default=30)
    args = parser.parse_args()
    trio.run(main, args.children, args.calls, args.spawns)
