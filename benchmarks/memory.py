"""Client memory per pooled connection, measured in fresh child processes.

For each contender and each of two pool sizes, a child process (``python -m
benchmarks.memory KEY SIZE``) opens one connection of that kind first (imports, libraries,
first allocations), then opens a pool of SIZE connections, checks all of them out at once and
runs ``SELECT 1`` on each. It reports how much more heap the process holds (glibc
``mallinfo2()``: bytes in use, with ``PYTHONMALLOC=malloc`` so that Python objects are malloc
blocks too, and libpq's buffers are counted as well) and how much of it is Python memory
(``tracemalloc``, in a second pass). RSS is not used: it counts pages touched, which depends
on which thread's malloc arena served the connection more than on the connection. The
per-connection cost is the difference between the two sizes divided by the difference in
connections: the pool's fixed cost (its threads, its objects) cancels out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import math
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from . import stats
from .contenders import CONTENDERS, OURS
from .server import Target
from .workloads import Log, Settings, Table, fmt, ratio_cell, rotated

KEYS = ["held", "psycopg_pool", OURS, "published"]


def _open(key: str, target: Target, size: int) -> Callable[[], None]:
    """Open ``size`` connections of kind ``key``, all checked out and used; return the closer."""
    if key == "held":
        conns = [psycopg.connect(target.conninfo) for _ in range(size)]
        for conn in conns:
            conn.execute("SELECT 1").fetchone()
            conn.commit()

        def close_all() -> None:
            for conn in conns:
                conn.close()

        return close_all
    session = CONTENDERS[key].open(target, size, False)
    release = session.hold(size)

    def close() -> None:
        release()
        session.close()

    return close


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _heap_function() -> Callable[[], float] | None:
    """Bytes in use in the C heap (all malloc arenas and mmapped blocks), if glibc says."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    libc = ctypes.CDLL(name)
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2

    def heap() -> float:
        info = mallinfo2()
        return float(info.uordblks + info.hblkhd)

    return heap


def child(key: str, size: int) -> dict[str, float]:
    """In the child process: heap, Python-heap and RSS growth for ``size`` connections."""
    target = Target.from_env()
    heap = _heap_function() or (lambda: math.nan)
    _open(key, target, 1)()  # warm-up: imports, libpq, first allocations
    gc.collect()
    heap_before = heap()
    close = _open(key, target, size)
    gc.collect()
    heap_after = heap()
    close()
    gc.collect()
    tracemalloc.start()
    python_before = tracemalloc.get_traced_memory()[0]
    close = _open(key, target, size)
    gc.collect()
    python_after = tracemalloc.get_traced_memory()[0]
    close()
    tracemalloc.stop()
    return {"heap": heap_after - heap_before, "python": float(python_after - python_before)}


def _measure(key: str, size: int, target: Target) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", key, str(size)],
        env={**target.to_env(), "PYTHONMALLOC": "malloc"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory child {key} {size} failed:\n{result.stderr.strip()}")
    values: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def memory(target: Target, settings: Settings, log: Log) -> Table:
    """The memory table: KiB per connection of heap, of Python heap and of RSS."""
    small, large = settings.memory_sizes
    measures = ("heap", "python")
    per: dict[str, dict[str, list[float]]] = {m: {key: [] for key in KEYS} for m in measures}
    for number in range(settings.memory_rounds):
        for key in rotated(KEYS, number):
            low, high = _measure(key, small, target), _measure(key, large, target)
            for m in measures:
                per[m][key].append((high[m] - low[m]) / (large - small) / 1024)
        log(f"  memory: round {number + 1}/{settings.memory_rounds}")
    table = Table(
        "memory",
        "Client memory per pooled connection",
        f"Growth of the client process with {large} connections minus that with {small}, "
        f"divided by {large - small}: all connections checked out at once, each having run "
        "``SELECT 1``, in a fresh process per measure (Python's allocator set to ``malloc``). "
        "*Heap* is what glibc's ``mallinfo2()`` counts in use: libpq's buffers and Python's "
        "objects alike; *Python* is the part of it that ``tracemalloc`` sees.",
        ["heap KiB/conn", "÷ ours", "Python KiB/conn"],
        series=per["heap"],
    )
    for key in KEYS:
        label = "psycopg connections, no pool" if key == "held" else CONTENDERS[key].label
        table.rows.append(
            [
                label,
                fmt(stats.median(per["heap"][key])),
                ratio_cell(key, per["heap"], OURS),
                fmt(stats.median(per["python"][key])),
            ]
        )
    table.notes.append(
        "The published component's connections are psycopg2 connections; the others are "
        "psycopg 3 connections. Medians over "
        f"{settings.memory_rounds} round(s)."
    )
    return table


def main(argv: Sequence[str]) -> int:
    """``python -m benchmarks.memory KEY SIZE``: print the child's measure as JSON."""
    key, size = argv[0], int(argv[1])
    values: dict[str, Any] = child(key, size)
    print(json.dumps(values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
