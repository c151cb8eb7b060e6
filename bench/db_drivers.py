"""psycopg 3 under trio, three ways: throughput, cancellation and LISTEN/NOTIFY latency.

    .venv/bin/python bench/db_drivers.py [--dsn DSN] [--seconds S] [--warmup W]

Routes (docs/decisions/0001-psycopg-under-trio.md):

a. trio-native: ``runtime.db.Pool`` / ``TrioConnection`` (prepare_threshold default).
b. thread: sync ``psycopg.Connection`` objects, each query in ``trio.to_thread.run_sync``;
   pooled by ``psycopg_pool.ConnectionPool`` when that is importable, otherwise by a tiny
   trio-side pool (a ``trio.Semaphore`` and a list).
c. trio-asyncio: ``psycopg.AsyncConnection`` under ``trio_asyncio.open_loop()``, each call
   through ``trio_asyncio.aio_as_trio``. Skipped, with a note, when trio_asyncio is not
   importable (it is not a project dependency; use a throwaway venv:
   ``python3 -m venv /tmp/venv-bench-drivers && /tmp/venv-bench-drivers/bin/pip install
   -e . trio-asyncio``, then run this file with that venv's python).

Import order matters for route c: trio_asyncio must be imported before psycopg.
``psycopg.waiting`` does ``from asyncio import get_running_loop``; imported first, it
keeps asyncio's own function, which does not see trio_asyncio's loop, and every
connect/query then fails with "RuntimeError: no running event loop". This file imports
trio_asyncio first, checks the binding, and shows the failure in a subprocess.

Cells: ``SELECT 1`` per second with 1 task and with 16 tasks (pool of 16);
``UPDATE ... RETURNING`` per second with 16 tasks, each on its own row of a 16-row
scratch table (``bench_db_drivers``, dropped afterwards). Each cell runs ``--seconds``
after ``--warmup``. Then: a ``SELECT pg_sleep(10)`` cancelled after 0.2 s
(``trio.move_on_after``): how long until control returns, and is the connection usable;
and the median LISTEN/NOTIFY latency over 50 notifies (issue of NOTIFY to delivery in a
trio task). Prints a table and one JSON line.
"""

from __future__ import annotations

try:  # before psycopg, see the docstring
    import trio_asyncio
except ImportError:  # route c is skipped
    trio_asyncio = None

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import trio
from psycopg.rows import dict_row

from scheduler_core.runtime.db import Pool, TrioConnection, connect

try:
    import psycopg_pool
except ImportError:
    psycopg_pool = None

TASKS = 16
TABLE = "bench_db_drivers"
CHANNEL = "bench_db_drivers"
NOTIFIES = 50
NOTIFY_WARMUP = 5
SLEEP_SQL = "SELECT pg_sleep(10)"
CANCEL_AFTER = 0.2
UPDATE_SQL = f"UPDATE {TABLE} SET n = n + 1 WHERE id = %s RETURNING n"

Op = Callable[[int], Awaitable[None]]  # one query; the argument is the task's number


# -- the measuring loop, shared by the routes --------------------------------------------


async def rate(op: Op, tasks: int, warmup: float, seconds: float) -> float:
    """Run ``op`` in a loop in ``tasks`` tasks; completed ops per second after warm-up."""
    done = [0]
    stop = False

    async def loop(i: int) -> None:
        while not stop:
            await op(i)
            done[0] += 1

    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(loop, i)
        await trio.sleep(warmup)
        count0, t0 = done[0], trio.current_time()
        await trio.sleep(seconds)
        count1, t1 = done[0], trio.current_time()
        stop = True  # the tasks finish their current query and return
    return (count1 - count0) / (t1 - t0)


async def throughput(
    select_op: Op, update_op: Op, warmup: float, seconds: float
) -> dict[str, float]:
    return {
        "select1_1task": await rate(select_op, 1, warmup, seconds),
        "select1_16tasks": await rate(select_op, TASKS, warmup, seconds),
        "update_16tasks": await rate(update_op, TASKS, warmup, seconds),
    }


