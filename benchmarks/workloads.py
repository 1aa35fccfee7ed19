"""The workloads W1 to W6, each run as interleaved rounds.

A *cell* is one contender in one variant (a mode, a thread count). Every round runs one block
of every cell, in an order rotated by one cell per round, so that the machine's drift hits all
contenders alike. A table shows, per cell, the median over the rounds, and the median over the
rounds of the ratio of the contender's block to ours *in the same round*.
"""

from __future__ import annotations

import gc
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import psycopg

from pip_postgres.begin import TRIAL_LIMIT, BeginAhead
from pip_postgres.embedded import EmbeddedPostgres

from . import stats
from .contenders import (
    AUTO_DECISIONS,
    CONTENDERS,
    OURS,
    OURS_BEGIN_ALWAYS,
    OURS_BEGIN_NEVER,
    OURS_OTHER,
    SQL,
    Session,
)
from .server import Server, Target


@dataclass(frozen=True)
class Settings:
    """How long to measure: rounds per workload and the length of one block."""

    pool_size: int = 8
    #: The thread counts of W2.
    threads: tuple[int, ...] = (1, 8, 16, 64)
    warmup: float = 0.4
    w1_rounds: int = 31
    w1_block: float = 0.1
    #: W2's rounds: as many as A2's, since not pinned its ratio with 8 threads was
    #: 0.91, 0.93 and 0.73 in three full runs with 15 (a block's noise there: ±15 to ±33 %).
    w2_rounds: int = 31
    w2_block: float = 0.25
    w3_rounds: int = 15
    w3_block: float = 0.25
    w4_rounds: int = 11
    w5_rounds: int = 3
    w5_idle: float = 2.0
    w6_rounds: int = 15
    #: A2's rounds (its blocks are W2's): more than W2's, since its ratio of two nearly equal
    #: pools swung by ±8 % from run to run with 15.
    a2_rounds: int = 31
    w6_block: float = 0.1
    #: Rows of W6's table.
    w6_rows: int = 100_000
    memory_rounds: int = 5
    memory_sizes: tuple[int, int] = (8, 40)


FULL = Settings()
QUICK = Settings(
    warmup=0.1,
    w1_rounds=3,
    w1_block=0.08,
    w2_rounds=2,
    w2_block=0.1,
    w3_rounds=5,
    w3_block=0.05,
    w4_rounds=2,
    w5_rounds=1,
    w6_rounds=3,
    a2_rounds=2,
    w6_block=0.05,
    memory_rounds=1,
    memory_sizes=(4, 12),
)


@dataclass
class Table:
    """One table of the report: a header, rows of formatted cells, and notes."""

    id: str
    title: str
    what: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Per-round values by cell name ("variant/contender"), for the targets.
    series: dict[str, list[float]] = field(default_factory=dict)
    #: The key of the placement it was measured in (see :class:`.server.Placement`); empty
    #: for the workloads run once.
    placement: str = ""


Log = Callable[[str], None]


def rotated(items: Sequence[str], shift: int) -> list[str]:
    """``items`` rotated left by ``shift``."""
    k = shift % len(items) if items else 0
    return [*items[k:], *items[:k]]


def paired_ratio(values: Sequence[float], ours: Sequence[float]) -> float:
    """Median over the rounds of ``values[r] / ours[r]``."""
    return stats.median([a / b for a, b in zip(values, ours, strict=True) if b])


def interleave(
    blocks: dict[str, Callable[[], float]], rounds: int, log: Log, what: str
) -> dict[str, list[float]]:
    """Run every block once per round, in a rotated order; the values by cell name."""
    names = list(blocks)
    values: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        for name in rotated(names, number):
            values[name].append(blocks[name]())
        log(f"  {what}: round {number + 1}/{rounds}")
    return values


def time_block(op: Callable[[], None], count: int) -> float:
    """Seconds per call of ``op`` over ``count`` calls (the mean)."""
    gc.collect()
    start = perf_counter()
    for _ in range(count):
        op()
    return (perf_counter() - start) / count


