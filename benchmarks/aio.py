"""A2: W2 for asyncio: 64 tasks on a pool of 8.

Ours async (:class:`pip_postgres.AsyncPostgresConnection`) against a raw
:class:`psycopg_pool.AsyncConnectionPool` of the same size (target: at least 0.95), and
against our threaded pool (:class:`pip_postgres.PostgresConnection`) with 64 threads. Each
request is W2's: check out, ``SELECT 1``, commit, return. The async contenders run on one
event loop in a thread of its own (uvloop if installed), kept for the whole workload; the
rounds interleave the three cells.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from time import perf_counter
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from pip_postgres import AsyncPostgresConnection

from . import stats
from .contenders import AUTO_DECISIONS, SETTLE_LIMIT, SQL, OursSession
from .server import Target
from .workloads import (
    Log,
    Settings,
    Table,
    auto_note,
    fmt,
    fmt_spread,
    interleave,
    paired_ratio,
    ratio_cell,
)
from .workloads import _run_threads as run_threads

#: Tasks (and threads, for the threaded pool) in A2.
TASKS = 64

ASYNC_OURS = "async/ours"
ASYNC_RAW = "async/psycopg_pool"
THREADED_OURS = "threads/ours"
#: The target of issue 10: ours async ÷ raw ``AsyncConnectionPool``, requests/s, at least this.
TARGET_VS_RAW = 0.95

LABELS = {
    ASYNC_OURS: "pip_postgres AsyncPostgresConnection",
    ASYNC_RAW: "psycopg_pool AsyncConnectionPool",
    THREADED_OURS: f"pip_postgres PostgresConnection, {TASKS} threads",
}

T = TypeVar("T")
Request = Callable[[], Awaitable[None]]


class _Loop:
    """An event loop running in a thread of its own; uvloop's if installed."""

    def __init__(self) -> None:
        try:
            import uvloop
        except ImportError:
            self.loop = asyncio.new_event_loop()
            self.kind = "asyncio"
        else:
            self.loop = uvloop.new_event_loop()
            self.kind = "uvloop"
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def _run_tasks(request: Request, tasks: int, per_task: int) -> float:
    """Requests per second of ``tasks`` tasks making ``per_task`` requests each."""

    async def body() -> None:
        for _ in range(per_task):
            await request()

    gc.collect()
    start = perf_counter()
    await asyncio.gather(*(body() for _ in range(tasks)))
    return tasks * per_task / (perf_counter() - start)


def _per_worker(measure: Callable[[int], float], settings: Settings) -> int:
    """How many requests each task (or thread) makes for a block of ``settings.w2_block`` s."""
    each = 4
    while True:
        throughput = measure(each)
        elapsed = TASKS * each / throughput
        if elapsed >= settings.warmup / 4 or each >= 100_000:
            break
        each *= 4
    return max(4, round(each * settings.w2_block / elapsed))


@contextlib.contextmanager
def _contenders(loop: _Loop, target: Target, size: int) -> Iterator[dict[str, Request]]:
    ours = AsyncPostgresConnection()
    ours.configure(target.pip_config(max_pool_size=size, min_pool_size=size))
    raw: AsyncConnectionPool[Any] = AsyncConnectionPool(
        target.conninfo, min_size=size, max_size=size, name="bench-async-psycopg_pool", open=False
    )

    async def ours_request() -> None:
        async with ours.connection() as conn:
            await (await conn.execute(SQL)).fetchone()

    async def raw_request() -> None:
        async with raw.connection() as conn:
            await (await conn.execute(SQL)).fetchone()

    async def open_() -> None:
        await ours.open(None)
        await raw.open(wait=True, timeout=30)
        pool = ours.get_connection()
        assert pool is not None
        deadline = perf_counter() + SETTLE_LIMIT  # as contenders.settle(), awaiting
        while pool.begin_ahead.deciding and perf_counter() < deadline:
            await ours_request()

    async def close() -> None:
        pool = ours.get_connection()
        if pool is not None:
            AUTO_DECISIONS.append(pool.begin_ahead)
        await ours.close(None)
        await raw.close()

    loop.run(open_())
    try:
        yield {ASYNC_OURS: ours_request, ASYNC_RAW: raw_request}
    finally:
        loop.run(close())


def a2(target: Target, settings: Settings, log: Log) -> Table:
    """A2: W2 as 64 tasks on a pool of 8, ours async vs raw, and vs our threaded pool."""
    size = settings.pool_size
    loop = _Loop()
    AUTO_DECISIONS.clear()
    threaded = OursSession(target, size, autocommit=False)
    try:
        with _contenders(loop, target, size) as requests:
            blocks: dict[str, Callable[[], float]] = {}
            for name, request in requests.items():

                def measure(each: int, request: Request = request) -> float:
                    return loop.run(_run_tasks(request, TASKS, each))

                blocks[name] = _block(measure, _per_worker(measure, settings))

            def measure_threads(each: int) -> float:
                return run_threads(threaded, TASKS, each).throughput

            blocks[THREADED_OURS] = _block(measure_threads, _per_worker(measure_threads, settings))
            log(f"A2: {len(blocks)} cells on {loop.kind}, {settings.a2_rounds} rounds")
            series = interleave(blocks, settings.a2_rounds, log, "A2")
    finally:
        threaded.close()
        loop.stop()
    table = Table(
        "A2",
        f"A2: {TASKS} asyncio tasks on a pool of {size}",
        f"{TASKS} tasks on one event loop ({loop.kind}) make requests as in W2 (checkout, "
        f"SELECT 1, commit, return) on one pool of {size}; the threaded pool runs the same "
        f"requests from {TASKS} threads. Requests/s, the median over the rounds.",
        ["requests/s", "÷ ours"],
        series=series,
    )
    for name in (ASYNC_OURS, ASYNC_RAW, THREADED_OURS):
        table.rows.append(
            [
                LABELS[name],
                f"{fmt(stats.median(series[name]), 0)} {fmt_spread(series[name])}",
                ratio_cell(name, series, ASYNC_OURS),
            ]
        )
    vs_raw = paired_ratio(series[ASYNC_OURS], series[ASYNC_RAW])
    vs_threads = paired_ratio(series[ASYNC_OURS], series[THREADED_OURS])
    table.notes.append(
        f"ours async ÷ psycopg_pool AsyncConnectionPool: {vs_raw:.3f} (target: at least "
        f"{TARGET_VS_RAW:.2f}, {'met' if vs_raw >= TARGET_VS_RAW else 'missed'})"
    )
    table.notes.append(f"ours async ÷ ours threaded ({TASKS} threads): {vs_threads:.3f}")
    table.notes.append(auto_note(AUTO_DECISIONS))
    return table


def _block(measure: Callable[[int], float], each: int) -> Callable[[], float]:
    return lambda: measure(each)
