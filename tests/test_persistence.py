"""PostgresPersistence and its identifiable variants, against the real server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from pip_services4_commons.data import AnyValueMap
from pip_services4_commons.errors import ConfigException, InvalidStateException
from pip_services4_components.config import ConfigParams
from pip_services4_components.refer import Descriptor, References
from pip_services4_data.query import FilterParams, PagingParams, SortField, SortParams
from psycopg import sql

from pip_postgres import (
    IdentifiableJsonPostgresPersistence,
    IdentifiablePostgresPersistence,
    PostgresConnection,
    PostgresPersistence,
)

from .conftest import LogCapture, Server, admin_query

CONNECTION = Descriptor("pip-services", "connection", "postgres", "default", "1.0")

Item = dict[str, Any]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Beacons(IdentifiablePostgresPersistence[Item, str]):
    """A relational table with a column of each type the round trip must keep."""

    def _define_schema(self) -> None:
        self._ensure_schema(
            sql.SQL(
                "CREATE TABLE {} (id TEXT PRIMARY KEY, site_id TEXT, label TEXT, "
                "created TIMESTAMPTZ, day DATE, price NUMERIC(12, 4), active BOOLEAN, "
                "meta JSONB, tags TEXT[], hits INTEGER DEFAULT 0)"
            ).format(self._table_identifier())
        )
        self._ensure_index(f"{self._table_name}_site", {"site_id": True, "label": False})


class JsonBeacons(IdentifiableJsonPostgresPersistence[Item, str]):
    def _define_schema(self) -> None:
        self._clear_schema()
        self._ensure_table()
        self._ensure_index(f"{self._table_name}_site", [(sql.SQL("(data->>'site_id')"), True)])
        self._ensure_index(f"{self._table_name}_gin", {"data": True}, {"type": "USING gin"})


def table_exists(pg: Server, name: str, schema: str = "public") -> bool:
    return bool(
        admin_query(
            pg,
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (schema, name),
        )
    )


def pool_idle(connection: PostgresConnection) -> tuple[int, int]:
    """(connections in the pool, of which available): equal when none is checked out."""
    pool = connection.get_connection()
    assert pool is not None
    stats = pool.get_stats()
    return stats["pool_size"], stats["pool_available"]


def opened(
    persistence: PostgresPersistence[Any], connection: PostgresConnection, *more: Any
) -> None:
    """Open ``persistence`` on ``connection``; ``more``: other (descriptor, component) pairs."""
    persistence.set_references(References.from_tuples(CONNECTION, connection, *more))
    persistence.open(None)


P = TypeVar("P", bound=PostgresPersistence[Any])


@contextmanager
def open_on(persistence: P, connection: PostgresConnection, *more: Any) -> Iterator[P]:
    """``persistence``, open on the shared ``connection``; closed, its table dropped, on exit."""
    opened(persistence, connection, *more)
    try:
        yield persistence
    finally:
        persistence.close(None)
        with connection.connection() as conn:
            drop = sql.SQL("DROP TABLE IF EXISTS {}")
            conn.execute(drop.format(persistence._table_identifier()))


@pytest.fixture
def beacons(component: PostgresConnection) -> Iterator[Beacons]:
    with open_on(Beacons(unique("beacons")), component) as persistence:
        yield persistence


@pytest.fixture
def json_beacons(component: PostgresConnection) -> Iterator[JsonBeacons]:
    with open_on(JsonBeacons(unique("json_beacons")), component) as persistence:
        yield persistence


# -- CRUD ------------------------------------------------------------------------------------


def test_crud_round_trip(beacons: Beacons) -> None:
    created = beacons.create(None, {"site_id": "s1", "label": "front door"})
    assert created is not None
    assert re.fullmatch(r"[0-9a-f]{32}", created["id"])
    assert created["hits"] == 0  # the server's default comes back
    assert beacons.get_one_by_id(None, created["id"]) == created

    created["label"] = "back door"
    updated = beacons.update(None, created)
    assert updated is not None and updated["label"] == "back door"

    partial = beacons.update_partially(None, created["id"], AnyValueMap({"hits": 5}))
    assert partial is not None
    assert (partial["label"], partial["hits"]) == ("back door", 5)

    deleted = beacons.delete_by_id(None, created["id"])
    assert deleted == partial
    assert beacons.get_one_by_id(None, created["id"]) is None
    assert beacons.delete_by_id(None, created["id"]) is None
    assert beacons.update(None, {"id": created["id"], "label": "gone"}) is None
    assert beacons.update_partially(None, created["id"], {"label": "gone"}) is None


def test_create_keeps_given_id_and_does_not_change_the_callers_item(beacons: Beacons) -> None:
    item: Item = {"label": "no id"}
    created = beacons.create(None, item)
    assert created is not None and "id" not in item
    assert beacons.create(None, {"id": "mine", "label": "x"}) == {
        **dict.fromkeys(["site_id", "created", "day", "price", "active", "meta", "tags"], None),
        "id": "mine",
        "label": "x",
        "hits": 0,
    }
    with pytest.raises(psycopg.errors.UniqueViolation):
        beacons.create(None, {"id": "mine", "label": "again"})


def test_set_inserts_then_replaces(beacons: Beacons) -> None:
    first = beacons.set(None, {"id": "b1", "label": "one", "hits": 1})
    assert first is not None and (first["label"], first["hits"]) == ("one", 1)
    second = beacons.set(None, {"id": "b1", "label": "two"})
    assert second is not None and (second["label"], second["hits"]) == ("two", 1)
    assert beacons.get_count_by_filter(None, None) == 1
    generated = beacons.set(None, {"label": "new"})
    assert generated is not None and len(generated["id"]) == 32


@dataclasses.dataclass
class Beacon:
    id: str | None
    label: str


class PlainBeacon:
    def __init__(self, id: str | None, label: str) -> None:
        self.id = id
        self.label = label
        self._cache = "not stored"


def test_items_may_be_dataclasses_or_objects(beacons: Beacons) -> None:
    item = Beacon(None, "dataclass")
    created = beacons.create(None, item)  # type: ignore[arg-type]
    assert created is not None and created["label"] == "dataclass" and created["id"]
    assert item.id is None
    plain = beacons.create(None, PlainBeacon("p1", "object"))  # type: ignore[arg-type]
    assert plain is not None and (plain["id"], plain["label"]) == ("p1", "object")
    with pytest.raises(TypeError, match="must be a mapping, a dataclass or an object"):
        beacons.create(None, 42)  # type: ignore[arg-type]


def test_types_survive_the_round_trip(beacons: Beacons) -> None:
    item = {
        "id": "types",
        "label": "naïve ☃ \\ ' \" %s %(x)s {}",
        "created": dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone.utc),
        "day": dt.date(1999, 12, 31),
        "price": Decimal("12345678.0001"),
        "active": False,
        "meta": {"nested": {"list": [1, 2.5, None, True]}, "empty": {}},
        "tags": ["a", "b,c", ""],
        "hits": None,
        "site_id": None,
    }
    created = beacons.create(None, item)
    assert created == item
    fetched = beacons.get_one_by_id(None, "types")
    assert fetched == item
    assert isinstance(fetched["price"], Decimal) and fetched["active"] is False


# -- batches, pages, filters -------------------------------------------------------------------


def fill(beacons: Beacons, count: int) -> list[Item]:
    made = []
    for number in range(count):
        item = beacons.create(
            None,
            {"id": f"b{number:03d}", "site_id": f"s{number % 3}", "label": f"label {number}"},
        )
        assert item is not None
        made.append(item)
    return made


def test_batch_by_ids(beacons: Beacons) -> None:
    fill(beacons, 30)
    wanted = [f"b{n:03d}" for n in (1, 5, 7, 29)]
    found = beacons.get_list_by_ids(None, [*wanted, "missing"])
    assert sorted(item["id"] for item in found) == wanted
    assert beacons.get_list_by_ids(None, []) == []
    assert beacons.delete_by_ids(None, [*wanted, "missing"]) == 4
    assert beacons.delete_by_ids(None, []) == 0
    assert beacons.get_count_by_filter(None, None) == 26


def test_paging(beacons: Beacons) -> None:
    fill(beacons, 25)
    page = beacons.get_page_by_filter(None, None, PagingParams(5, 10, True), "id")
    assert [item["id"] for item in page.data] == [f"b{n:03d}" for n in range(5, 15)]
    assert page.total == 25
    last = beacons.get_page_by_filter(None, "site_id = 's0'", PagingParams(8, 10, True), "id")
    assert [item["id"] for item in last.data] == ["b024"]
    assert last.total == 9
    untotalled = beacons.get_page_by_filter(None, None, PagingParams(0, 3), "id DESC")
    assert [item["id"] for item in untotalled.data] == ["b024", "b023", "b022"]
    assert untotalled.total is None
    # A trusted filter string with a literal '%' and no params, beside LIMIT and OFFSET.
    like = beacons.get_page_by_filter(None, "label LIKE 'label 1%'", PagingParams(1, 3, True), "id")
    assert [item["id"] for item in like.data] == ["b010", "b011", "b012"]
    assert like.total == 11


def test_max_page_size(component: PostgresConnection) -> None:
    paged = Beacons(unique("paged"))
    paged.configure(ConfigParams.from_tuples("options.max_page_size", 7))
    with open_on(paged, component) as persistence:
        fill(persistence, 10)
        assert len(persistence.get_page_by_filter(None, None, None).data) == 7
        assert len(persistence.get_page_by_filter(None, None, PagingParams(0, 100)).data) == 7
        assert len(persistence.get_page_by_filter(None, None, PagingParams(0, 3)).data) == 3
        assert len(persistence.get_list_by_filter(None, None)) == 10


@pytest.mark.parametrize("value", [0, -1, "many", 2_000_000])
def test_bad_max_page_size_names_the_key(value: object) -> None:
    with pytest.raises(ConfigException, match=r"options\.max_page_size"):
        Beacons("t").configure(ConfigParams.from_tuples("options.max_page_size", value))


def test_filters_string_and_safe_form(beacons: Beacons) -> None:
    fill(beacons, 12)
    # The Pip.Services convention: the developer's own SQL text, '%' needs no escaping.
    assert beacons.get_count_by_filter(None, "label LIKE 'label 1%'") == 3
    # The safe form: placeholders and parameters, positional or named.
    safe = sql.SQL("site_id = %s AND label <> %s")
    assert beacons.get_count_by_filter(None, safe, params=["s1", "label 1"]) == 3
    named = sql.SQL("site_id = %(site)s")
    listed = beacons.get_list_by_filter(
        None, named, SortParams(SortField("id", False)), ["id", "label"], params={"site": "s2"}
    )
    assert listed == [
        {"id": "b011", "label": "label 11"},
        {"id": "b008", "label": "label 8"},
        {"id": "b005", "label": "label 5"},
        {"id": "b002", "label": "label 2"},
    ]
    composed = sql.SQL("{} = %s").format(sql.Identifier("site_id"))
    page = beacons.get_page_by_filter(
        None, composed, PagingParams(0, 2, True), sql.SQL("id"), "id", params=["s0"]
    )
    assert page.data == [{"id": "b000"}, {"id": "b003"}] and page.total == 4
    random_item = beacons.get_one_random(None, safe, params=["s0", ""])
    assert random_item is not None and random_item["site_id"] == "s0"
    assert beacons.get_one_random(None, "false") is None
    assert beacons.delete_by_filter(None, sql.SQL("site_id = %s"), params=["s1"]) == 4
    assert beacons.get_count_by_filter(None, "") == 8
    beacons.clear(None)
    assert beacons.get_count_by_filter(None, None) == 0


def test_get_one_random_reaches_every_item(beacons: Beacons) -> None:
    fill(beacons, 3)
    seen = set()
    for _ in range(200):  # each of 3 items missed 200 times in a row: about 1e-35
        item = beacons.get_one_random(None, None)
        assert item is not None
        seen.add(item["id"])
        if len(seen) == 3:
            break
    assert seen == {"b000", "b001", "b002"}


# -- injection attempts ----------------------------------------------------------------------


HOSTILE = "'; DROP TABLE {victim}; --"


@pytest.fixture
def victim(pg: Server, component: PostgresConnection) -> Iterator[str]:
    """A table the test user owns, so that an injected DROP TABLE would succeed."""
    name = unique("victim")
    with component.connection() as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        admin_query(pg, f"DROP TABLE IF EXISTS {name}")


def test_injection_through_values_is_stored_verbatim(
    pg: Server, beacons: Beacons, victim: str
) -> None:
    hostile = HOSTILE.format(victim=victim)
    created = beacons.create(None, {"id": hostile, "label": hostile, "meta": {hostile: hostile}})
    assert created is not None and created["label"] == hostile
    assert beacons.get_one_by_id(None, hostile) == created
    assert beacons.update_partially(None, hostile, {"site_id": hostile}) is not None
    safe = sql.SQL("label = %s")
    assert beacons.get_count_by_filter(None, safe, params=[hostile]) == 1
    assert beacons.get_list_by_ids(None, [hostile]) == [{**created, "site_id": hostile}]
    assert beacons.delete_by_ids(None, [hostile]) == 1
    assert table_exists(pg, victim)


def test_injection_through_column_names_fails_without_running(
    pg: Server, beacons: Beacons, victim: str
) -> None:
    column = f'label" = 1; DROP TABLE {victim}; --'
    with pytest.raises(psycopg.errors.UndefinedColumn):
        beacons.create(None, {"id": "x", column: 1})
    with pytest.raises(psycopg.errors.UndefinedColumn):
        beacons.get_list_by_filter(None, None, SortParams(SortField(column)), [column])
    assert table_exists(pg, victim)
    assert beacons.get_count_by_filter(None, None) == 0


def test_injection_through_table_and_schema_names(
    pg: Server, component: PostgresConnection, victim: str
) -> None:
    table = f'we"ird; DROP TABLE {victim}; --'
    schema = unique('sch"ema')
    persistence = JsonBeacons(table, schema)
    opened(persistence, component)
    try:
        hostile = HOSTILE.format(victim=victim)
        created = persistence.create(None, {"id": hostile, "name": hostile})
        assert (
            persistence.get_one_by_id(None, hostile) == created == {"id": hostile, "name": hostile}
        )
        assert persistence.get_count_by_filter(None, None) == 1
        assert table_exists(pg, table, schema)
        assert table_exists(pg, victim)
        assert persistence._quoted_table_name() == (
            '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
        )
    finally:
        persistence.close(None)
        admin_query(pg, f"DROP SCHEMA {sql.Identifier(schema).as_string()} CASCADE")


# -- schema ----------------------------------------------------------------------------------


class Broken(IdentifiablePostgresPersistence[Item, str]):
    def _define_schema(self) -> None:
        self._ensure_schema("CREATE TABLE " + self._quoted_table_name() + " (id TEXT PRIMARY KEY)")
        self._ensure_schema(
            sql.SQL("CREATE INDEX {} ON {} (no_such_column)").format(
                sql.Identifier(f"{self._table_name}_bad"), self._table_identifier()
            )
        )


def test_schema_failure_fails_open_with_the_servers_reason(
    pg: Server, component: PostgresConnection
) -> None:
    name = unique("broken")
    persistence = Broken(name)
    persistence.set_references(References.from_tuples(CONNECTION, component))
    with pytest.raises(InvalidStateException) as caught:
        persistence.open(None)
    error = caught.value
    assert error.code == "SCHEMA_FAILED"
    assert 'column "no_such_column" does not exist' in error.message
    assert "statement 2 of 2" in error.message and "CREATE INDEX" in error.message
    assert isinstance(error.__cause__, psycopg.errors.UndefinedColumn)
    assert not persistence.is_open()
    assert not table_exists(pg, name)  # one transaction: the first statement was undone
    assert component.is_open()  # a shared connection stays open
    assert pool_idle(component)[0] == pool_idle(component)[1]


def test_schema_is_created_once_and_open_is_idempotent(
    pg: Server, component: PostgresConnection
) -> None:
    name = unique("again")

    class Plain(IdentifiablePostgresPersistence[Item, str]):
        def _define_schema(self) -> None:  # no IF NOT EXISTS: it must not run twice
            self._ensure_schema(f"CREATE TABLE {self._quoted_table_name()} (id TEXT PRIMARY KEY)")

    first = Plain(name)
    opened(first, component)
    first.create(None, {"id": "kept"})
    first.open(None)  # already open: nothing happens
    first.close(None)
    first.open(None)  # the table exists: the statements are skipped
    second = Plain(name)
    opened(second, component)
    assert second.get_one_by_id(None, "kept") == {"id": "kept"}
    first.close(None)
    second.close(None)
    admin_query(pg, f"DROP TABLE {name}")


def test_schema_name_and_configured_table(pg: Server, component: PostgresConnection) -> None:
    schema, table = unique("app"), unique("things")
    persistence = JsonBeacons()
    persistence.configure(ConfigParams.from_tuples("table", table, "schema", schema))
    opened(persistence, component)
    try:
        assert table_exists(pg, table, schema)
        assert not table_exists(pg, table)
        indexes = admin_query(
            pg, "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
        )
        assert {row[0] for row in indexes} == {f"{table}_pkey", f"{table}_site", f"{table}_gin"}
        persistence.create(None, {"id": "1"})
        assert persistence.get_count_by_filter(None, None) == 1
    finally:
        persistence.close(None)
        admin_query(pg, f"DROP SCHEMA {schema} CASCADE")


def test_unique_index_is_enforced(component: PostgresConnection) -> None:
    class Unique(IdentifiablePostgresPersistence[Item, str]):
        def _define_schema(self) -> None:
            self._ensure_schema(
                f"CREATE TABLE {self._quoted_table_name()} (id TEXT PRIMARY KEY, code TEXT)"
            )
            self._ensure_index(f"{self._table_name}_code", {"code": True}, {"unique": True})

    with open_on(Unique(unique("uniq")), component) as persistence:
        persistence.create(None, {"code": "A"})
        with pytest.raises(psycopg.errors.UniqueViolation):
            persistence.create(None, {"code": "A"})
        assert pool_idle(component)[0] == pool_idle(component)[1]
        assert persistence.create(None, {"code": "B"}) is not None  # not an aborted transaction


def test_no_table_name() -> None:
    persistence = Beacons()
    with pytest.raises(ConfigException, match="table"):
        persistence.open(None)


def test_published_helpers_are_gone_as_the_docs_say(beacons: Beacons) -> None:
    # A moved subclass that calls them fails at once, not on a result of another shape.
    for name in ("_request", "_client", "_generate_columns", "_generate_parameters"):
        assert not hasattr(beacons, name), name


def test_not_open(beacons: Beacons) -> None:
    beacons.close(None)
    with pytest.raises(InvalidStateException, match="not open") as caught:
        beacons.get_one_by_id(None, "x")
    assert caught.value.code == "NOT_OPENED"


# -- the JSON variant -------------------------------------------------------------------------


def test_json_crud_and_partial_update(json_beacons: JsonBeacons) -> None:
    created = json_beacons.create(None, {"site_id": "s1", "label": "a", "flags": [True, None]})
    assert created is not None and len(created["id"]) == 32
    assert json_beacons.get_one_by_id(None, created["id"]) == created
    merged = json_beacons.update_partially(None, created["id"], {"label": "b", "new": 1})
    assert merged == {**created, "label": "b", "new": 1}
    replaced = json_beacons.update(None, {"id": created["id"], "label": "c"})
    assert replaced == {"id": created["id"], "label": "c"}
    upserted = json_beacons.set(None, {"id": created["id"], "label": "d"})
    assert upserted == {"id": created["id"], "label": "d"}
    assert json_beacons.set(None, {"id": "other", "label": "e"}) == {"id": "other", "label": "e"}
    by_site = sql.SQL("data->>'label' = %s")
    assert json_beacons.get_list_by_filter(None, by_site, params=["e"]) == [
        {"id": "other", "label": "e"}
    ]
    assert json_beacons.get_list_by_filter(None, None, "data->>'label'", "id") == [
        {"id": created["id"]},
        {"id": "other"},
    ]
    assert json_beacons.delete_by_id(None, "other") == {"id": "other", "label": "e"}
    assert json_beacons.update_partially(None, "other", {"label": "x"}) is None


def test_json_values(json_beacons: JsonBeacons) -> None:
    item = {
        "id": "j1",
        "text": "naïve ☃ ' \" \\ %s",
        "yes": True,
        "no": False,
        "nothing": None,
        "number": 1.5,
        "big": 2**62,
        "nested": {"list": [1, {"a": []}]},
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "price": Decimal("0.10"),
    }
    stored = json_beacons.create(None, item)
    expected = {**item, "when": "2024-01-02T03:04:05+00:00", "price": "0.10"}
    assert stored == expected
    assert json_beacons.get_one_by_id(None, "j1") == expected


# -- connections -----------------------------------------------------------------------------


def test_private_connection_from_own_config(pg: Server, base_config_table: ConfigParams) -> None:
    persistence = Beacons()
    persistence.configure(base_config_table)
    persistence.set_references(References())
    persistence.open(None)
    try:
        connection = persistence._connection
        assert connection is not None and connection.is_open()
        assert persistence.create(None, {"label": "private"}) is not None
    finally:
        persistence.close(None)
    assert not connection.is_open()
    admin_query(pg, f"DROP TABLE {persistence._table_name}")


def test_private_connection_without_set_references(
    pg: Server, base_config_table: ConfigParams
) -> None:
    persistence = Beacons()
    persistence.configure(base_config_table)
    persistence.open(None)
    try:
        assert persistence.get_count_by_filter(None, None) == 0
    finally:
        persistence.close(None)
    admin_query(pg, f"DROP TABLE {persistence._table_name}")


@pytest.fixture
def base_config_table(pg: Server) -> ConfigParams:
    from .conftest import base_config

    return base_config(pg, table=unique("private"), options__max_pool_size=2)


def test_wrong_password_fails_open_without_showing_it(pg: Server) -> None:
    from pip_services4_commons.errors import ConnectionException

    from .conftest import base_config

    secret = "Wr0ng-Pa55-" + uuid.uuid4().hex
    persistence = Beacons("t")
    persistence.configure(base_config(pg, credential__password=secret))
    with pytest.raises(ConnectionException) as caught:
        persistence.open(None)
    error = caught.value
    assert "password authentication failed" in error.message
    for text in (str(error), repr(error), str(error.to_json()), repr(persistence)):
        assert secret not in text
    assert not persistence.is_open()


def test_referenced_connection_must_be_open(pg: Server) -> None:
    from pip_services4_commons.errors import ConnectionException

    from .conftest import base_config

    connection = PostgresConnection()
    connection.configure(base_config(pg))
    persistence = Beacons("t")
    persistence.set_references(References.from_tuples(CONNECTION, connection))
    with pytest.raises(ConnectionException, match="not open"):
        persistence.open(None)


def test_referenced_connection_of_another_kind() -> None:
    persistence = Beacons("t")
    with pytest.raises(ConfigException, match=r"must be a pip_postgres\.PostgresConnection") as e:
        persistence.set_references(References.from_tuples(CONNECTION, object()))
    assert e.value.code == "WRONG_CONNECTION"


def test_shared_connection_stays_open_after_close(
    beacons: Beacons, component: PostgresConnection
) -> None:
    beacons.close(None)
    assert component.is_open()
    beacons.unset_references()
    assert beacons._connection is None


# -- concurrency -----------------------------------------------------------------------------


def run_threads(target: Any, arguments: list[Any]) -> list[BaseException]:
    """Run ``target(argument)`` in a thread for each argument, all started together (each
    waits for the others at ``target``'s own barrier); the errors they raised."""
    errors: list[BaseException] = []

    def run(argument: Any) -> None:
        try:
            target(argument)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=run, args=(a,), daemon=True) for a in arguments]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)
    return errors


