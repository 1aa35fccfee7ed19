"""P1: the persistence components, ours against the published ones, on the same table.

Ours is an :class:`pip_postgres.IdentifiablePostgresPersistence` on
:class:`pip_postgres.PostgresConnection`; the published one is
``pip_services4_postgres``' ``IdentifiablePostgresPersistence`` on its own psycopg2
``PostgresConnection``. Both are subclassed the same way (a table name, nothing else), take
their connection by reference as in a container, and work on one table, which ours creates.
One thread times ``get_one_by_id`` of an existing row and ``create`` of a new row, each
contender in turn within every round (see :func:`benchmarks.workloads.interleave`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pip_services4_components.refer import Descriptor, References
from pip_services4_postgres.connect.PostgresConnection import (
    PostgresConnection as PublishedConnection,
)
from pip_services4_postgres.persistence.IdentifiablePostgresPersistence import (
    IdentifiablePostgresPersistence as PublishedPersistence,
)
from psycopg import sql

from pip_postgres import IdentifiablePostgresPersistence, PostgresConnection
from pip_postgres.begin import BeginAhead

from . import stats
from .contenders import CONTENDERS, OURS, settle
from .server import Target
from .workloads import (
    Log,
    Settings,
    Table,
    auto_note,
    calibrate,
    fmt,
    fmt_spread,
    interleave,
    median_block,
    paired_ratio,
    ratio_cell,
)

PUBLISHED = "published"
#: Rows in the table before timing; ``get_one_by_id`` reads them in turn.
ROWS = 1000
CONNECTION = Descriptor("pip-services", "connection", "postgres", "default", "1.0")

Item = dict[str, Any]


class OurBeacons(IdentifiablePostgresPersistence[Item, str]):
    """Ours: creates the table both contenders use."""

    def _define_schema(self) -> None:
        self._ensure_schema(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, site_id TEXT, "
                "label TEXT, hits INTEGER)"
            ).format(self._table_identifier())
        )


class Beacon:
    """An item for the published component, whose ``create`` reads ``item.id``."""

    def __init__(self, id: str, site_id: str, label: str, hits: int) -> None:
        self.id = id
        self.site_id = site_id
        self.label = label
        self.hits = hits


def _item(number: int, prefix: str) -> Item:
    return {
        "id": f"{prefix}{number:09d}",
        "site_id": f"site{number % 10}",
        "label": f"beacon {number}",
        "hits": number,
    }


@contextmanager
def _components(
    target: Target, size: int, table: str, decisions: list[BeginAhead]
) -> Iterator[tuple[Any, Any]]:
    """Ours and the published persistence, each open on its own pool of ``size``.

    :param decisions: what ``options.begin_with_statement`` = ``auto`` decided in our pool is
        appended to it on the way out.
    """
    ours_connection = PostgresConnection()
    ours_connection.configure(target.pip_config(max_pool_size=size, min_pool_size=size))
    published_connection = PublishedConnection()
    published_connection.configure(target.pip_config(max_pool_size=size))
    ours, published = OurBeacons(table), PublishedPersistence(table)
    ours_connection.open(None)
    try:
        published_connection.open(None)
        if not published_connection.is_open():  # its open() logs errors and returns
            raise RuntimeError("pip-services4-postgres did not open (its open() hides why)")
        try:
            ours.set_references(References.from_tuples(CONNECTION, ours_connection))
            published.set_references(References.from_tuples(CONNECTION, published_connection))
            ours.open(None)
            published.open(None)
            pool = ours_connection.get_connection()
            assert pool is not None
            settle(pool.begin_ahead, lambda: ours.get_one_by_id(None, "settling"))
            try:
                yield ours, published
            finally:
                published.close(None)
                ours.close(None)
                with ours_connection.connection() as conn:
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
        finally:
            published_connection.close(None)
    finally:
        pool = ours_connection.get_connection()
        if pool is not None:
            decisions.append(pool.begin_ahead)
        ours_connection.close(None)


def _operations(ours: Any, published: Any) -> dict[str, Callable[[], None]]:
    """The timed calls by cell name, after filling the table with :data:`ROWS` rows."""
    for number in range(ROWS):
        ours.create(None, _item(number, "r"))
    ids = [_item(number, "r")["id"] for number in range(ROWS)]
    reads: dict[str, Iterator[str]] = {key: itertools.cycle(ids) for key in (OURS, PUBLISHED)}
    serial = itertools.count()

    def new_item() -> Item:  # shared: every id is new to the table
        return _item(next(serial), "n")

    return {
        f"get_one_by_id/{OURS}": lambda: _found(ours.get_one_by_id(None, next(reads[OURS]))),
        f"get_one_by_id/{PUBLISHED}": lambda: _found(
            published.get_one_by_id(None, next(reads[PUBLISHED]))
        ),
        f"create/{OURS}": lambda: _found(ours.create(None, new_item())),
        f"create/{PUBLISHED}": lambda: _found(published.create(None, Beacon(**new_item()))),
    }


def p1(target: Target, settings: Settings, log: Log) -> Table:
    """P1: ``get_one_by_id`` and ``create``, ours against the published persistence."""
    table = f"bench_p1_{uuid.uuid4().hex[:8]}"
    blocks: dict[str, Callable[[], float]] = {}
    decisions: list[BeginAhead] = []
    with _components(target, settings.pool_size, table, decisions) as (ours, published):
        for name, op in _operations(ours, published).items():
            count = calibrate(op, settings.warmup, settings.w1_block)
            blocks[name] = lambda op=op, count=count: median_block(op, count) * 1e6  # type: ignore[misc]
        log(f"P1: {len(blocks)} cells, {settings.w1_rounds} rounds")
        series = interleave(blocks, settings.w1_rounds, log, "P1")
    result = Table(
        "P1",
        "P1: persistence, get_one_by_id and create",
        "One thread calls ``get_one_by_id`` (an existing row, by primary key) and ``create`` "
        "(a new row with its id given, four columns, ``RETURNING *``) of an "
        "``IdentifiablePostgresPersistence`` subclass that only names the table: ours on "
        "``pip_postgres.PostgresConnection``, and the published one on its psycopg2 "
        f"``PostgresConnection``, both with pools of {settings.pool_size}, on the same table of "
        f"{ROWS} rows and more. Ours checks a connection out per call, runs one parameterised "
        "statement through a ``dict_row`` cursor, converts the row and commits; the published "
        "one builds the statement by concatenation, runs it through ``getconn()``/"
        "``putconn()`` and commits. Each call is timed on its own; a block's value is its "
        "median call.",
        ["get_one_by_id µs", "÷ ours", "create µs", "÷ ours"],
        series=series,
    )
    for key in (OURS, PUBLISHED):
        row = [CONTENDERS[key].label]
        for operation in ("get_one_by_id", "create"):
            found = series[f"{operation}/{key}"]
            row += [
                f"{fmt(stats.median(found))} {fmt_spread(found)}",
                ratio_cell(f"{operation}/{key}", series, f"{operation}/{OURS}"),
            ]
        result.rows.append(row)
    inverse = {
        operation: paired_ratio(series[f"{operation}/{OURS}"], series[f"{operation}/{PUBLISHED}"])
        for operation in ("get_one_by_id", "create")
    }
    result.notes.append(
        "Ours ÷ published, time per call: "
        + ", ".join(f"{operation} {value:.2f}" for operation, value in inverse.items())
        + ". The connection-level comparison (W1) shows what psycopg 3 itself costs against "
        "psycopg2 per statement."
    )
    result.notes.append(auto_note(decisions))
    return result


def _found(item: object) -> None:
    if item is None:
        raise RuntimeError("P1: the persistence returned no item")