def median_block(op: Callable[[], None], count: int, pause: float = 0.0) -> float:
    """The median time of one call of ``op``, over ``count`` calls timed one by one.

    :param pause: seconds to sleep before each call, untimed; default none.
    """
    gc.collect()
    times = [0.0] * count
    clock = perf_counter
    for index in range(count):
        if pause:
            time.sleep(pause)
        start = clock()
        op()
        times[index] = clock() - start
    return stats.median(times)


def calibrate(op: Callable[[], None], warmup: float, block: float, least: int = 5) -> int:
    """Warm ``op`` up for ``warmup`` s; return how many calls make a block of ``block`` s."""
    calls, start = 0, perf_counter()
    while calls < 3 or perf_counter() - start < warmup:
        op()
        calls += 1
    each = (perf_counter() - start) / calls
    return max(least, round(block / each))


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table: ``inf`` as a dash, large ones without decimals."""
    if math.isinf(value) or math.isnan(value):
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_spread(values: Sequence[float]) -> str:
    """``±x %``: half the interquartile range over the rounds, relative to the median."""
    return f"±{100 * stats.relative_spread(values):.1f} %"


def ratio_cell(name: str, series: dict[str, list[float]], ours: str) -> str:
    """The ratio column: ``1.00`` for ours, else the median paired ratio."""
    if name == ours:
        return "1.00"
    value = paired_ratio(series[name], series[ours])
    return fmt(value, 2 if abs(value) < 10 else 1)


# -- W1 and W3: one thread --------------------------------------------------------------------


@contextmanager
def open_sessions(
    target: Target, size: int, cells: dict[str, tuple[str, bool]]
) -> Iterator[dict[str, Session]]:
    """Open a session per cell (name: (contender key, autocommit)); close them all on exit."""
    sessions: dict[str, Session] = {}
    try:
        for name, (key, autocommit) in cells.items():
            sessions[name] = CONTENDERS[key].open(target, size, autocommit)
        yield sessions
    finally:
        for session in sessions.values():
            session.close()


def timed_cells(
    target: Target,
    settings: Settings,
    log: Log,
    label: str,
    cells: dict[str, tuple[str, bool]],
    operation: str,
    block: Callable[[Callable[[], None], int], Callable[[], float]],
    block_seconds: float,
    rounds: int,
) -> dict[str, list[float]]:
    """Time one operation (``request`` or ``checkout``) of every cell in interleaved rounds.

    :return: per cell, the block values of the rounds, in µs.
    """
    with open_sessions(target, settings.pool_size, cells) as sessions:
        blocks = {}
        for name, session in sessions.items():
            op = getattr(session, operation)
            blocks[name] = block(op, calibrate(op, settings.warmup, block_seconds))
        log(f"{label}: {len(blocks)} cells, {rounds} rounds")
        series = interleave(blocks, rounds, log, label)
    return {name: [v * 1e6 for v in values] for name, values in series.items()}


#: W1's contenders in each mode: the pipelines save nothing in autocommit mode.
W1_KEYS = {
    "transactional": ["held", "held-pipeline", "psycopg_pool", OURS, OURS_OTHER,
                      OURS_BEGIN_ALWAYS, OURS_BEGIN_NEVER, "published", "new"],
    "autocommit": ["held", "psycopg_pool", OURS, OURS_OTHER, "published", "new"],
}  # fmt: skip


def w1(target: Target, settings: Settings, log: Log) -> Table:
    """W1: one thread, checkout + ``SELECT 1`` + return, transactional and autocommit."""
    modes = {"transactional": False, "autocommit": True}
    cells = {
        f"{mode}/{key}": (key, autocommit)
        for mode, autocommit in modes.items()
        for key in W1_KEYS[mode]
    }
    AUTO_DECISIONS.clear()
    series = timed_cells(
        target, settings, log, "W1", cells, "request", _median_block, settings.w1_block,
        settings.w1_rounds,
    )  # fmt: skip
    table = Table(
        "W1",
        "W1: one thread, checkout + SELECT 1 + return",
        "One thread makes requests one after the other, each a checkout, ``SELECT 1`` with "
        "its row read, and the return of the connection; psycopg's default transactional "
        "mode (the request commits) and autocommit mode. Pools of 8. Each request is timed "
        "on its own; a block's value is its median request, so that a burst of load on the "
        "machine moves it less than it moves a mean.",
        ["transactional µs/request", "÷ ours", "autocommit µs/request", "÷ ours"],
        series=series,
    )
    for key in W1_KEYS["transactional"]:
        table.rows.append(
            [CONTENDERS[key].label, *mode_cells(series, "transactional", key),
             *mode_cells(series, "autocommit", key)]
        )  # fmt: skip
    if AUTO_DECISIONS:
        table.notes.append(auto_note(AUTO_DECISIONS))
    return table


def auto_note(decisions: Sequence[BeginAhead]) -> str:
    """What ``options.begin_with_statement`` = ``auto`` decided in this table's pools."""
    return (
        "Transactional, ``options.begin_with_statement`` = ``auto`` (the default) decided, in "
        "each of this table's pools of ours that used it: "
        f"{'; '.join(map(decision_text, decisions))}. Each made requests, one at a time, "
        "until its trial had decided, before anything was timed: a trial times one first "
        "statement per 10 ms at most, and would otherwise run through most rounds (a service "
        "is past it within its first seconds)."
    )


