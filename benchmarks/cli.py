"""The command: ``python -m benchmarks [--quick] [--only W1,W3] [--placements ...] [--output
PATH | --no-write]``.

Starts the server (embedded, or ``PIP_POSTGRES_TEST_URI``), runs the workloads in each
placement (not pinned, server on other CPUs, pinned to one CPU, latency mode), prints the
tables and the targets, and (on a full run) writes ``docs/benchmarks.rst``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pip_postgres.embedded import EmbeddedPostgres

from . import report
from .aio import a2
from .latency import delaying_proxy
from .memory import memory
from .persistence import p1
from .server import (
    Placement,
    Server,
    Target,
    describe_server,
    place,
    placements,
    start_server,
    unavailable,
)
from .workloads import FULL, QUICK, Log, Settings, Table, prepare_items, w1, w2, w3, w4, w5, w6

#: Workloads run in every placement that allows them: (name, function, placements).
PLACED: list[tuple[str, Callable[[Target, Settings, Log], Table], tuple[str, ...]]] = [
    ("W1", w1, ("unpinned", "apart", "pinned", "latency")),
    # Through the latency proxy, many threads would measure the proxy's own threads.
    ("W2", w2, ("unpinned", "apart", "pinned")),
    # No round trip; after a pause, what the benchmark's CPU did meanwhile matters.
    ("W3", w3, ("unpinned", "apart", "pinned")),
    ("W6", w6, ("unpinned", "apart", "pinned", "latency")),
    # Our persistence classes against the published ones, in the placements a deployment has.
    ("P1", p1, ("unpinned", "apart", "latency")),
    # asyncio: 64 tasks on a pool of 8; over the proxy it would measure the proxy's threads.
    ("A2", a2, ("unpinned", "apart", "pinned")),
]
#: Workloads run once, in the first placement (W5 restarts the server).
ONCE = ("W4", "W5", "memory")
WORKLOADS = tuple(name for name, _, _ in PLACED) + ONCE
#: The latency mode's default delay, each way, in µs.
DEFAULT_DELAY_US = 200


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark pip_postgres against psycopg_pool, pip-services4-postgres 0.0.1, "
        "a held connection and a connection per request, in four placements. A full run "
        f"(about 20 minutes) writes {report.PAGE.relative_to(report.PAGE.parent.parent)}.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of about a minute; prints only"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated workloads to run, among {', '.join(WORKLOADS)}; prints only",
    )
    parser.add_argument(
        "--placements",
        default="unpinned,apart,pinned,latency",
        help="comma-separated placements, among unpinned (the scheduler places the benchmark "
        "and the server), apart (the benchmark on one CPU, the server on the others), pinned "
        "(all on one CPU) and latency (not pinned, every connection through a delaying "
        "proxy); default all four, the first also runs W4, W5 and memory",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=DEFAULT_DELAY_US,
        help=f"the latency mode's delay each way, in µs (default {DEFAULT_DELAY_US})",
    )
    parser.add_argument("--output", type=Path, help="write the page here (even with --quick)")
    parser.add_argument("--no-write", action="store_true", help="never write the page")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parser().parse_args(argv)
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = [w for w in only if w not in WORKLOADS]
    known = placements(args.delay / 1e6)
    chosen = [p.strip() for p in args.placements.split(",") if p.strip()]
    unknown += [p for p in chosen if p not in known]
    if unknown or not chosen:
        print(f"unknown workload(s) or placement(s): {', '.join(unknown)}", file=sys.stderr)
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
    used: list[Placement] = []
    try:
        target = Target.of(server)
        described = describe_server(server)
        log(f"server: {described}")
        facts = report.machine(described)
        tables: list[Table] = []
        if "W6" in selected:
            prepare_items(target, settings.w6_rows)
        for key in chosen:
            placement = known[key]
            reason = unavailable(placement)
            if reason:
                log(f"placement {placement.title}: skipped, {reason}")
                continue
            log(f"placement {placement.title}: {place(server, placement)}")
            used.append(placement)
            with _reached(target, placement) as reach:
                for name, workload, where in PLACED:
                    if name in selected and key in where:
                        tables.append(_placed(workload(reach, settings, log), key))
            if len(used) == 1:
                tables += _once(
                    server,
                    target,
                    settings,
                    selected,
                    log,
                    functools.partial(place, server, placement),
                )
    finally:
        if isinstance(server, EmbeddedPostgres):
            server.stop()
    seconds = time.monotonic() - clock
    facts.insert(3, ("Load average at end", report.load_average()))
    found = report.checks(tables, used, settings)
    print(report.text(tables, found, used))
    print(f"\n{seconds:.0f} s in all")
    if output is not None:
        command = "nox -s bench" + (" -- --quick" if args.quick else "")
        rounds = (
            f"Rounds: W1 {settings.w1_rounds} (blocks of ~{settings.w1_block} s), "
            f"W2 {settings.w2_rounds} (~{settings.w2_block} s), "
            f"W3 {settings.w3_rounds} (~{settings.w3_block} s), W4 {settings.w4_rounds}, "
            f"W5 {settings.w5_rounds}, W6 {settings.w6_rounds} (~{settings.w6_block} s), "
            f"A2 {settings.a2_rounds} (W2's blocks), "
            f"memory {settings.memory_rounds}; pools of {settings.pool_size}."
        )
        output.write_text(
            report.page(
                tables=tables,
                found=found,
                facts=facts,
                placements=used,
                command=command,
                settings_text=rounds,
                started=started,
                seconds=seconds,
                quick=args.quick,
            )
        )
        print(f"wrote {output}")
    return 0


@contextlib.contextmanager
def _reached(target: Target, placement: Placement) -> Iterator[Target]:
    """The target as the placement reaches it: directly, or through the latency proxy."""
    if not placement.delay:
        yield target
        return
    with delaying_proxy(target.host, target.port, placement.delay) as port:
        yield target.via(port)


def _placed(table: Table, placement: str) -> Table:
    table.placement = placement
    return table


def _once(
    server: Server,
    target: Target,
    settings: Settings,
    selected: Sequence[str],
    log: Log,
    after_restart: Callable[[], object],
) -> list[Table]:
    """The workloads run once: W4, W5 and memory, if selected."""
    tables = []
    if "W4" in selected:
        tables.append(w4(target, settings, log))
    if "W5" in selected:
        tables.append(w5(server, target, settings, log, after_restart))
    if "memory" in selected:
        log("memory: child processes")
        tables.append(memory(target, settings, log))
    return tables
