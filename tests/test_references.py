"""Discovery services, credential stores and containers: the real pip-services parts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pip_services4_commons.errors import ConfigException
from pip_services4_components.config import ConfigParams
from pip_services4_components.refer import Descriptor, References
from pip_services4_config.auth import MemoryCredentialStore
from pip_services4_config.connect import MemoryDiscovery
from pip_services4_container.container import Container

from pip_postgres import DefaultPostgresFactory, PostgresConnection, PostgresConnectionResolver

from .conftest import Server

DISCOVERY = Descriptor("pip-services", "discovery", "memory", "default", "1.0")
STORE = Descriptor("pip-services", "credential-store", "memory", "default", "1.0")


def discovery_for(pg: Server, key: str = "main-db") -> MemoryDiscovery:
    return MemoryDiscovery(
        ConfigParams.from_tuples(
            f"{key}.host", pg.host, f"{key}.port", pg.port, f"{key}.database", pg.database
        )
    )


def store_for(pg: Server, key: str = "main-cred") -> MemoryCredentialStore:
    return MemoryCredentialStore(
        ConfigParams.from_tuples(f"{key}.username", pg.user, f"{key}.password", pg.password)
    )


def check_works(component: PostgresConnection, pg: Server) -> None:
    component.open(None)
    try:
        with component.connection() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (pg.user,)
        assert component.get_database_name() == pg.database
    finally:
        component.close(None)


def test_connection_from_discovery_and_credential_from_store(pg: Server) -> None:
    component = PostgresConnection()
    component.configure(
        ConfigParams.from_tuples(
            "connection.discovery_key", "main-db", "credential.store_key", "main-cred"
        )
    )
    component.set_references(
        References.from_tuples(DISCOVERY, discovery_for(pg), STORE, store_for(pg))
    )
    check_works(component, pg)


def test_inline_credential_with_discovered_connection(pg: Server) -> None:
    component = PostgresConnection()
    component.configure(
        ConfigParams.from_tuples(
            "connection.discovery_key",
            "main-db",
            "credential.username",
            pg.user,
            "credential.password",
            pg.password,
        )
    )
    component.set_references(References.from_tuples(DISCOVERY, discovery_for(pg)))
    check_works(component, pg)


def test_missing_discovery_is_a_config_error_from_open() -> None:
    component = PostgresConnection()
    component.configure(ConfigParams.from_tuples("connection.discovery_key", "main-db"))
    component.set_references(References())
    with pytest.raises(
        ConfigException, match=r"connection\.discovery_key: 'main-db' needs a discovery"
    ):
        component.open(None)
    assert not component.is_open()


def test_unknown_discovery_key(pg: Server) -> None:
    component = PostgresConnection()
    component.configure(ConfigParams.from_tuples("connection.discovery_key", "other"))
    component.set_references(References.from_tuples(DISCOVERY, discovery_for(pg)))
    with pytest.raises(ConfigException, match="no discovery service has a connection for 'other'"):
        component.open(None)


def test_bad_value_from_discovery_names_its_origin() -> None:
    discovery = MemoryDiscovery(ConfigParams.from_tuples("db.host", "h", "db.port", "not-a-port"))
    component = PostgresConnection()
    component.configure(ConfigParams.from_tuples("connection.discovery_key", "db"))
    component.set_references(References.from_tuples(DISCOVERY, discovery))
    with pytest.raises(ConfigException) as info:
        component.open(None)
    assert "connection.[discovery 'db' #1].port: must be a whole number" in str(info.value)


def test_missing_credential_store_and_unknown_key(pg: Server) -> None:
    component = PostgresConnection()
    component.configure(
        ConfigParams.from_tuples(
            "connection.host", pg.host, "connection.port", pg.port, "credential.store_key", "k"
        )
    )
    with pytest.raises(
        ConfigException, match=r"credential\.store_key: 'k' needs a credential store"
    ):
        component.open(None)
    component.set_references(References.from_tuples(STORE, store_for(pg)))
    with pytest.raises(ConfigException, match="no credential store has a credential for 'k'"):
        component.open(None)


def test_discovery_with_several_connections_fails_over(pg: Server) -> None:
    discovery = MemoryDiscovery()
    discovery.register(None, "db", ConfigParams.from_tuples("host", "127.0.0.1", "port", 1))
    discovery.register(
        None,
        "db",
        ConfigParams.from_tuples("host", pg.host, "port", pg.port, "database", pg.database),
    )
    resolver = PostgresConnectionResolver()
    resolver.configure(ConfigParams.from_tuples("connection.discovery_key", "db"))
    resolver.set_references(References.from_tuples(DISCOVERY, discovery))
    config = resolver.resolve(None)
    assert [e.port for e in config.endpoints] == [1, pg.port]


def test_reconfigure_replaces_connections() -> None:
    resolver = PostgresConnectionResolver()
    resolver.configure(ConfigParams.from_tuples("connection.host", "first"))
    resolver.configure(ConfigParams.from_tuples("connection.host", "second"))
    assert [e.host for e in resolver.resolve(None).endpoints] == ["second"]


def test_factory_creates_the_component() -> None:
    factory = DefaultPostgresFactory()
    descriptor = Descriptor("pip-services", "connection", "postgres", "default", "1.0")
    assert factory.can_create(descriptor) is not None
    assert isinstance(factory.create(descriptor), PostgresConnection)


def test_container_from_yaml(pg: Server, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        textwrap.dedent(
            """\
            ---
            - descriptor: "pip-services:logger:console:default:1.0"
              level: "info"
            - descriptor: "pip-services:discovery:memory:default:1.0"
              main-db:
                host: "{{PG_HOST}}"
                port: "{{PG_PORT}}"
                database: "{{PG_DATABASE}}"
            - descriptor: "pip-services:credential-store:memory:default:1.0"
              main-cred:
                username: "{{PG_USER}}"
                password: "{{PG_PASSWORD}}"
            - descriptor: "pip-services:connection:postgres:default:1.0"
              connection:
                discovery_key: "main-db"
              credential:
                store_key: "main-cred"
              options:
                max_pool_size: "{{MAX_POOL}}"
            """
        )
    )
    container = Container("test", "pip_postgres container test")
    container.add_factory(DefaultPostgresFactory())
    container.read_config_from_file(
        None,
        str(config_file),
        ConfigParams.from_tuples(
            "PG_HOST",
            pg.host,
            "PG_PORT",
            pg.port,
            "PG_DATABASE",
            pg.database,
            "PG_USER",
            pg.user,
            "PG_PASSWORD",
            pg.password,
            "MAX_POOL",
            3,
        ),
    )
    container.open(None)
    try:
        components = container._references.get_optional(
            Descriptor("pip-services", "connection", "postgres", "*", "1.0")
        )
        assert len(components) == 1
        component = components[0]
        assert isinstance(component, PostgresConnection)
        assert component.is_open()
        pool = component.get_connection()
        assert pool is not None and pool.max_size == 3
        with component.connection() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (pg.user,)
    finally:
        container.close(None)
    assert not component.is_open()