def decision_text(decision: BeginAhead) -> str:
    """What one pool's ``auto`` decided, and on what medians, as the notes say it."""
    if decision.deciding:
        return "still deciding (untimed statements take psycopg's way)"
    if decision.medians is None:
        return (
            "``BEGIN`` on its own (no trial: the pool was never alone in its first "
            f"{TRIAL_LIMIT:,} first statements)"
        )
    together, alone = (fmt(m * 1e6, 1) for m in decision.medians)
    said = "on its own"
    if decision.on:
        said = "with the statement" + ("" if decision.busy_too else " when alone")
    return f"``BEGIN`` {said} (first statement {together} µs with it, {alone} µs without)"


def mode_cells(series: dict[str, list[float]], mode: str, key: str) -> list[str]:
    """The value (median and spread) and the ratio to ours of cell ``mode/key``, or dashes."""
    name = f"{mode}/{key}"
    if name not in series:
        return ["—", "—"]
    values = series[name]
    return [
        f"{fmt(stats.median(values))} {fmt_spread(values)}",
        ratio_cell(name, series, f"{mode}/{OURS}"),
    ]


#: W3's pause before each checkout of its second column, in seconds: the thread sleeps and its
#: CPU idles meanwhile, as it does while a request waits for the server.
W3_PAUSE = 100e-6


def w3(target: Target, settings: Settings, log: Log) -> Table:
    """W3: checkout + return with no query: the pool's own overhead, in a tight loop and
    after a pause (:data:`W3_PAUSE`)."""
    keys = ["psycopg_pool", OURS, "published", "new"]
    cells = {key: (key, False) for key in keys}
    series = timed_cells(
        target, settings, log, "W3", cells, "checkout", _block, settings.w3_block,
        settings.w3_rounds,
    )  # fmt: skip
    paused = timed_cells(
        target, settings, log, "W3 after a pause", cells, "checkout",
        _paused_block(settings.w3_block), settings.w3_block, settings.w3_rounds,
    )  # fmt: skip
    series.update({f"paused/{key}": values for key, values in paused.items()})
    table = Table(
        "W3",
        "W3: checkout + return, no query",
        "One thread checks a connection out and returns it, with no query: what the pool "
        "itself costs. For the psycopg_pool and ours, the ``with`` block as in W1 (nothing to "
        "commit: no round trip); for the published component ``putconn(getconn())``; without "
        "a pool, ``psycopg.connect(conninfo).close()``. A held connection has no checkout. "
        "First in a tight loop (the mean of a block); then each checkout timed on its own "
        f"after the thread slept {fmt(W3_PAUSE * 1e6, 0)} µs, untimed (the median of a "
        "block): a request's checkout and return come after its thread waited, for the "
        "server or for work, and its CPU may have idled or run other processes meanwhile, "
        "so that what the pool touches is no longer in the CPU's caches. The second figure "
        "is the one a request pays (compare W1's pools with its held connection).",
        ["µs/checkout", "÷ ours", "after a pause: µs/checkout", "÷ ours"],
        series=series,
    )
    for key in keys:
        values = series[key]
        table.rows.append(
            [
                CONTENDERS[key].label,
                f"{fmt(stats.median(values), 2)} {fmt_spread(values)}",
                ratio_cell(key, series, OURS),
                *mode_cells(series, "paused", key),
            ]
        )
    return table


