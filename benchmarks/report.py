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

from pip_postgres import PostgresOptions

from .aio import ASYNC_OURS, ASYNC_RAW, TARGET_VS_RAW, TASKS, THREADED_OURS
from .contenders import (
    CONTENDERS,
    OTHER_ORDER,
    OURS,
    OURS_BEGIN_ALWAYS,
    OURS_BEGIN_NEVER,
    OURS_OTHER,
)
from .server import Placement
from .stats import median
from .workloads import Settings, Table, fmt, paired_ratio

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
    """One target, in one placement, and what this run measured."""

    text: str
    placement: str
    measured: float
    limit: float
    at_most: bool
    #: Context from the same run, e.g. what psycopg_pool alone measures against the same rival.
    reference: str = ""

    @property
    def ok(self) -> bool:
        """Whether the target is met."""
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    @property
    def verdict(self) -> str:
        """``PASS`` or ``MISS``."""
        return "PASS" if self.ok else "MISS"


class Results:
    """The tables of a run, by workload and placement, and the ratios between their cells."""

    def __init__(self, tables: Sequence[Table]) -> None:
        self.tables = {(table.id, table.placement): table for table in tables}

    def ratio(self, table: str, placement: str, name: str, other: str) -> float | None:
        """The paired ratio of cell ``name`` to cell ``other``, if both were measured."""
        found = self.tables.get((table, placement))
        series = found.series if found is not None else {}
        if name not in series or other not in series:
            return None
        return paired_ratio(series[name], series[other])

    def median(self, table: str, placement: str, name: str) -> float | None:
        """The median of cell ``name``, if it was measured."""
        found = self.tables.get((table, placement))
        if found is None or name not in found.series:
            return None
        return median(found.series[name])


def _same(what: str, value: float | None) -> str:
    return "" if value is None else f"{what}: {value:.3f}"


def checks(
    tables: Sequence[Table], placements: Sequence[Placement], settings: Settings
) -> list[Check]:
    """The targets that the tables of this run allow to check, placement by placement."""
    results = Results(tables)
    found: list[Check] = []

    def add(text: str, where: Placement, value: float | None, limit: float, at_most: bool,
            reference: str = "") -> None:  # fmt: skip
        if value is not None:
            found.append(Check(text, where.title, value, limit, at_most, reference))

    for where in placements:
        key = where.key
        add("W3: ours ÷ psycopg_pool, time per checkout, at most 1.05", where,
            results.ratio("W3", key, OURS, "psycopg_pool"), 1.05, True,
            _same("after a pause", results.ratio("W3", key, f"paused/{OURS}",
                                                 "paused/psycopg_pool")))  # fmt: skip
        if not where.delay:
            for mode, limit in (("transactional", 1.15), ("autocommit", 1.25)):
                add(
                    f"W1 {mode}: ours ÷ held psycopg 3 connection, time per request, "
                    f"at most {limit:.2f}",
                    where,
                    results.ratio("W1", key, f"{mode}/{OURS}", f"{mode}/held"),
                    limit,
                    True,
                    _same("psycopg_pool ÷ held",
                          results.ratio("W1", key, f"{mode}/psycopg_pool", f"{mode}/held")),
                )  # fmt: skip
        for threads in settings.threads:
            add(
                f"W2 {threads} thread{'s' if threads > 1 else ''}: ours ÷ psycopg_pool, "
                "requests/s, at least 0.97",
                where,
                results.ratio("W2", key, f"{threads}/{OURS}", f"{threads}/psycopg_pool"),
                0.97,
                False,
            )
        add(
            f"A2 {TASKS} asyncio tasks: ours async ÷ psycopg_pool AsyncConnectionPool, "
            f"requests/s, at least {TARGET_VS_RAW:.2f}",
            where,
            results.ratio("A2", key, ASYNC_OURS, ASYNC_RAW),
            TARGET_VS_RAW,
            False,
            _same(f"ours async ÷ ours threaded ({TASKS} threads)",
                  results.ratio("A2", key, ASYNC_OURS, THREADED_OURS)),
        )  # fmt: skip
        if where.delay:
            never = results.ratio(
                "W1", key, f"transactional/{OURS_BEGIN_NEVER}", "transactional/published"
            )
            add(
                "W1 transactional: ours ÷ pip-services4-postgres, time per request, at most 1.00",
                where,
                results.ratio("W1", key, f"transactional/{OURS}", "transactional/published"),
                1.0,
                True,
                _same("ours with begin_with_statement=never ÷ it", never),
            )
    return found


