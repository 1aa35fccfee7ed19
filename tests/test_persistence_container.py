"""A real pip-services container wires one connection and two persistence components."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

from pip_services4_components.build import Factory
from pip_services4_components.config import ConfigParams
from pip_services4_components.refer import Descriptor
from pip_services4_container.container import Container
from psycopg import sql

from pip_postgres import (
    DefaultPostgresFactory,
    IdentifiableJsonPostgresPersistence,
    IdentifiablePostgresPersistence,
    PostgresConnection,
)

from .conftest import Server, admin_query, backends

Item = dict[str, Any]

RELATIONAL = Descriptor("test", "persistence", "postgres", "relational", "1.0")
JSON = Descriptor("test", "persistence", "postgres", "json", "1.0")


class Sites(IdentifiablePostgresPersistence[Item, str]):
    def _define_schema(self) -> None:
        self._ensure_schema(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, name TEXT)").format(
                self._table_identifier()
            )
        )


class Documents(IdentifiableJsonPostgresPersistence[Item, str]):
    def _define_schema(self) -> None:
        self._ensure_table()


class PersistenceFactory(Factory):
    def __init__(self) -> None:
        super().__init__()
        self.register_as_type(RELATIONAL, Sites)
        self.register_as_type(JSON, Documents)


def test_container_shares_one_connection_between_two_persistences(
    pg: Server, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    sites, documents, app = f"sites_{suffix}", f"documents_{suffix}", f"persist_{suffix}"
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        textwrap.dedent(
            """\
            ---
            - descriptor: "pip-services:logger:console:default:1.0"
              level: "warn"
            - descriptor: "pip-services:connection:postgres:default:1.0"
              connection:
                host: "{{PG_HOST}}"
                port: "{{PG_PORT}}"
                database: "{{PG_DATABASE}}"
              credential:
                username: "{{PG_USER}}"
                password: "{{PG_PASSWORD}}"
              options:
                max_pool_size: 3
                application_name: "{{APP}}"
            - descriptor: "test:persistence:postgres:relational:1.0"
              table: "{{SITES}}"
            - descriptor: "test:persistence:postgres:json:1.0"
              table: "{{DOCUMENTS}}"
              options:
                max_page_size: 5
            """
        )
    )
    container = Container("test", "persistence container test")
    container.add_factory(DefaultPostgresFactory())
    container.add_factory(PersistenceFactory())
    container.read_config_from_file(
        None,
        str(config_file),
        ConfigParams.from_tuples(
            "PG_HOST", pg.host, "PG_PORT", pg.port, "PG_DATABASE", pg.database,
            "PG_USER", pg.user, "PG_PASSWORD", pg.password,
            "APP", app, "SITES", sites, "DOCUMENTS", documents,
        ),
    )  # fmt: skip
    container.open(None)
    try:
        references = container._references
        connection = references.get_one_required(
            Descriptor("pip-services", "connection", "postgres", "*", "1.0")
        )
        site_store = references.get_one_required(RELATIONAL)
        document_store = references.get_one_required(JSON)
        assert isinstance(connection, PostgresConnection)
        assert isinstance(site_store, Sites) and isinstance(document_store, Documents)
        assert site_store.is_open() and document_store.is_open()
        assert site_store._connection is connection is document_store._connection
        pool = connection.get_connection()
        assert pool is not None and pool.max_size == 3

        site = site_store.create(None, {"name": "HQ"})
        assert site is not None
        for number in range(7):
            document_store.create(None, {"id": f"d{number}", "site_id": site["id"]})
        by_site = sql.SQL("data->>'site_id' = %s")
        page = document_store.get_page_by_filter(None, by_site, None, params=[site["id"]])
        assert len(page.data) == 5  # the component's own options.max_page_size
        assert document_store.get_count_by_filter(None, by_site, params=[site["id"]]) == 7
        assert site_store.get_one_by_id(None, site["id"]) == site
        assert 1 <= len(backends(pg, app)) <= 3  # both went through the one pool
    finally:
        container.close(None)
    assert not site_store.is_open() and not document_store.is_open()
    assert not connection.is_open()
    assert backends(pg, app) == []
    admin_query(pg, f"DROP TABLE {sites}, {documents}")