def _paused_block(
    block_seconds: float,
) -> Callable[[Callable[[], None], int], Callable[[], float]]:
    """W3's second column: a block of ``op`` timed call by call, each after a pause.

    :param block_seconds: about how long a block lasts, pauses included.
    :return: a block maker as :func:`timed_cells` takes it; its ``count`` (calls in a block
        without pauses) is scaled down to the calls that fit with a pause each.
    """
    pause = median_block(lambda: time.sleep(W3_PAUSE), 20)  # a sleep lasts longer than asked

    def make(op: Callable[[], None], count: int) -> Callable[[], float]:
        calls = max(5, round(block_seconds / (block_seconds / count + pause)))
        return lambda: median_block(op, calls, W3_PAUSE)

    return make


def _block(op: Callable[[], None], count: int) -> Callable[[], float]:
    return lambda: time_block(op, count)


def _median_block(op: Callable[[], None], count: int) -> Callable[[], float]:
    return lambda: median_block(op, count)


# -- W2: 16 threads on a pool of 8 ------------------------------------------------------------


@dataclass
class _Concurrent:
    throughput: float
    waits: list[float]
    refused: int
    attempts: int


def _run_threads(session: Session, threads: int, per_thread: int) -> _Concurrent:
    workers = [session.worker(index) for index in range(threads)]
    waits: list[list[float]] = [[] for _ in range(threads)]
    refused = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def body(index: int) -> None:
        run, mine = workers[index], waits[index]
        barrier.wait()
        try:
            for _ in range(per_thread):
                waited = run()
                if waited is None:
                    refused[index] += 1
                else:
                    mine.append(waited)
        except BaseException as error:
            errors.append(error)

    pool = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    gc.collect()
    barrier.wait()
    start = perf_counter()
    for thread in pool:
        thread.join()
    elapsed = perf_counter() - start
    if errors:
        raise errors[0]
    flat = [w for mine in waits for w in mine]
    return _Concurrent(len(flat) / elapsed, flat, sum(refused), threads * per_thread)


#: W2's contenders: no new connection per request (50 times slower, it says nothing here).
W2_KEYS = ["held", "psycopg_pool", OURS, OURS_OTHER, "published"]