# -- text -------------------------------------------------------------------------------------


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in [header, *rows]]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _placement_title(table: Table, placements: Sequence[Placement]) -> str:
    for where in placements:
        if where.key == table.placement:
            return f"{table.title}, {where.title}"
    return table.title


_TARGET_HEADER = ["target", "placement", "measured", "verdict", "for reference, same run"]


def _target_rows(found: Sequence[Check]) -> list[list[str]]:
    return [[c.text, c.placement, f"{c.measured:.3f}", c.verdict, c.reference] for c in found]


def text(tables: Sequence[Table], found: Sequence[Check], placements: Sequence[Placement]) -> str:
    """The report for the terminal."""
    parts = []
    for table in tables:
        parts.append(f"\n{_placement_title(table, placements)}\n")
        parts.append(_grid(["contender", *table.columns], table.rows) if table.rows else "")
        parts.extend(f"  note: {note}" for note in table.notes)
    parts.append("\nTargets\n")
    parts.append(_grid(_TARGET_HEADER, _target_rows(found)))
    for title, paragraphs in _findings(tables, placements):
        parts.append(f"\n{title}\n")
        parts.extend(paragraphs)
    return "\n".join(parts)


# -- findings: what the numbers of this run say -----------------------------------------------


def _findings(
    tables: Sequence[Table], placements: Sequence[Placement]
) -> list[tuple[str, list[str]]]:
    """Sections written from this run's numbers: (title, paragraphs)."""
    results = Results(tables)
    sections = [
        ("Order of idle connections: LIFO or FIFO", _idle_order(results, placements)),
        ("Saving the BEGIN round trip", _pipeline(results, placements)),
        ("What the latency proxy costs", _proxy_cost(results, placements)),
    ]
    return [(title, paragraphs) for title, paragraphs in sections if paragraphs]


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _us(value: float | None) -> str:
    return "—" if value is None else f"{fmt(value)} µs"


def _idle_order(results: Results, placements: Sequence[Placement]) -> list[str]:
    default = PostgresOptions.idle_order
    rows = []
    for where in placements:
        key = where.key
        w1 = [
            results.ratio("W1", key, f"{mode}/{OURS_OTHER}", f"{mode}/{OURS}")
            for mode in ("transactional", "autocommit")
        ]
        w2 = [
            results.ratio("W2", key, f"{t}/{OURS_OTHER}", f"{t}/{OURS}")
            for t in _thread_counts(results, key)
        ]
        if any(v is not None for v in w1 + w2):
            row = (
                f"{where.title}: W1 time per request {_x(w1[0])} (transactional), "
                f"{_x(w1[1])} (autocommit)"
            )
            if w2:
                row += "; W2 requests/s " + ", ".join(
                    f"{_x(v)} ({t} thread{'s' if t > 1 else ''})"
                    for t, v in zip(_thread_counts(results, key), w2, strict=True)
                )
            rows.append(row + ".")
    if not rows:
        return []
    return [
        "``options.idle_order`` chooses which idle connection a checkout gets: ``lifo``, the "
        "one returned last, or ``fifo``, the one idle longest (psycopg_pool's own order). "
        "LIFO keeps a few connections busy and lets the others idle; FIFO spreads the work "
        "over every connection. With one thread and a pool of "
        "8, LIFO always reuses the server process that has just answered, FIFO the one that "
        "has been idle longest. Which costs less depends on where the server's processes "
        "run: a process that has just answered may still be running on its CPU (cheap to "
        "reach again) or may have just gone to sleep there (it must be woken up), and on a "
        "virtual machine a wake-up across CPUs is costly. The scheduler tends to leave a "
        "process that runs often on the CPU it last ran on, and to bring one that was idle "
        "longer to the CPU that wakes it up: W2's notes give, for one thread, how often the "
        "server process that answered had last run on the client's own CPU with each order.",
        f"Ours with ``{OTHER_ORDER}``, relative to ours with the default ``{default}``, in "
        "this run (above 1: the alternative takes longer per request in W1, or serves more "
        "requests per second in W2):",
        *(f"- {row}" for row in rows),
        f"The default is ``{default}``: {DEFAULT_ORDER_REASON}",
    ]


