"""The command: ``python -m benchmarks [--quick] [--only W1,W3] [--output PATH | --no-write]``.

Starts the server (embedded, or ``PIP_POSTGRES_TEST_URI``), runs the workloads, prints the
tables and the targets, and (on a full run) writes ``docs/benchmarks.rst``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pip_postgres.embedded import EmbeddedPostgres

from . import report
from .aio import a2
from .memory import memory
from .persistence import p1
from .server import Target, default_cpu, describe_server, pin, start_server
from .workloads import FULL, QUICK, Table, w1, w2, w3, w4, w5

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "memory", "P1", "A2")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark pip_postgres against psycopg_pool, pip-services4-postgres 0.0.1, "
        "a held connection and a connection per request. A full run (3 to 6 minutes) "
        f"writes {report.PAGE.relative_to(report.PAGE.parent.parent)}.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about 30 s; prints only"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads to run, among {', '.join(WORKLOADS)}; prints only",
    )
    parser.add_argument("--output", type=Path, help="write the page here (even with --quick)")
    parser.add_argument("--no-write", action="store_true", help="never write the page")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place the benchmark and the server on any CPU (by default "
        "both run on the same one CPU, for stable round trips)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parser().parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    selected = only or list(WORKLOADS)
    settings = QUICK if args.quick else FULL
    output: Path | None = args.output
    if output is None and not (args.quick or only or args.no_write):
        output = report.PAGE
    if args.no_write:
        output = None
    # psycopg_pool logs a warning for each broken connection it discards (W5): keep it quiet.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    logging.getLogger("psycopg").propagate = False

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started, clock = dt.datetime.now(dt.timezone.utc), time.monotonic()
    server = start_server()
    try:
        target = Target.of(server)
        described = describe_server(server)
        cpu = None if args.no_pin else default_cpu()
        pinned = pin(server, cpu)
        log(f"server: {described}; {pinned}")
        facts = report.machine(described)
        facts.append(("CPU placement", pinned))
        tables: list[Table] = []
        if "W1" in selected:
            tables.append(w1(target, settings, log))
        if "W2" in selected:
            tables.extend(w2(target, settings, log))
        if "W3" in selected:
            tables.append(w3(target, settings, log))
        if "W4" in selected:
            tables.append(w4(target, settings, log))
        if "W5" in selected:
            tables.append(w5(server, target, settings, log, lambda: pin(server, cpu)))
        if "memory" in selected:
            log("memory: child processes")
            tables.append(memory(target, settings, log))
        if "P1" in selected:
            tables.append(p1(target, settings, log))
        if "A2" in selected:
            tables.append(a2(target, settings, log))
    finally:
        if isinstance(server, EmbeddedPostgres):
            server.stop()
    seconds = time.monotonic() - clock
    facts.insert(3, ("Load average at end", report.load_average()))
    found = report.checks(
        {table.id: table for table in tables}, settings.pool_size, settings.threads
    )
    print(report.text(tables, found))
    print(f"\n{seconds:.0f} s in all")
    if output is not None:
        command = "nox -s bench" + (" -- --quick" if args.quick else "")
        rounds = (
            f"Rounds: W1 {settings.w1_rounds} (blocks of ~{settings.w1_block} s), "
            f"W2 {settings.w2_rounds} (~{settings.w2_block} s), "
            f"W3 {settings.w3_rounds} (~{settings.w3_block} s), W4 {settings.w4_rounds}, "
            f"W5 {settings.w5_rounds}, memory {settings.memory_rounds}; pools of "
            f"{settings.pool_size}, {settings.threads} threads in W2."
        )
        output.write_text(
            report.page(
                tables=tables,
                found=found,
                facts=facts,
                command=command,
                settings_text=rounds,
                started=started,
                seconds=seconds,
                quick=args.quick,
            )
        )
        print(f"wrote {output}")
    return 0
