"""Existing Pip.Services code on our pool: pip-services4-postgres 0.0.1's persistence classes.

The published classes (written for psycopg2) get our :class:`PostgresConnection` by reference,
as a service would wire them. They run ``with pool.getconn() as conn: ... pool.putconn(conn)``
(the connection given back inside the block) and catch ``psycopg2.ProgrammingError`` after a
fetch without a result; ``options.psycopg2_compat`` makes the latter work.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg2
import pytest
from pip_services4_commons.data import AnyValueMap
from pip_services4_components.refer import Descriptor, References
from pip_services4_data.query import FilterParams, PagingParams
from pip_services4_postgres.persistence import (
    IdentifiableJsonPostgresPersistence,
    IdentifiablePostgresPersistence,
)

from pip_postgres import PostgresConnection, PostgresPool, Psycopg2CompatError

from .conftest import Server, admin_query
from .test_reliability import opened, pool_of

CONNECTION = Descriptor("pip-services", "connection", "postgres", "default", "1.0")


class Dummy:
    """The item the published test suite stores: an id, a key and some content."""

    def __init__(self, id: str | None, key: str, content: str) -> None:
        self.id = id
        self.key = key
        self.content = content


def table_name() -> str:
    return f"compat_{uuid.uuid4().hex[:10]}"


class ByKey:
    """The published fixtures' ``get_page_by_filter(context, filter, paging)``, by key."""

    key_column = ""

    def get_page_by_filter(
        self, context: Any, filter: FilterParams | None, paging: PagingParams | None
    ) -> Any:
        key = (filter or FilterParams()).get_as_nullable_string("key")
        where = None if key is None else f"{self.key_column}='{key}'"
        return super().get_page_by_filter(context, where, paging, None, None)  # type: ignore[misc]


class DummyPersistence(ByKey, IdentifiablePostgresPersistence):  # type: ignore[misc]
    """A column-per-field persistence, as the published fixtures define one."""

    def __init__(self, table: str) -> None:
        super().__init__(table)

    def _define_schema(self) -> None:
        self._clear_schema()
        self._ensure_schema(
            f'CREATE TABLE "{self._table_name}" ("id" TEXT PRIMARY KEY, "key" TEXT, "content" TEXT)'
        )
        self._ensure_index(f"{self._table_name}_key", {"key": 1}, {"unique": True})

    key_column = '"key"'


class DummyJsonPersistence(ByKey, IdentifiableJsonPostgresPersistence):  # type: ignore[misc]
    """A JSONB persistence, as the published fixtures define one."""

    def __init__(self, table: str) -> None:
        super().__init__(table)

    def _define_schema(self) -> None:
        self._clear_schema()
        self._ensure_table()
        self._ensure_schema(
            f'CREATE UNIQUE INDEX IF NOT EXISTS "{self._table_name}_json_key" '
            f"ON \"{self._table_name}\" ((data->>'key'))"
        )

    key_column = "data->>'key'"


PERSISTENCES = [DummyPersistence, DummyJsonPersistence]


def wire(persistence: Any, component: PostgresConnection) -> Any:
    persistence.set_references(References.from_tuples(CONNECTION, component))
    persistence.open(None)
    return persistence