#: Why the default of ``options.idle_order`` is what it is (written from the measurements
#: that chose it; the numbers above show whether this run agrees).
DEFAULT_ORDER_REASON = (
    "where it was chosen (a 2-core virtual machine shared with other work: a noise of ±5 to "
    "±45 % not pinned), FIFO was not the better choice for a server on another host or on "
    "CPUs of its own. With the server on other CPUs, FIFO's median W1 request was 2 to 11 % "
    "slower in all 10 comparisons of five full runs, and with one thread W2 served 4 to 12 % "
    "fewer requests per second in all five (within 10 % either way with more threads). In "
    "latency mode FIFO's median W1 request was slower in 15 comparisons of 18 over nine "
    "runs (from 4 % faster to 8 % slower). Pinned, LIFO was faster. Only not pinned, over "
    "loopback, did FIFO serve more requests per second with one thread, in most runs by 12 "
    "to 30 % (though its median W1 request was slower there too): the scheduler brings "
    "FIFO's server processes, idle longer, onto the client's CPU, where an answer needs no "
    "wake-up of another CPU, and leaves LIFO's one busy server process on the other CPU "
    "(W2's note measures it), which a server on another host does not share. Where your own "
    "runs show FIFO faster, set ``options.idle_order`` to ``fifo``. LIFO also keeps the "
    "validation bypass working: it hands out the connection returned last, which is within "
    "``options.validation_bypass`` (1 s) of its return as long as requests keep coming; FIFO "
    "hands out the one idle longest, so a pool of 10 connections serving 5 requests per "
    "second leaves each connection idle 2 s, and every checkout pays a validation round "
    "trip, which over a network costs as much as a short query."
)


def _thread_counts(results: Results, placement: str) -> list[int]:
    table = results.tables.get(("W2", placement))
    if table is None:
        return []
    return sorted({int(name.split("/")[0]) for name in table.series})


def _pipeline(results: Results, placements: Sequence[Placement]) -> list[str]:
    paragraphs = []
    for where in placements:
        key = where.key

        def us(name: str, key: str = key) -> str:
            value = results.median("W1", key, f"transactional/{name}")
            return "—" if value is None else _us(value)

        if results.median("W1", key, "transactional/held-pipeline") is None:
            continue
        line = (
            f"{where.title}: a held connection takes {us('held')} per request as psycopg does "
            f"it and {us('held-pipeline')} with ``BEGIN`` sent with the statement by hand; "
            f"ours {us(OURS)} by default (``auto``), {us(OURS_BEGIN_ALWAYS)} with ``always`` "
            f"and {us(OURS_BEGIN_NEVER)} with ``never``; pip-services4-postgres "
            f"{us('published')}."
        )
        if where.delay:
            line += f" A round trip costs at least {fmt(2 * where.delay * 1e6, 0)} µs here."
        paragraphs.append(f"- {line}")
    if not paragraphs:
        return []
    return [
        "In transactional mode psycopg sends ``BEGIN`` in a round trip of its own before the "
        "first statement of a transaction, then the statement, then ``COMMIT``: three round "
        "trips for a one-statement checkout. psycopg2 does the same, and so does psycopg in "
        "pipeline mode (it waits for ``BEGIN``'s answer before it goes on). PgJDBC and Npgsql "
        "send ``BEGIN`` in the same write as the first statement, which saves one round trip "
        "per transaction. The component's cursors do the same "
        "(``options.begin_with_statement``); the row *held connection, BEGIN with the "
        "statement* does it by hand, on a connection in autocommit mode with an explicit "
        "``BEGIN`` in a pipeline (see *Contenders*). Per request, transactional, in this run "
        "(the W1 tables' notes say what ``auto`` decided in each placement):",
        *paragraphs,
        PIPELINE_ADVICE,
    ]