def w2(target: Target, settings: Settings, log: Log) -> Table:
    """W2: 1, 8, 16 and 64 threads on a pool of 8: throughput, and what it cost in waits."""
    size = settings.pool_size
    results: dict[str, list[_Concurrent]] = {}
    decided: list[str] = []
    same_cpu: dict[str, float] = {}  # (left empty where /proc cannot tell)
    for threads in settings.threads:
        # One interleaving per thread count, so that no more connections are open at once
        # than one count needs (64 held connections and four pools).
        blocks: dict[str, Callable[[], float]] = {}
        named = {f"{threads}/{key}": (key, False) for key in W2_KEYS}
        AUTO_DECISIONS.clear()
        with open_sessions(target, size, named) as sessions:
            for name, session in sessions.items():
                per_thread = _calibrate_threads(session, threads, settings)
                results[name] = []
                blocks[name] = _concurrent_block(session, threads, per_thread, results[name])
            label = f"W2 {threads} thread(s)"
            log(f"{label}: {len(blocks)} cells, {settings.w2_rounds} rounds")
            interleave(blocks, settings.w2_rounds, log, label)
            if threads == 1:
                same_cpu = same_cpu_shares(sessions)
        # (the sessions are closed: each pool of ours has said what it decided)
        decided.append(f"at {threads}, {'; '.join(map(decision_text, AUTO_DECISIONS))}")
    series = {name: [r.throughput for r in rounds] for name, rounds in results.items()}
    columns = []
    for threads in settings.threads:
        columns += [f"{threads} thread{'s' if threads > 1 else ''}: requests/s", "÷ ours"]
    table = Table(
        "W2",
        f"W2: 1 to {max(settings.threads)} threads on a pool of {size}",
        "Each thread makes requests as in W1 (transactional), as fast as it can, on one "
        f"shared pool of {size}; requests/s counts the requests that succeeded. With more "
        "threads than connections, threads queue for a connection, and the pool's queue is "
        "what is measured. The held connections are one connection per thread, no pool: a "
        "floor with no waiting, and as many server processes as threads. "
        f"pip-services4-postgres cannot serve more threads than its {size} connections: its "
        "psycopg2 pool does not wait when all its connections are out, ``getconn()`` raises "
        "``PoolError`` (*connection pool exhausted*), which its thread counts as refused "
        "before it goes on with its next request. Its requests/s beyond "
        f"{size} threads are therefore not comparable: an application would have to retry "
        "or fail each refused request. Its pool also keeps one idle connection only: a "
        "connection returned while another one is idle is closed, and a later checkout "
        "connects anew, how often depending on the threads' timing.",
        columns,
        series=series,
    )
    for key in W2_KEYS:
        row = [CONTENDERS[key].label]
        for threads in settings.threads:
            name = f"{threads}/{key}"
            row += [
                f"{fmt(stats.median(series[name]), 0)} {fmt_spread(series[name])}",
                ratio_cell(name, series, f"{threads}/{OURS}"),
            ]
        table.rows.append(row)
    waits, refused = [], []
    for threads in settings.threads:
        p99 = [
            fmt(stats.median([_pct(r.waits, 99) for r in results[f"{threads}/{key}"]]) * 1e6)
            for key in ("psycopg_pool", OURS)
        ]
        waits.append(f"{p99[0]} and {p99[1]} at {threads}")
        rounds = results[f"{threads}/published"]
        share = sum(r.refused for r in rounds) / max(1, sum(r.attempts for r in rounds))
        refused.append(f"{100 * share:.0f} % at {threads}")
    table.notes.append(
        "Checkout wait, p99 within a round (median over the rounds), psycopg_pool and ours, "
        f"in µs, by thread count: {'; '.join(waits)}. Requests pip-services4-postgres "
        f"refused: {', '.join(refused)}."
    )
    if same_cpu:
        shares = ", ".join(
            f"{CONTENDERS[key].label} {100 * share:.0f} %" for key, share in same_cpu.items()
        )
        table.notes.append(
            f"One thread, after the rounds ({SAME_CPU_SAMPLES} requests each, untimed): the "
            "server process that answered had last run on the client's own CPU for "
            f"{shares} of the requests. On the same CPU the answer needs no wake-up of "
            "another CPU; see *Order of idle connections* below."
        )
    table.notes.append(
        "``options.begin_with_statement`` = ``auto`` (the default) decided, in the pools of "
        "ours (the default idle order, then the other), by thread count (a trial times only "
        f"checkouts that are alone in their pool): {'. '.join(decided)}."
    )
    return table