async def cancel_probe(
    run_sleep: Callable[[], Awaitable[None]], run_select1: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    """``SELECT pg_sleep(10)`` under ``move_on_after(0.2)``; then is ``SELECT 1`` fine?"""
    started = trio.current_time()
    with trio.move_on_after(CANCEL_AFTER) as scope:
        await run_sleep()
    elapsed = trio.current_time() - started
    try:
        with trio.fail_after(15):
            usable = await run_select1() == 1
        error = None
    except Exception as ex:
        usable, error = False, f"{type(ex).__name__}: {ex}"
    return {"seconds": elapsed, "cancelled": scope.cancelled_caught, "usable": usable,
            "error": error}


def _median_ms(latencies: list[float]) -> float:
    return statistics.median(latencies[NOTIFY_WARMUP:]) * 1000


# -- route a: trio-native ----------------------------------------------------------------


async def route_a(dsn: str, warmup: float, seconds: float) -> dict[str, Any]:
    pool = Pool(dsn, max_size=TASKS)
    try:

        async def select_op(_i: int) -> None:
            async with pool.connection() as conn:
                await (await conn.execute("SELECT 1")).fetchone()

        async def update_op(i: int) -> None:
            async with pool.connection() as conn:
                await (await conn.execute(UPDATE_SQL, (i,))).fetchone()

        result: dict[str, Any] = await throughput(select_op, update_op, warmup, seconds)

        async with pool.connection() as conn:

            async def sleep() -> None:
                await conn.execute(SLEEP_SQL)

            async def select1() -> Any:
                return (await (await conn.execute("SELECT 1 AS x")).fetchone())["x"]

            result["cancel"] = await cancel_probe(sleep, select1)
            result["cancel"]["closed_after"] = conn.closed
        result["notify_p50_ms"] = await notify_a(dsn)
        return result
    finally:
        pool.close()


async def notify_a(dsn: str) -> float:
    listener: TrioConnection = await connect(dsn)
    sender: TrioConnection = await connect(dsn)
    try:
        await listener.execute(f"LISTEN {CHANNEL}")
        received: list[float] = []
        arrived = trio.Event()

        async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            # aclosing: the generator holds conn.lock (a trio.Lock) and must release it
            # in this task, not in a finaliser later.
            async with contextlib.aclosing(listener.notifies()) as gen:
                async for _n in gen:
                    received.append(time.perf_counter())
                    arrived.set()
                    if len(received) == NOTIFIES + NOTIFY_WARMUP:
                        break

        latencies: list[float] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(listen)
            await trio.sleep(0.05)  # let the listener reach its first wait
            for i in range(NOTIFIES + NOTIFY_WARMUP):
                arrived = trio.Event()
                sent = time.perf_counter()
                await sender.execute(f"NOTIFY {CHANNEL}, '{i}'")
                with trio.fail_after(5):
                    await arrived.wait()
                latencies.append(received[i] - sent)
        return _median_ms(latencies)
    finally:
        listener.pgconn.finish()
        sender.pgconn.finish()


# -- route b: sync connections in threads ------------------------------------------------


class ThreadPool:
    """Sync connections used from trio, one ``to_thread.run_sync`` per query."""

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn = dsn
        self.size = size
        self.kind = "psycopg_pool.ConnectionPool" if psycopg_pool else "own (Semaphore + list)"
        self._slots = trio.Semaphore(size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._pool: Any = None

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row)

    async def open(self) -> None:
        if psycopg_pool is not None:
            self._pool = psycopg_pool.ConnectionPool(
                self.dsn, min_size=self.size, max_size=self.size, open=False,
                kwargs={"autocommit": True, "row_factory": dict_row})
            await trio.to_thread.run_sync(lambda: self._pool.open(wait=True))
        else:
            for _ in range(self.size):
                self._idle.append(await trio.to_thread.run_sync(self._connect))

    async def close(self) -> None:
        if self._pool is not None:
            await trio.to_thread.run_sync(self._pool.close)
        for conn in self._idle:
            await trio.to_thread.run_sync(conn.close)
        self._idle.clear()

    @contextlib.asynccontextmanager
    async def checkout(self) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
        """A ``call(fn, *args)`` that runs ``fn(conn, *args)`` in a thread."""
        async with self._slots:
            if self._pool is not None:

                async def call(fn: Callable[..., Any], *args: Any) -> Any:
                    def work() -> Any:
                        with self._pool.connection() as conn:
                            return fn(conn, *args)

                    return await trio.to_thread.run_sync(work)

                yield call
                return
            conn = self._idle.pop()
            try:

                async def call(fn: Callable[..., Any], *args: Any) -> Any:
                    return await trio.to_thread.run_sync(fn, conn, *args)

                yield call
            finally:
                self._idle.append(conn)


def _select1(conn: psycopg.Connection[Any]) -> Any:
    return conn.execute("SELECT 1 AS x").fetchone()["x"]  # type: ignore[index]


def _update(conn: psycopg.Connection[Any], i: int) -> Any:
    return conn.execute(UPDATE_SQL, (i,)).fetchone()


def _run_flagged(done: threading.Event, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    finally:
        done.set()


async def run_sync_cancel_on_server(conn: psycopg.Connection[Any], fn: Callable[..., Any],
                                    *args: Any) -> Any:
    """``to_thread.run_sync(fn, conn, ...)`` that, when trio cancels, cancels the query on
    the server and waits (shielded) for the thread to let go of the connection."""
    done = threading.Event()
    try:
        return await trio.to_thread.run_sync(_run_flagged, done, fn, conn, *args,
                                             abandon_on_cancel=True)
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(conn.cancel_safe)
            await trio.to_thread.run_sync(done.wait, 10.0)
        raise


async def route_b(dsn: str, warmup: float, seconds: float) -> dict[str, Any]:
    pool = ThreadPool(dsn, TASKS)
    await pool.open()
    try:

        async def select_op(_i: int) -> None:
            async with pool.checkout() as call:
                await call(_select1)

        async def update_op(i: int) -> None:
            async with pool.checkout() as call:
                await call(_update, i)

        result: dict[str, Any] = await throughput(select_op, update_op, warmup, seconds)
        result["pool"] = pool.kind

        # The cancel probes use a connection of their own (the pool may hide it).
        conn = await trio.to_thread.run_sync(pool._connect)
        try:

            async def sleep_plain() -> None:
                await trio.to_thread.run_sync(conn.execute, SLEEP_SQL)

            async def sleep_server_cancel() -> None:
                await run_sync_cancel_on_server(conn, lambda c: c.execute(SLEEP_SQL))

            async def select1() -> Any:
                return await trio.to_thread.run_sync(_select1, conn)

            result["cancel"] = await cancel_probe(sleep_plain, select1)
            result["cancel_server"] = await cancel_probe(sleep_server_cancel, select1)
        finally:
            await trio.to_thread.run_sync(conn.close)
        result["notify_p50_ms"] = await notify_b(dsn)
        return result
    finally:
        await pool.close()


async def notify_b(dsn: str) -> float:
    def open_conn() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, autocommit=True)

    listener = await trio.to_thread.run_sync(open_conn)
    sender = await trio.to_thread.run_sync(open_conn)
    try:
        await trio.to_thread.run_sync(listener.execute, f"LISTEN {CHANNEL}")
        received: list[float] = []
        arrived = trio.Event()

        def on_notify() -> None:  # runs in the trio thread
            received.append(time.perf_counter())
            arrived.set()

        def listen() -> None:  # runs in a worker thread for the whole test
            total = NOTIFIES + NOTIFY_WARMUP
            for _n in listener.notifies(stop_after=total, timeout=60):
                trio.from_thread.run_sync(on_notify)

        latencies: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, listen)
            await trio.sleep(0.05)
            for i in range(NOTIFIES + NOTIFY_WARMUP):
                arrived = trio.Event()
                sent = time.perf_counter()
                await trio.to_thread.run_sync(sender.execute, f"NOTIFY {CHANNEL}, '{i}'")
                with trio.fail_after(5):
                    await arrived.wait()
                latencies.append(received[i] - sent)
        return _median_ms(latencies)
    finally:
        await trio.to_thread.run_sync(listener.close)
        await trio.to_thread.run_sync(sender.close)