def table_exists(pg: Server, table: str) -> bool:
    return admin_query(pg, "SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0] is True


def assert_pool_intact(pool: PostgresPool) -> None:
    """Nothing checked out, nothing waiting, and every connection usable."""
    stats = pool.get_stats()
    assert stats.get("requests_waiting", 0) == 0
    assert stats["pool_size"] == stats["pool_available"], stats
    held = [pool.getconn(timeout=5) for _ in range(pool.max_size)]
    try:
        for conn in held:
            assert not conn.closed
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in held:
            pool.putconn(conn)


@pytest.fixture
def compat(pg: Server) -> Iterator[PostgresConnection]:
    component = opened(pg, psycopg2_compat=True, max_pool_size=4)
    try:
        yield component
    finally:
        component.close(None)


@pytest.mark.parametrize("kind", PERSISTENCES)
def test_published_persistence_crud_on_our_component(
    pg: Server, compat: PostgresConnection, kind: type[Any]
) -> None:
    table = table_name()
    persistence = wire(kind(table), compat)
    try:
        assert table_exists(pg, table)  # the DDL ran, and was committed
        one = persistence.create(None, Dummy(None, "key 1", "Content 1"))
        two = persistence.create(None, Dummy(None, "key 2", "Content 2"))
        assert one.key == "key 1" and one.id is not None
        assert persistence.get_one_by_id(None, one.id).content == "Content 1"

        one.content = "Updated 1"
        updated = persistence.update(None, one)
        assert updated.id == one.id and updated.content == "Updated 1"

        partial = persistence.update_partially(
            None, two.id, AnyValueMap.from_tuples("content", "Partial 2")
        )
        assert partial.id == two.id and partial.content == "Partial 2"

        page = persistence.get_page_by_filter(
            None, FilterParams.from_tuples("key", "key 2"), PagingParams(0, 10, True)
        )
        assert [item.id for item in page.data] == [two.id]
        assert page.total == 1

        listed = persistence.get_list_by_ids(None, [one.id, two.id])
        assert {item.id for item in listed} == {one.id, two.id}

        deleted = persistence.delete_by_id(None, one.id)
        assert deleted.id == one.id
        assert persistence.get_one_by_id(None, one.id) is None

        put = persistence.set(None, Dummy("three", "key 3", "Content 3"))
        assert put.id == "three"
        persistence.delete_by_ids(None, [two.id, "three"])
        assert persistence.get_list_by_ids(None, [two.id, "three"]) == []

        persistence.create(None, Dummy(None, "key 4", "Content 4"))
        persistence.clear(None)
        assert admin_query(pg, f'SELECT count(*) FROM "{table}"')[0][0] == 0
        assert_pool_intact(pool_of(compat))
    finally:
        persistence.close(None)
        admin_query(pg, f'DROP TABLE IF EXISTS "{table}"')


def test_without_the_option_ddl_and_writes_fail(pg: Server) -> None:
    # What options.psycopg2_compat fixes: the published class catches psycopg2's error only,
    # so psycopg's escapes, and the connection is given back before the commit (rolled back).
    component = opened(pg, max_pool_size=2)
    table = table_name()
    persistence = DummyPersistence(table)
    try:
        wire(persistence, component)
        assert not table_exists(pg, table)  # the CREATE TABLE was rolled back
        with pytest.raises(psycopg.errors.UndefinedTable):
            persistence.create(None, Dummy(None, "key 1", "Content 1"))
        with component.connection() as conn:
            conn.execute(
                f'CREATE TABLE "{table}" ("id" TEXT PRIMARY KEY, "key" TEXT, "content" TEXT)'
            )
        persistence.set(None, Dummy("one", "key 1", "Content 1"))  # RETURNING: works
        with pytest.raises(psycopg.ProgrammingError) as caught:
            persistence.delete_by_ids(None, ["one"])  # no result: psycopg's error escapes
        assert not isinstance(caught.value, psycopg2.ProgrammingError)
        assert admin_query(pg, f'SELECT count(*) FROM "{table}"')[0][0] == 1  # rolled back
        assert_pool_intact(pool_of(component))  # yet no slot was lost
    finally:
        persistence.close(None)
        component.close(None)
        admin_query(pg, f'DROP TABLE IF EXISTS "{table}"')


@pytest.mark.parametrize("compat_on", [False, True])
def test_fetch_without_a_result(pg: Server, compat_on: bool) -> None:
    component = opened(pg, psycopg2_compat=compat_on)
    try:
        with component.connection() as conn, conn.cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE fetched (x int)")
            for fetch in (cursor.fetchall, cursor.fetchone, lambda: cursor.fetchmany(2)):
                with pytest.raises(psycopg.ProgrammingError) as caught:
                    fetch()
                assert isinstance(caught.value, psycopg2.ProgrammingError) is compat_on
                assert isinstance(caught.value, Psycopg2CompatError) is compat_on
            cursor.execute("SELECT 1")  # with a result, fetching works as before
            assert cursor.fetchall() == [(1,)]
    finally:
        component.close(None)


def test_published_classes_under_eight_threads_leave_the_pool_intact(
    pg: Server, compat: PostgresConnection
) -> None:
    table = table_name()
    persistence = wire(DummyPersistence(table), compat)
    errors: list[BaseException] = []
    calls = 25

    def work(worker: int) -> None:
        try:
            for call in range(calls):
                item = persistence.create(None, Dummy(None, f"k{worker}-{call}", "c"))
                assert persistence.get_one_by_id(None, item.id).key == item.key
                persistence.delete_by_ids(None, [item.id])
        except BaseException as error:
            errors.append(error)

    try:
        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert admin_query(pg, f'SELECT count(*) FROM "{table}"')[0][0] == 0
        assert_pool_intact(pool_of(compat))
    finally:
        persistence.close(None)
        admin_query(pg, f'DROP TABLE IF EXISTS "{table}"')