#: The pools whose server processes :func:`same_cpu_share` looks at, and how many requests.
SAME_CPU_KEYS = ["psycopg_pool", OURS, OURS_OTHER]
SAME_CPU_SAMPLES = 400


def same_cpu_shares(sessions: dict[str, Session]) -> dict[str, float]:
    """:func:`same_cpu_share` of each of :data:`SAME_CPU_KEYS` at one thread; empty where
    ``/proc`` cannot tell.

    :param sessions: W2's open sessions at one thread, by cell name (``1/<key>``).
    """
    shares = {}
    for key in SAME_CPU_KEYS:
        checkouts = sessions[f"1/{key}"].checkouts()
        assert checkouts is not None
        share = same_cpu_share(checkouts, SAME_CPU_SAMPLES)
        if share is None:
            return {}
        shares[key] = share
    return shares


def _last_cpu(stat: Path) -> int:
    """The CPU a process or thread last ran on: field 39 of its ``/proc`` ``stat`` file."""
    return int(stat.read_text().rsplit(")", 1)[1].split()[36])


def same_cpu_share(
    checkouts: Callable[[], AbstractContextManager[Any]], requests: int
) -> float | None:
    """The share of ``requests`` W2 requests whose server process last ran on our CPU.

    Each request checks out, runs ``SELECT 1`` and, before it returns the connection, reads
    which CPU its server process last ran on (it has just answered) and which CPU this
    thread runs on (Linux ``/proc``). Untimed: reading the files costs more than a request.

    :return: the share, 0 to 1; ``None`` where ``/proc`` cannot tell (not Linux).
    """
    own = Path("/proc/thread-self/stat")
    same = 0
    try:
        for _ in range(requests):
            with checkouts() as conn:
                conn.execute(SQL).fetchone()
                server = Path(f"/proc/{conn.info.backend_pid}/stat")
                same += _last_cpu(server) == _last_cpu(own)
    except (OSError, ValueError, IndexError):
        return None
    return same / requests


def _pct(values: Sequence[float], q: float) -> float:
    return stats.percentile(values, q) if values else math.nan


def _concurrent_block(
    session: Session, threads: int, per_thread: int, sink: list[_Concurrent]
) -> Callable[[], float]:
    def block() -> float:
        result = _run_threads(session, threads, per_thread)
        sink.append(result)
        return result.throughput

    return block


def _calibrate_threads(session: Session, threads: int, settings: Settings) -> int:
    per_thread = 4
    while True:
        start = perf_counter()
        _run_threads(session, threads, per_thread)
        elapsed = perf_counter() - start
        if elapsed >= settings.warmup / 4 or per_thread >= 100_000:
            break
        per_thread *= 4
    return max(4, round(per_thread * settings.w2_block / elapsed))


# -- W4: cold open to the first query answered ------------------------------------------------


def w4(target: Target, settings: Settings, log: Log) -> Table:
    """W4: from nothing to the first ``SELECT 1`` answered (open not waited for if optional)."""
    size = settings.pool_size
    variants: dict[str, tuple[str, dict[str, int | bool]]] = {
        "held": ("held", {}),
        "psycopg_pool": ("psycopg_pool", {"wait": False}),
        OURS: (OURS, {}),
        "ours-min1": (OURS, {"min_size": 1}),
        "published": ("published", {}),
    }
    labels = {name: CONTENDERS[key].label for name, (key, _) in variants.items()}
    labels["ours-min1"] = "pip_postgres, min_pool_size=1"

    def cold(name: str) -> float:
        key, kwargs = variants[name]
        gc.collect()
        start = perf_counter()
        session = CONTENDERS[key].open(target, size, False, **kwargs)
        try:
            session.request()
            return perf_counter() - start
        finally:
            session.close()

    for name in variants:  # warm-up: imports, first connections
        cold(name)
    blocks: dict[str, Callable[[], float]] = {
        name: (lambda name=name: cold(name))  # type: ignore[misc]
        for name in variants
    }
    log(f"W4: {len(blocks)} cells, {settings.w4_rounds} rounds")
    series = interleave(blocks, settings.w4_rounds, log, "W4")
    series = {name: [v * 1e3 for v in values] for name, values in series.items()}
    table = Table(
        "W4",
        "W4: cold open to the first query answered",
        "From nothing to the first ``SELECT 1`` answered: connect (held connection); "
        "``ConnectionPool(..., open=True)`` then a checkout, which waits for the first "
        "connection only; ``configure()`` + ``open()`` then a checkout (ours proves the "
        "server with a first connection, then waits until the pool holds ``min_pool_size`` "
        "connections); the published ``configure()`` + ``open()`` (one connection and a "
        "``SET``) then a checkout. Pools of 8, closed after each measure (not timed).",
        ["ms", "÷ ours"],
        series=series,
    )
    for name in variants:
        values = series[name]
        table.rows.append(
            [labels[name], f"{fmt(stats.median(values), 2)} {fmt_spread(values)}",
             ratio_cell(name, series, OURS)]
        )  # fmt: skip
    return table