# -- route c: psycopg's asyncio code under trio-asyncio ----------------------------------


def import_order_ok() -> bool:
    """Did psycopg.waiting bind trio_asyncio's patched ``get_running_loop``?"""
    import psycopg.waiting

    return psycopg.waiting.get_running_loop is asyncio.get_running_loop


_TRAP_SNIPPET = """
import psycopg, trio_asyncio, trio
async def main():
    async with trio_asyncio.open_loop():
        c = await trio_asyncio.aio_as_trio(psycopg.AsyncConnection.connect)(DSN)
        await trio_asyncio.aio_as_trio(c.close)()
try:
    trio.run(main)
    print("no error")
except BaseException as ex:
    while isinstance(ex, BaseExceptionGroup):
        ex = ex.exceptions[0]
    print(f"{type(ex).__name__}: {ex}")
"""


async def show_import_trap(dsn: str) -> str:
    """Connect with psycopg imported before trio_asyncio, in a subprocess."""
    code = _TRAP_SNIPPET.replace("DSN", repr(dsn))
    proc = await trio.run_process([sys.executable, "-c", code], capture_stdout=True,
                                  capture_stderr=True, check=False)
    out = proc.stdout.decode().strip().splitlines()
    return out[-1] if out else proc.stderr.decode().strip()[-200:]


