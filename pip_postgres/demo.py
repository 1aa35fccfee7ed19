"""Demo of pip_postgres on an embedded PostgreSQL server.

A PostgresConnection is opened from configuration, and threads share its pool through
context-managed checkouts.

Run it with ``nox -s demo`` or ``python -m pip_postgres.demo`` (needs the ``embedded`` extra).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence

from pip_services4_components.config import ConfigParams
from pip_services4_components.refer import Descriptor, References
from pip_services4_observability.log import ConsoleLogger, LogLevel

from pip_postgres import PostgresConnection
from pip_postgres.embedded import EmbeddedPostgres


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pip_postgres.demo", description=__doc__)
    parser.add_argument("--threads", type=int, default=16, help="worker threads (default 16)")
    parser.add_argument(
        "--checkouts", type=int, default=200, help="checkouts per thread (default 200)"
    )
    parser.add_argument("--pool-size", type=int, default=4, help="max_pool_size (default 4)")
    parser.add_argument(
        "--work-ms",
        type=float,
        default=2.0,
        help="server-side work per checkout, in milliseconds (default 2)",
    )
    return parser.parse_args(argv)


def _progress(done: int, total: int, started: float, stats: dict[str, int]) -> str:
    width = 30
    filled = width * done // total
    elapsed = max(time.monotonic() - started, 1e-9)
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} checkouts, "
        f"{done / elapsed:,.0f}/s, pool {stats.get('pool_size', 0)} open, "
        f"{stats.get('requests_waiting', 0)} waiting"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the process exit code."""
    args = _arguments(argv)
    print("Starting an embedded PostgreSQL server...", flush=True)
    with EmbeddedPostgres() as server:
        print(f"PostgreSQL {server.version} listening on {server.host}:{server.port}")
        # The same keys a YAML container configuration would give.
        config = ConfigParams.from_tuples(
            "connection.host", server.host,
            "connection.port", server.port,
            "connection.database", server.database,
            "credential.username", server.user,
            "credential.password", server.password,
            "options.max_pool_size", args.pool_size,
            "options.connect_timeout", 5000,
            "options.application_name", "pip_postgres-demo",
        )  # fmt: skip
        logger = ConsoleLogger()
        logger.set_level(LogLevel.Info)
        component = PostgresConnection()
        component.configure(config)
        component.set_references(
            References.from_tuples(
                Descriptor("pip-services", "logger", "console", "default", "1.0"), logger
            )
        )
        component.open(None)
        try:
            return _run(component, args)
        finally:
            component.close(None)


def _run(component: PostgresConnection, args: argparse.Namespace) -> int:
    with component.connection() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS demo_events (worker int, n int, at timestamptz)")
        conn.execute("TRUNCATE demo_events")
    pool = component.get_connection()
    assert pool is not None
    total = args.threads * args.checkouts
    done = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for n in range(args.checkouts):
                with component.connection() as conn:
                    conn.execute("INSERT INTO demo_events VALUES (%s, %s, now())", (worker, n))
                with lock:
                    done[0] += 1
        except Exception as error:  # shown at the end, with the count
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(args.threads)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    tty = sys.stdout.isatty()
    last_line = 0.0
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.1)
        now = time.monotonic()
        if tty or now - last_line >= 1.0:
            line = _progress(done[0], total, started, pool.get_stats())
            print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)
            last_line = now
    elapsed = time.monotonic() - started
    print(("\r" if tty else "") + _progress(done[0], total, started, pool.get_stats()))
    with component.connection() as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT worker) FROM demo_events").fetchone()
    assert row is not None
    print(f"\n{row[0]} rows written by {row[1]} threads in {elapsed:.2f} s")
    print("Pool statistics (get_connection().get_stats()):")
    for key, value in sorted(pool.get_stats().items()):
        print(f"  {key:24} {value}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors or row[0] != total else 0


if __name__ == "__main__":
    sys.exit(main())