# -- W5: server restart to the first successful checkout --------------------------------------

#: How long W5 waits for a contender to recover before it gives up, in seconds.
RECOVERY_LIMIT = 30.0


def w5(
    server: Server,
    target: Target,
    settings: Settings,
    log: Log,
    after_restart: Callable[[], object] = lambda: None,
) -> Table:
    """W5: from a server restart to the first successful request, and the errors before it."""
    keys = ["held", "psycopg_pool", OURS, "published", "new"]
    idle = settings.w5_idle
    variants = {"busy": 0.05, "idle": idle}
    table = Table(
        "W5",
        "W5: server restart to the first successful checkout",
        "A warm session (pool open, requests made) sees the server restart (``pg_ctl stop "
        "-m fast`` then ``start``: the server closes every connection), either 50 ms after "
        f"its last request (*busy*) or {idle:g} s after it (*idle*). From the moment the "
        "server accepts connections again, the application retries its request (checkout + "
        "``SELECT 1`` + return) at once after each error until one succeeds. The held "
        "connection reconnects after an error. One restart per contender and variant per "
        "round.",
        [
            "busy: ms to success",
            "÷ ours",
            "errors",
            f"idle {idle:g} s: ms to success",
            "÷ ours",
            "errors",
        ],
    )
    if not isinstance(server, EmbeddedPostgres):
        table.notes.append(
            "Skipped: the server is an existing one (``PIP_POSTGRES_TEST_URI``), which the "
            "benchmark cannot restart."
        )
        return table
    restart = server.restart
    errors: dict[str, list[int]] = {}
    restarts: list[float] = []

    def measure(key: str, pause: float, name: str) -> float:
        session = CONTENDERS[key].open(target, settings.pool_size, False)
        try:
            for _ in range(settings.pool_size):
                session.request()
            time.sleep(pause)
            start = perf_counter()
            restart()
            restarts.append(perf_counter() - start)
            after_restart()  # not timed: pins the new server processes
            failures, start = 0, perf_counter()
            deadline = start + RECOVERY_LIMIT
            while True:
                try:
                    session.recovering_request()
                    break
                except Exception:
                    failures += 1
                    if perf_counter() > deadline:
                        errors.setdefault(name, []).append(failures)
                        return math.inf
            elapsed = perf_counter() - start
            errors.setdefault(name, []).append(failures)
            return elapsed
        finally:
            session.close()

    blocks: dict[str, Callable[[], float]] = {
        f"{variant}/{key}": (
            lambda key=key, pause=pause, name=f"{variant}/{key}": measure(key, pause, name)  # type: ignore[misc]
        )
        for variant, pause in variants.items()
        for key in keys
    }
    log(f"W5: {len(blocks)} cells, {settings.w5_rounds} rounds (one restart each)")
    series = interleave(blocks, settings.w5_rounds, log, "W5")
    times = {name: [v * 1e3 for v in values] for name, values in series.items()}
    table.series = times
    for key in keys:
        row = [CONTENDERS[key].label]
        for variant in variants:
            name = f"{variant}/{key}"
            row += [
                fmt(stats.median(times[name]), 2),
                ratio_cell(name, times, f"{variant}/{OURS}"),
                fmt(stats.median([float(e) for e in errors[name]]), 0),
            ]
        table.rows.append(row)
    table.notes.append(
        f"A restart itself took {fmt(stats.median(restarts) * 1e3, 0)} ms (median, not "
        "counted). Errors are requests that raised before the first success: each is an error "
        "an application would have to handle or show. Medians over "
        f"{settings.w5_rounds} round(s)."
    )
    return table


