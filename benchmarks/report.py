"""The report: machine and versions, targets, tables; as text and as the docs page."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psycopg

from .contenders import CONTENDERS, OURS
from .workloads import Table, paired_ratio

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.rst"


# -- machine and versions ---------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _memory_gib() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except Exception:
        return "?"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine(server: str) -> list[tuple[str, str]]:
    """(name, value) pairs describing the machine, the software and the server."""
    libpq = psycopg.pq.version()
    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} logical cores, {_memory_gib()}"),
        ("System", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Load average at start", load_average()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Server", server),
        ("pip_postgres", _version("pip-postgres")),
        (
            "psycopg",
            f"{_version('psycopg')} ({psycopg.pq.__impl__} implementation, "
            f"libpq {libpq // 10000}.{libpq % 10000})",
        ),
        ("psycopg_pool", _version("psycopg-pool")),
        ("pip-services4-postgres", _version("pip-services4-postgres")),
        ("psycopg2", _version("psycopg2-binary")),
    ]


# -- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One target of the issue, and what this run measured."""

    text: str
    measured: float
    limit: float
    at_most: bool
    #: Context from the same run, e.g. what psycopg_pool alone measures against the same rival.
    reference: str = ""
    #: Why the target is out of reach in this run, when the run shows it (shown on a miss).
    why: str = ""

    @property
    def ok(self) -> bool:
        """Whether the target is met."""
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    @property
    def verdict(self) -> str:
        """``PASS`` or ``MISS``."""
        return "PASS" if self.ok else "MISS"


def checks(tables: dict[str, Table], pool_size: int, threads: int) -> list[Check]:
    """The targets that the tables of this run allow to check."""
    found: list[Check] = []

    def ratio(table: str, name: str, other: str) -> float | None:
        series = tables[table].series if table in tables else {}
        if name not in series or other not in series:
            return None
        return paired_ratio(series[name], series[other])

    def add(
        text: str,
        value: float | None,
        limit: float,
        at_most: bool,
        reference: str = "",
        why: str = "",
    ) -> None:
        if value is not None:
            found.append(Check(text, value, limit, at_most, reference, why))

    def same(what: str, value: float | None) -> str:
        return "" if value is None else f"{what}: {value:.3f}"

    add(
        "W3: ours ÷ psycopg_pool, time per checkout, at most 1.05",
        ratio("W3", OURS, "psycopg_pool"),
        1.05,
        True,
    )
    for mode in ("transactional", "autocommit"):
        floor = ratio("W1", f"{mode}/held", f"{mode}/published")
        over = ratio("W1", f"{mode}/{OURS}", f"{mode}/held")
        why = ""
        if floor is not None and over is not None and floor > 1.0:
            why = (
                f"W1 {mode}: with no pool at all, a held psycopg 3 connection already takes "
                f"{floor:.2f} times as long as pip-services4-postgres per request. Both "
                "drivers make the same round trips (BEGIN, the statement and COMMIT in "
                "transactional mode; the statement alone in autocommit mode); psycopg 3 spends "
                "more client time per statement, in Python, than psycopg2 does in C. A pool "
                "that hands out psycopg 3 connections cannot meet this target on this machine "
                f"without saving a round trip. Ours takes {over:.2f} times as long as the held "
                "connection."
            )
        add(
            f"W1 {mode}: ours ÷ pip-services4-postgres, time per request, at most 1.00",
            ratio("W1", f"{mode}/{OURS}", f"{mode}/published"),
            1.0,
            True,
            same("held psycopg 3 connection ÷ pip-services4-postgres", floor),
            why,
        )
    add(
        "W1 autocommit: ours ÷ held connection, time per request, at most 1.30",
        ratio("W1", f"autocommit/{OURS}", "autocommit/held"),
        1.3,
        True,
        same("psycopg_pool ÷ held", ratio("W1", "autocommit/psycopg_pool", "autocommit/held")),
    )
    add(
        f"W2 {threads} on {pool_size}: ours ÷ psycopg_pool, requests/s, at least 0.95",
        ratio(f"W2-{threads}", OURS, "psycopg_pool"),
        0.95,
        False,
    )
    raw = ratio(f"W2-{pool_size}", "psycopg_pool", "published")
    add(
        f"W2 {pool_size} on {pool_size}: ours ÷ pip-services4-postgres, requests/s, at least 1",
        ratio(f"W2-{pool_size}", OURS, "published"),
        1.0,
        False,
        same("psycopg_pool ÷ it", raw),
        ""
        if raw is None or raw >= 1.0
        else (
            f"W2 {pool_size} on {pool_size}: psycopg_pool used directly falls short too "
            f"({raw:.3f}). In this run pip-services4-postgres seldom closed and reopened "
            "connections (see the note under its table), and then its lower cost per request "
            "(see W1) gives it the higher throughput; how often it reconnects depends on the "
            "threads' timing, and varies from run to run."
        ),
    )
    return found