#: How the component decides to send BEGIN with the first statement, and why.
PIPELINE_ADVICE = (
    "Where a round trip costs hundreds of µs, sending ``BEGIN`` with the first statement "
    "saves a round trip of three; where the client and the server share a CPU, a round trip "
    "costs only CPU time, and the pipeline costs more than it saves. So the "
    "default, ``auto``, measures where the pool runs: the first statements of the pool's "
    "first transactions go one way or the other at random, ``execute()`` is timed, and once "
    "each way has 50 times the way with the shorter median is kept. It does "
    "so only where it changes nothing but the time: in transactional mode, for a statement "
    "run with ``execute()`` outside a transaction and outside a pipeline, of one statement, "
    "not a ``COPY``; its result or its error is there when ``execute()`` returns, as "
    "without it. ``always`` and ``never`` decide without measuring; for a block with a "
    "single statement, autocommit mode is cheaper still: one round trip, no transaction."
)


def _proxy_cost(results: Results, placements: Sequence[Placement]) -> list[str]:
    direct = next((w for w in placements if w.key == "unpinned"), None)
    delayed = next((w for w in placements if w.delay), None)
    if direct is None or delayed is None:
        return []
    near = results.median("W1", direct.key, "autocommit/held")
    far = results.median("W1", delayed.key, "autocommit/held")
    if near is None or far is None:
        return []
    delay = 2 * delayed.delay * 1e6
    extra = far - near - delay
    return [
        "A held connection in autocommit mode makes one round trip per request: "
        f"{_us(near)} directly (not pinned), {_us(far)} through the proxy. Of the "
        f"{_us(far - near)} the proxy adds, {fmt(delay, 0)} µs is the delay it is asked for "
        f"and {_us(extra)} its own cost: two forwards, each by a Python thread that wakes "
        f"up for it. So in latency mode a round trip costs about {_us(delay + extra)} "
        "beyond the server's own time, the same for every contender, and the delay is "
        f"{100 * delay / max(far, 1e-9):.0f} % of a one-round-trip request."
    ]


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
    placements: Sequence[Placement],
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
        "What does :class:`~pip_postgres.PostgresConnection` cost per request, compared with "
        "what an application would use otherwise: one psycopg connection held open, "
        "psycopg_pool's ``ConnectionPool`` used directly, the published pip-services4-postgres "
        "component (psycopg2), or a new connection per request? All numbers below come from "
        "one run of the benchmark on one machine, against one PostgreSQL server, with the "
        "contenders interleaved round by round so that the machine's drift hits them alike. "
        "The benchmark writes this page itself; run it again to get numbers for your machine.",
        "",
        "In the tables *ours* is pip_postgres. The workloads, each described in its own "
        "section below: **W1** one thread, a checkout, ``SELECT 1`` and the return, one after "
        "the other; **W2** the same from 1 to 64 threads at once on a pool of 8; **W3** a "
        "checkout and return with no query (the pool's own cost); **W4** from nothing to the "
        "first query answered; **W5** from a server restart to the first successful request; "
        "**W6** a primary-key lookup and an insert on a 100,000-row table; and the client "
        "memory each pooled connection takes.",
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
        _heading("Placements: where the processes run", "-"),
        "The server runs on the same machine as the benchmark, reached over the loopback "
        "interface, where a round trip costs tens of µs instead of the hundreds it costs "
        "between two hosts. How the two share the machine's CPUs changes what a round trip "
        "costs, and which contender wins; so the workloads that make round trips run in "
        "several placements:",
        "",
        *(f"- **{where.title}**: {_PLACEMENT_TEXT[where.key]}" for where in placements),
        "",
        _DEPLOYMENT_TEXT,
        "",
        "W1 and W6 run in every placement; W2 and A2 (asyncio) in the three over loopback "
        "(through the proxy, their many threads would measure the proxy's), and so does W3, "
        "which makes no round trip; P1 (persistence) in all but pinned; W4, W5 and the "
        "memory measure run once, in the first placement "
        f"({placements[0].title if placements else 'none'}).",
        "",
        _heading("Targets", "-"),
        "What the project requires of the component, checked in each placement. A measured "
        "value is the median over the rounds of the ratio of two contenders' results in the "
        "same round.",
        "",
        _list_table(_TARGET_HEADER, _target_rows(found), "40 15 10 10 25")
        if found
        else "No target could be checked in this run.\n",
    ]
    for title, paragraphs in _findings(tables, placements):
        out.append(_heading(title, "-"))
        for paragraph in paragraphs:
            out += [paragraph, ""]
    out += [
        _heading("How to read the tables", "-"),
        "- Each workload runs in *rounds*; every round runs one block of every contender, in "
        "an order rotated by one each round. A value is the median over the rounds of a "
        "block's result (time per request, requests per second); ``±x %`` is half the "
        "interquartile range over the rounds, relative to the median: the noise.",
        "- ``÷ ours`` is the contender's value divided by ours *in the same round*, median "
        "over the rounds. For times, above 1 means slower than ours; for requests/s and "
        "memory, above 1 means more than ours.",
        "- The machine may be shared and has few cores: absolute numbers move from run to run "
        "by more than the ratios do. Compare ratios, and only within one run.",
        "",
        _heading("Contenders", "-"),
    ]
    for contender in CONTENDERS.values():
        out.append(f"**{contender.label}**")
        out.append(f"   {contender.does}")
        out.append("")
    seen: set[str] = set()
    for table in tables:
        if table.id not in seen:  # a workload's description once, then its placements
            seen.add(table.id)
            out.append(_heading(table.title, "-"))
            out.append(table.what)
            out.append("")
        if table.placement:
            title = next(w.title for w in placements if w.key == table.placement)
            out.append(_heading(title[:1].upper() + title[1:], "~"))
        if table.rows:
            out.append(_list_table(["contender", *table.columns], table.rows))
        for note in table.notes:
            out.append(note)
            out.append("")
    return "\n".join(out).rstrip() + "\n"