# -- W6: primary-key lookup and insert on a 100k-row table -------------------------------------

#: W6's table.
ITEMS = "bench_items"
LOOKUP = f"SELECT id, name, price FROM {ITEMS} WHERE id = %s"
INSERT = f"INSERT INTO {ITEMS} (name, price) VALUES (%s, %s) RETURNING id"
W6_KEYS = ["held", "psycopg_pool", OURS, "published"]


def prepare_items(target: Target, rows: int) -> None:
    """Create W6's table anew with ``rows`` rows (ids 1 to ``rows``), loaded with COPY."""
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {ITEMS}")
        conn.execute(
            f"CREATE TABLE {ITEMS} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
            "name text NOT NULL, price numeric(10, 2) NOT NULL)"
        )
        with conn.cursor().copy(f"COPY {ITEMS} (id, name, price) FROM STDIN") as copy:
            for id_ in range(1, rows + 1):
                copy.write_row((id_, f"item {id_}", f"{id_ % 1000}.{id_ % 100:02d}"))
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{ITEMS}', 'id'), %s)", (rows,))
        conn.execute(f"VACUUM ANALYZE {ITEMS}")


def w6(target: Target, settings: Settings, log: Log) -> Table:
    """W6: one thread, checkout + a primary-key lookup (or an insert) + return."""
    rows = settings.w6_rows
    randrange = random.Random(6).randrange
    operations: dict[str, Callable[[Session], Callable[[], None]]] = {
        "lookup": lambda session: lambda: session.request(LOOKUP, (randrange(1, rows + 1),)),
        "insert": lambda session: lambda: session.request(INSERT, ("new item", "9.99")),
    }
    cells = {f"{op}/{key}": (key, False) for op in operations for key in W6_KEYS}
    with open_sessions(target, settings.pool_size, cells) as sessions:
        blocks = {}
        for name, session in sessions.items():
            op = operations[name.split("/")[0]](session)
            count = calibrate(op, settings.warmup, settings.w6_block)
            blocks[name] = _median_block(op, count)
        log(f"W6: {len(blocks)} cells, {settings.w6_rounds} rounds")
        series = interleave(blocks, settings.w6_rounds, log, "W6")
    series = {name: [v * 1e6 for v in values] for name, values in series.items()}
    table = Table(
        "W6",
        f"W6: primary-key lookup and insert on a {rows:,}-row table",
        f"A table of {rows:,} rows (``id bigint`` identity primary key, ``name text``, "
        "``price numeric``), loaded once per run with COPY. One thread makes requests as in "
        "W1, transactional, each a checkout, one statement with its row read, the commit and "
        f"the return: *lookup* is ``{LOOKUP}`` with a random id; *insert* is ``{INSERT}``. "
        "Each request is timed on its own; a block's value is its median request. The "
        "embedded server runs with ``fsync`` off, so a commit does not wait for the disk.",
        ["lookup µs/request", "÷ ours", "insert µs/request", "÷ ours"],
        series=series,
    )
    for key in W6_KEYS:
        table.rows.append(
            [CONTENDERS[key].label, *mode_cells(series, "lookup", key),
             *mode_cells(series, "insert", key)]
        )  # fmt: skip
    return table