async def route_c(dsn: str, warmup: float, seconds: float) -> dict[str, Any]:
    assert trio_asyncio is not None
    aio = trio_asyncio.aio_as_trio
    result: dict[str, Any] = {}
    async with trio_asyncio.open_loop():

        async def open_conn() -> psycopg.AsyncConnection[Any]:
            return await aio(psycopg.AsyncConnection.connect)(
                dsn, autocommit=True, row_factory=dict_row)

        idle = [await open_conn() for _ in range(TASKS)]
        slots = trio.Semaphore(TASKS)

        async def a_select1(conn: psycopg.AsyncConnection[Any]) -> Any:
            return (await (await conn.execute("SELECT 1 AS x")).fetchone())["x"]

        async def a_update(conn: psycopg.AsyncConnection[Any], i: int) -> Any:
            return await (await conn.execute(UPDATE_SQL, (i,))).fetchone()

        async def with_conn(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
            async with slots:
                conn = idle.pop()
                try:
                    return await aio(fn)(conn, *args)
                finally:
                    idle.append(conn)

        async def select_op(_i: int) -> None:
            await with_conn(a_select1)

        async def update_op(i: int) -> None:
            await with_conn(a_update, i)

        try:
            result.update(await throughput(select_op, update_op, warmup, seconds))
            conn = idle[0]

            async def sleep() -> None:
                await aio(conn.execute)(SLEEP_SQL)

            async def select1() -> Any:
                return await aio(a_select1)(conn)

            result["cancel"] = await cancel_probe(sleep, select1)
            result["cancel"]["closed_after"] = conn.closed
            result["notify_p50_ms"] = await notify_c(open_conn)
        finally:
            for conn in idle:
                await aio(conn.close)()
    result["import_psycopg_first"] = await show_import_trap(dsn)
    return result


async def notify_c(open_conn: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> float:
    assert trio_asyncio is not None
    aio = trio_asyncio.aio_as_trio
    listener = await open_conn()
    sender = await open_conn()
    try:
        await aio(listener.execute)(f"LISTEN {CHANNEL}")
        received: list[float] = []
        arrived = trio.Event()

        async def listen() -> None:  # asyncio code; trio.Event.set is fine in this thread
            async with contextlib.aclosing(listener.notifies()) as gen:
                async for _n in gen:
                    received.append(time.perf_counter())
                    arrived.set()
                    if len(received) == NOTIFIES + NOTIFY_WARMUP:
                        break

        latencies: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(aio(listen))
            await trio.sleep(0.05)
            for i in range(NOTIFIES + NOTIFY_WARMUP):
                arrived = trio.Event()
                sent = time.perf_counter()
                await aio(sender.execute)(f"NOTIFY {CHANNEL}, '{i}'")
                with trio.fail_after(5):
                    await arrived.wait()
                latencies.append(received[i] - sent)
        return _median_ms(latencies)
    finally:
        await aio(listener.close)()
        await aio(sender.close)()


# -- setup, report -----------------------------------------------------------------------


def setup(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
        conn.execute(f"INSERT INTO {TABLE} (id) SELECT generate_series(0, {TASKS - 1})")
        info = {}
        for name in ("server_version", "synchronous_commit", "fsync", "max_connections"):
            info[name] = conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
        return info


def teardown(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")


def _cancel_cell(c: dict[str, Any] | None) -> str:
    if not c:
        return "-"
    return f"{c['seconds']:.2f} s, {'usable' if c['usable'] else 'NOT usable'}"


def print_table(results: dict[str, Any]) -> None:
    names = {"a": "a trio-native", "b": "b thread", "c": "c trio-asyncio"}
    header = (f"{'route':<16}{'SELECT 1 x1':>12}{'SELECT 1 x16':>14}{'UPDATE x16':>12}"
              f"  {'cancel pg_sleep(10) @0.2s':<28}{'NOTIFY p50':>11}")
    print(header)
    print("-" * len(header))
    for key, label in names.items():
        r = results.get(key)
        if r is None or "skipped" in r:
            print(f"{label:<16}  skipped: {r['skipped'] if r else 'not selected (--routes)'}")
            continue
        print(f"{label:<16}{r['select1_1task']:>12.0f}{r['select1_16tasks']:>14.0f}"
              f"{r['update_16tasks']:>12.0f}  {_cancel_cell(r.get('cancel')):<28}"
              f"{r['notify_p50_ms']:>8.2f} ms")
        if "cancel_server" in r:
            print(f"{'  + server cancel':<54}  {_cancel_cell(r['cancel_server']):<28}")
    print("(figures: round trips per second; cancel: time until control returns, then "
          "SELECT 1 on the same connection)")
    if "b" in results and "pool" in results["b"]:
        print(f"route b pool: {results['b']['pool']}")
    c = results.get("c", {})
    if "import_psycopg_first" in c:
        print(f"route c, psycopg imported before trio_asyncio: {c['import_psycopg_first']}")


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    routes: list[tuple[str, Callable[..., Awaitable[dict[str, Any]]]]] = [
        ("a", route_a), ("b", route_b), ("c", route_c)]
    for key, fn in routes:
        if key not in args.routes:
            continue
        if key == "c" and trio_asyncio is None:
            print("note: route c skipped: trio_asyncio is not importable "
                  "(pip install trio-asyncio in a throwaway venv)", flush=True)
            results[key] = {"skipped": "trio_asyncio not importable"}
            continue
        if key == "c" and not import_order_ok():
            print("note: route c skipped: psycopg was imported before trio_asyncio",
                  flush=True)
            results[key] = {"skipped": "psycopg imported before trio_asyncio"}
            continue
        print(f"route {key} ...", file=sys.stderr, flush=True)
        results[key] = await fn(args.dsn, args.warmup, args.seconds)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell, after warm-up")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--routes", default="abc", help="which of a, b, c to run")
    args = parser.parse_args()

    load_before = round(os.getloadavg()[0], 2)  # other work on the machine skews figures
    server = setup(args.dsn)
    try:
        results = trio.run(run_all, args)
    finally:
        teardown(args.dsn)
    env = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "psycopg": psycopg.__version__,
        "libpq": psycopg.pq.version(),
        "psycopg_impl": psycopg.pq.__impl__,
        "trio": trio.__version__,
        "trio_asyncio": getattr(trio_asyncio, "__version__", None),
        **server,
        "loadavg_1min_before": load_before,
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }
    print()
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    print(f"{args.seconds:g} s per cell after {args.warmup:g} s warm-up; {TASKS} tasks, "
          f"pool of {TASKS}")
    print_table(results)
    print(json.dumps({"bench": "db_drivers", "env": env, "seconds": args.seconds,
                      "results": results}, default=str))


if __name__ == "__main__":
    main()