def test_sixteen_concurrent_writers(beacons: Beacons, component: PostgresConnection) -> None:
    threads, per_thread = 16, 20
    ids: list[list[str]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def writer(index: int) -> None:
        start.wait(timeout=30)
        for number in range(per_thread):
            item = beacons.create(None, {"site_id": f"t{index}", "hits": 0})
            assert item is not None
            ids[index].append(item["id"])
            beacons.update_partially(None, item["id"], {"hits": number})
            beacons.set(None, {"id": f"shared{number % 4}", "label": f"t{index}"})

    assert run_threads(writer, list(range(threads))) == []
    every = [item_id for mine in ids for item_id in mine]
    assert len(set(every)) == threads * per_thread
    assert beacons.get_count_by_filter(None, "site_id IS NOT NULL") == threads * per_thread
    assert beacons.get_count_by_filter(None, "id LIKE 'shared%'") == 4
    for index in range(threads):
        hits = beacons.get_list_by_filter(
            None, sql.SQL("site_id = %s"), "hits", ["hits"], params=[f"t{index}"]
        )
        assert [row["hits"] for row in hits] == list(range(per_thread))
    size, available = pool_idle(component)
    assert size == available  # every checkout returned


# -- the code of docs/persistence.rst, run as it is written -------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "persistence.rst"


def docs_code(containing: str) -> str:
    """The ``code-block:: python`` of docs/persistence.rst that contains ``containing``."""
    blocks = re.findall(
        r"^( *)\.\. code-block:: python\n\n((?:\1   .*\n|\n)+)", DOCS.read_text(), re.MULTILINE
    )
    found = [textwrap.dedent(code) for _, code in blocks if containing in code]
    assert len(found) == 1, f"one python block of {DOCS.name} contains {containing!r}"
    return found[0]


def run_docs_code(containing: str, namespace: dict[str, Any]) -> dict[str, Any]:
    exec(compile(docs_code(containing), str(DOCS), "exec"), namespace)
    return namespace


@pytest.fixture
def docs_schema(pg: Server) -> Iterator[str]:
    """A schema of its own for the docs' fixed table and index names."""
    schema = unique("docs")
    admin_query(pg, f"CREATE SCHEMA {schema} AUTHORIZATION {pg.user}")
    try:
        yield schema
    finally:
        admin_query(pg, f"DROP SCHEMA {schema} CASCADE")


def test_worked_example_of_the_docs(pg: Server, docs_schema: str) -> None:
    from .conftest import base_config

    class TestServerConfig(ConfigParams):
        """The docs' configuration, with the test server's address and credentials."""

        @staticmethod
        def from_tuples(*tuples: Any) -> ConfigParams:
            config = ConfigParams.from_tuples(*tuples)
            assert {"connection.host", "credential.password"} <= set(config.keys())
            config.append(base_config(pg, schema=docs_schema))
            return config

    example = run_docs_code("class BeaconsPersistence", {})
    usage = docs_code("persistence.open(None)").replace(
        "from pip_services4_components.config import ConfigParams\n", ""
    )
    done = dict(example, ConfigParams=TestServerConfig)
    exec(compile(usage, str(DOCS), "exec"), done)
    persistence, beacon, page = done["persistence"], done["beacon"], done["page"]
    assert not persistence.is_open() and persistence._max_page_size == 50
    assert len(beacon["id"]) == 32 and beacon["radius"] == Decimal("50.00")
    assert page.data == [beacon] and page.total == 1
    stored = admin_query(pg, f"SELECT id, label FROM {docs_schema}.beacons")
    assert stored == [(beacon["id"], "Front door")]

    persistence.open(None)  # the table exists: nothing is created again
    try:
        other = persistence.create(None, {"site_id": "2", "udi": "00002"})
        both = persistence.get_page_by_filter(
            None, FilterParams.from_tuples("udis", "00001,00002"), None
        )
        assert sorted(item["udi"] for item in both.data) == ["00001", "00002"]
        assert persistence.get_one_by_udi(None, "00002") == other
        with pytest.raises(psycopg.errors.UniqueViolation):  # the docs' unique index
            persistence.create(None, {"site_id": "3", "udi": "00001"})
        column, site_id = "site_id", "1"  # the names the filter snippet uses
        run_docs_code("persistence.get_count_by_filter(", dict(locals(), sql=sql))
        assert persistence.get_count_by_filter(None, None) == 1  # the snippet deleted site 1
    finally:
        persistence.close(None)


def test_docs_snippets_for_own_operations_and_the_json_variant(
    component: PostgresConnection, docs_schema: str
) -> None:
    increment_hits = run_docs_code("def increment_hits", {"sql": sql})["increment_hits"]
    counting = type("Counting", (Beacons,), {"increment_hits": increment_hits})
    with open_on(counting(unique("hits")), component) as persistence:
        persistence.create(None, {"id": "h1"})
        assert persistence.increment_hits(None, "h1") == 1
        assert persistence.increment_hits(None, "h1") == 2
        assert persistence.increment_hits(None, "missing") is None

    namespace = run_docs_code("class BeaconsJsonPersistence", dict(globals()))
    json_persistence = namespace["BeaconsJsonPersistence"]()
    json_persistence.configure(ConfigParams.from_tuples("schema", docs_schema))
    with open_on(json_persistence, component) as persistence:
        for number, (site, label) in enumerate([("s1", "b"), ("s2", "x"), ("s1", "a")]):
            persistence.create(None, {"id": str(number), "site_id": site, "label": label})
        assert [item["label"] for item in persistence.get_by_site(None, "s1")] == ["a", "b"]


def test_schema_failure_never_shows_the_password(
    pg: Server, base_config_table: ConfigParams, logs: LogCapture
) -> None:
    assert pg.password
    password = pg.password

    class Quoting(IdentifiablePostgresPersistence[Item, str]):
        def _define_schema(self) -> None:  # the server's reason quotes the value
            self._ensure_schema(sql.SQL("SELECT {}::int").format(sql.Literal(password)))

    persistence = Quoting()
    persistence.configure(base_config_table)
    persistence.set_references(logs.references)
    with pytest.raises(InvalidStateException) as caught:
        persistence.open(None)
    error = caught.value
    assert "invalid input syntax for type integer" in error.message
    assert error.__cause__ is None and error.__context__ is None
    logged = logs.text()
    assert "Failed to create the schema" in logged
    for text in (str(error), repr(error), str(error.to_json()), repr(persistence), logged):
        assert password not in text
    assert "***" in error.message
    connection = persistence._connection
    assert connection is not None and not connection.is_open()  # the private one is closed


# -- the base class, on a table whose id the server makes ---------------------------------------


class Events(PostgresPersistence[Item]):
    def _define_schema(self) -> None:
        self._ensure_schema(
            f"CREATE TABLE {self._quoted_table_name()} "
            "(id SERIAL PRIMARY KEY, name TEXT DEFAULT 'unnamed', at DATE)"
        )


def test_base_class_with_server_made_ids_and_trace_logging(
    component: PostgresConnection, logs: LogCapture
) -> None:
    logger = Descriptor("pip-services", "logger", "console", "default", "1.0")
    with open_on(Events(unique("events")), component, logger, logs.logger) as persistence:
        first = persistence.create(None, {"name": "start", "at": dt.date(2024, 5, 1)})
        assert first == {"id": 1, "name": "start", "at": dt.date(2024, 5, 1)}
        assert persistence.create(None, {}) == {"id": 2, "name": "unnamed", "at": None}
        assert persistence.create(None, None) is None  # type: ignore[arg-type]
        page = persistence.get_page_by_filter(None, "at IS NULL", PagingParams(0, 10, True))
        assert page.data == [{"id": 2, "name": "unnamed", "at": None}] and page.total == 1
        assert persistence.delete_by_filter(None, sql.SQL("id = %s"), params=[1]) == 1
        assert persistence.get_list_by_filter(None, None, None, "name") == [{"name": "unnamed"}]
    logged = logs.text()
    assert f'Created in "{persistence._table_name}" with id = None' in logged
    assert f'Deleted 1 items from "{persistence._table_name}"' in logged


# -- review: checkouts after errors, conversion hooks, exact types, schema races ----------------


def test_every_checkout_returns_after_failing_statements(
    beacons: Beacons, component: PostgresConnection
) -> None:
    beacons.create(None, {"id": "b1", "label": "before"})
    update = sql.SQL("UPDATE {} SET label = 'changed'").format(beacons._table_identifier())
    # A custom operation whose second statement fails.
    with pytest.raises(psycopg.errors.DivisionByZero), beacons._cursor() as cursor:
        cursor.execute(update)
        cursor.execute("SELECT 1 / 0")
    assert pool_idle(component)[0] == pool_idle(component)[1]
    with pytest.raises(psycopg.errors.UndefinedColumn):  # the count of a page fails
        beacons.get_page_by_filter(None, "no_such_column = 1", PagingParams(0, 1, True))
    with pytest.raises(psycopg.errors.UndefinedColumn):
        beacons.update_partially(None, "b1", {"no_such_column": 1})
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        beacons.set(None, {"id": "b1", "price": "not a number"})
    with pytest.raises(psycopg.errors.UniqueViolation):
        beacons.create(None, {"id": "b1"})
    size, available = pool_idle(component)
    assert size == available
    item = beacons.get_one_by_id(None, "b1")  # the first UPDATE was rolled back
    assert item is not None and item["label"] == "before"


class Renamed(Beacons):
    """Public items have ``name`` where the table has ``label``: both hooks do the renaming."""

    def _convert_to_public(self, value: dict[str, Any]) -> Item:
        row = dict(value)
        if "label" in row:
            row["name"] = row.pop("label")
        return row

    def _convert_from_public(self, value: Any) -> dict[str, Any]:
        row = super()._convert_from_public(value)
        if "name" in row:
            row["label"] = row.pop("name")
        return row


def test_conversion_hooks_on_every_path(component: PostgresConnection) -> None:
    with open_on(Renamed(unique("renamed")), component) as persistence:
        created = persistence.create(None, {"id": "r1", "name": "one"})
        assert created is not None and created["name"] == "one" and "label" not in created
        assert persistence.set(None, {"id": "r2", "name": "two"})["name"] == "two"  # type: ignore[index]
        assert persistence.update(None, {"id": "r2", "name": "deux"})["name"] == "deux"  # type: ignore[index]
        # update_partially goes through _convert_from_public, as in the published classes.
        partial = persistence.update_partially(None, "r1", {"name": "un"})
        assert partial is not None and partial["name"] == "un"
        assert persistence.get_one_by_id(None, "r1")["name"] == "un"  # type: ignore[index]
        by_ids = persistence.get_list_by_ids(None, ["r1", "r2"])
        assert sorted(item["name"] for item in by_ids) == ["deux", "un"]
        page = persistence.get_page_by_filter(None, None, PagingParams(0, 10, True), "id")
        assert [item["name"] for item in page.data] == ["un", "deux"] and page.total == 2
        listed = persistence.get_list_by_filter(None, "label = 'un'")
        assert [item["name"] for item in listed] == ["un"]
        assert persistence.get_one_random(None, "label = 'deux'")["name"] == "deux"  # type: ignore[index]
        assert persistence.delete_by_id(None, "r2")["name"] == "deux"  # type: ignore[index]


class Exact(IdentifiablePostgresPersistence[Item, str]):
    """Columns that keep a value exactly as it went in."""

    def _define_schema(self) -> None:
        self._ensure_schema(
            sql.SQL(
                "CREATE TABLE {} (id TEXT PRIMARY KEY, local TIMESTAMP, aware TIMESTAMPTZ, "
                "day DATE, at TIME, amount NUMERIC, flag BOOLEAN, doc JSONB, list JSONB)"
            ).format(self._table_identifier())
        )


def test_exact_types_survive_the_round_trip(component: PostgresConnection) -> None:
    from psycopg.types.json import Jsonb

    item: Item = {
        "id": "exact",
        "local": dt.datetime(2024, 7, 1, 12, 30, 15, 999999),  # naive, in a TIMESTAMP column
        "aware": dt.datetime(2024, 7, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))),
        "day": dt.date(2000, 2, 29),
        "at": dt.time(23, 59, 59, 1),
        "amount": Decimal("-123456789012345678901234567890.123456789012345678901"),
        "flag": True,
        "doc": {"a": {"b": [None, False, 1.25, "x", {"c": {}}]}},
        "list": None,
    }
    with open_on(Exact(unique("exact")), component) as persistence:
        assert persistence.create(None, item) == item
        stored = persistence.get_one_by_id(None, "exact")
        assert stored == item
        assert stored is not None and stored["local"].tzinfo is None
        assert stored["aware"].utcoffset() is not None
        # A list is a PostgreSQL array; for a JSON column, wrap it in Jsonb.
        documents = [{"k": 1}, [2, None]]
        changed = persistence.update_partially(None, "exact", {"list": Jsonb(documents)})
        assert changed is not None and changed["list"] == documents
        empty = persistence.create(None, {"id": "empty"})
        assert empty == {**dict.fromkeys(item, None), "id": "empty"}