_PLACEMENT_TEXT = {
    "unpinned": "the operating system's scheduler places the benchmark and the server's "
    "processes on any CPU, as it does for an application and a database on one machine. "
    "Where it puts the server process that answers changes what a request costs: on the "
    "client's own CPU, the answer costs a context switch; on another CPU, a wake-up of that "
    "CPU, a few µs on bare metal and tens of µs on a virtual machine. Which one happens "
    "depends on how a contender uses its connections (see *Order of idle connections*), so "
    "these numbers are the noisiest and the most particular to the machine.",
    "apart": "the benchmark runs on one CPU, every server process on the others, as with a "
    "database on cores of its own: each answer comes from another CPU, woken up for it, and "
    "the client's CPU serves the client only.",
    "pinned": "the benchmark and every server process share one CPU. A round trip then costs "
    "CPU time and two context switches, the same for every contender, with no wake-up of "
    "another CPU: the most stable numbers, and the best view of what each contender costs "
    "in CPU time. No deployment runs so.",
    "latency": "not pinned, and every contender, the held connection included, reaches the "
    "server through the same TCP proxy, which holds the data it forwards for a fixed delay "
    "in each direction (the proxy of the test suite, in a process of its own), so that a "
    "round trip costs what it costs over a network. Workloads with many threads do not run "
    "in this mode: they would measure the proxy's threads.",
}

_DEPLOYMENT_TEXT = (
    "A server on another host resembles the **latency mode** most: there, round trips "
    "dominate, and what differs between contenders is the number of round trips a request "
    "makes and the client's CPU time. Over loopback, **server on other CPUs** resembles it: "
    "the server's processes never run on the client's CPU and are woken up where they are "
    "when a request arrives, as on another host. **Not pinned** is what an application and "
    "a database sharing a machine get, and it can favour a contender for a reason a separate "
    "server does not share: the scheduler may bring the server process onto the client's "
    "CPU, where a round trip needs no wake-up of another CPU. **Pinned** shows the client's "
    "CPU cost best, which is what a pool adds, but no server runs that way."
)