# -- text -------------------------------------------------------------------------------------


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in [header, *rows]]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def text(tables: Sequence[Table], found: Sequence[Check]) -> str:
    """The report for the terminal."""
    parts = []
    for table in tables:
        parts.append(f"\n{table.title}\n")
        parts.append(_grid(["contender", *table.columns], table.rows) if table.rows else "")
        parts.extend(f"  note: {note}" for note in table.notes)
    parts.append("\nTargets\n")
    parts.append(
        _grid(
            ["target", "measured", "verdict", "for reference, same run"],
            [[c.text, f"{c.measured:.3f}", c.verdict, c.reference] for c in found],
        )
    )
    parts.extend(f"  note: {why}" for why in _misses_explained(found))
    return "\n".join(parts)


def _misses_explained(found: Sequence[Check]) -> list[str]:
    return [check.why for check in found if check.why and not check.ok]


# -- the docs page ----------------------------------------------------------------------------


def _list_table(
    header: Sequence[str] | None, rows: Sequence[Sequence[str]], widths: str = ""
) -> str:
    lines = [".. list-table::"]
    if header is not None:
        lines.append("   :header-rows: 1")
    if widths:
        lines.append(f"   :widths: {widths}")
    lines.append("")
    for row in [header, *rows] if header is not None else rows:
        for index, cell in enumerate(row):
            bullet = "   * - " if index == 0 else "     - "
            lines.append(bullet + (_escape(str(cell)) or r"\ "))
    return "\n".join(lines) + "\n"


def _escape(cell: str) -> str:
    """Cells are plain text, except ``code``; keep reST from reading ``*`` or a leading ``-``."""
    cell = cell.replace("*", r"\*")
    return "\\" + cell if cell[:1] in "-+" else cell


def _heading(title: str, char: str) -> str:
    return f"{title}\n{char * len(title)}\n"


def page(
    *,
    tables: Sequence[Table],
    found: Sequence[Check],
    facts: Sequence[tuple[str, str]],
    command: str,
    settings_text: str,
    started: dt.datetime,
    seconds: float,
    quick: bool = False,
) -> str:
    """The reST page ``docs/benchmarks.rst``."""
    out = [
        ".. This page is generated by ``nox -s bench`` (benchmarks/report.py): do not edit it.",
        "",
        _heading("Benchmarks", "="),
        "What does a pool cost per request, and how does :class:`~pip_postgres.PostgresConnection` "
        "compare with what one would use otherwise? All numbers below were measured in one "
        "run, on the same server, with the contenders interleaved round by round so that the "
        "machine's drift hits them alike. This page is written by the benchmark itself; "
        "run it again to get numbers for your machine.",
        "",
        f"- **Command**: ``{command}`` (``python -m benchmarks``; ``--quick`` for a short "
        "smoke run, which only prints; ``--help`` for the options).",
        f"- **Run**: {started:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes. {settings_text}",
        "",
        *(
            [
                ".. warning:: A ``--quick`` smoke run: too few rounds for the ratios to be "
                "trusted. Run ``nox -s bench`` for the real page.",
                "",
            ]
            if quick
            else []
        ),
        _heading("Machine and versions", "-"),
        _list_table(None, [[name, value] for name, value in facts], "30 70"),
        _heading("Targets", "-"),
        "The targets of the benchmark's issue. A measured value is a ratio of paired blocks "
        "(the same round), median over the rounds.",
        "",
        _list_table(
            ["target", "measured", "verdict", "for reference, same run"],
            [[c.text, f"{c.measured:.3f}", c.verdict, c.reference] for c in found],
            "45 10 10 35",
        )
        if found
        else "No target could be checked in this run.\n",
        *(f"{why}\n" for why in _misses_explained(found)),
        _heading("How to read the tables", "-"),
        "- Each workload runs in *rounds*; every round runs one block of every contender, in "
        "an order rotated by one each round. A value is the median over the rounds of a "
        "block's result (time per request, requests per second); ``±x %`` is half the "
        "interquartile range over the rounds, relative to the median: the noise.",
        "- ``÷ ours`` is the contender's value divided by ours *in the same round*, median "
        "over the rounds. For times, above 1 means slower than ours; for requests/s and "
        "memory, above 1 means more than ours.",
        "- The benchmark and the server run on the same single CPU (see *CPU placement* "
        "above; ``--no-pin`` turns that off). A round trip then costs CPU time and two "
        "context switches, the same for every contender. Unpinned, on a virtual machine, a "
        "round trip between two CPUs also waits for the idle one to wake up: tens of µs or "
        "nothing, depending on where the scheduler put the server process of each "
        "connection, which swamps the differences measured here. So the times are the "
        "client's and the server's CPU time, not network latency: over a network every "
        "request gains the same latency, and the ratios get closer to 1.",
        "- The machine is shared and has few cores: absolute numbers move from run to run by "
        "more than the ratios do. Compare ratios, and only within one run.",
        "",
        _heading("Contenders", "-"),
    ]
    for contender in CONTENDERS.values():
        out.append(f"**{contender.label}**")
        out.append(f"   {contender.does}")
        out.append("")
    for table in tables:
        out.append(_heading(table.title, "-"))
        out.append(table.what)
        out.append("")
        if table.rows:
            out.append(_list_table(["contender", *table.columns], table.rows))
        for note in table.notes:
            out.append(note)
            out.append("")
    return "\n".join(out).rstrip() + "\n"