def test_json_variant_stores_what_json_lacks_as_strings(json_beacons: JsonBeacons) -> None:
    item: Item = {
        "id": "j2",
        "day": dt.date(2024, 2, 29),
        "local": dt.datetime(2024, 2, 29, 8, 0, 1),
        "at": dt.time(7, 6, 5),
        "amount": Decimal("12345678901234567890.123456789"),
        "uuid": uuid.UUID(int=1),
        "nested": {"deep": {"deeper": [True, False, None, {"x": "y"}]}},
    }
    expected = {
        **item,
        "day": "2024-02-29",
        "local": "2024-02-29T08:00:01",
        "at": "07:06:05",
        "amount": "12345678901234567890.123456789",
        "uuid": "00000000-0000-0000-0000-000000000001",
    }
    assert json_beacons.create(None, item) == expected
    assert json_beacons.get_one_by_id(None, "j2") == expected
    with pytest.raises(TypeError, match="type set cannot be stored as JSON"):
        json_beacons.create(None, {"id": "j3", "tags": {"a"}})


def test_json_variant_on_a_json_column_and_an_expression_index(
    component: PostgresConnection,
) -> None:
    class Keys(IdentifiableJsonPostgresPersistence[Item, str]):
        def _define_schema(self) -> None:
            self._ensure_table(data_type="JSON")
            # As written for the published classes: an expression key in parentheses.
            self._ensure_index(f"{self._table_name}_key", {"(data->>'key')": 1}, {"unique": True})

    with open_on(Keys(unique("keys")), component) as persistence:
        persistence.create(None, {"id": "k1", "key": "a", "n": 1, "deep": {"x": 1, "y": 2}})
        changes = AnyValueMap({"n": 2, "m": [1], "deep": {"y": 3}})
        merged = persistence.update_partially(None, "k1", changes)
        # A shallow merge: a field given replaces the stored one, a nested document too.
        assert merged == {"id": "k1", "key": "a", "n": 2, "m": [1], "deep": {"y": 3}}
        assert persistence.get_one_by_id(None, "k1") == merged
        with pytest.raises(psycopg.errors.UniqueViolation):
            persistence.create(None, {"id": "k2", "key": "a"})


def test_components_opening_at_once_create_the_schema_once(
    pg: Server, component: PostgresConnection
) -> None:
    class Plain(IdentifiablePostgresPersistence[Item, str]):
        def _define_schema(self) -> None:  # no IF NOT EXISTS: it must run exactly once
            self._ensure_schema(f"CREATE TABLE {self._quoted_table_name()} (id TEXT PRIMARY KEY)")

    names = [unique("race") for _ in range(3)]
    components = [Plain(name) for name in names for _ in range(4)]
    start = threading.Barrier(len(components))

    def open_one(persistence: Plain) -> None:
        persistence.set_references(References.from_tuples(CONNECTION, component))
        start.wait(timeout=30)
        persistence.open(None)

    try:
        assert run_threads(open_one, components) == []
        assert all(persistence.is_open() for persistence in components)
        assert all(table_exists(pg, name) for name in names)
    finally:
        for persistence in components:
            persistence.close(None)
        admin_query(pg, "DROP TABLE IF EXISTS " + ", ".join(names))
