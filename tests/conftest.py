"""Shared fixtures: one real PostgreSQL server for the whole session.

The suite starts an embedded server (``pip_postgres.embedded``) listening on 127.0.0.1 with
scram-sha-256 password authentication, unless ``PIP_POSTGRES_TEST_URI`` points it at an
existing server.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pip_services4_components.config import ConfigParams
from pip_services4_components.refer import Descriptor, References
from pip_services4_observability.log import ConsoleLogger, LogLevel

from pip_postgres import PostgresConnection
from pip_postgres.embedded import EmbeddedPostgres, ExternalPostgres, server_for_tests

Server = EmbeddedPostgres | ExternalPostgres


@pytest.fixture(scope="session")
def pg() -> Iterator[Server]:
    server = server_for_tests()
    try:
        yield server
    finally:
        if isinstance(server, EmbeddedPostgres):
            server.stop()


def base_config(pg: Server, **extra: Any) -> ConfigParams:
    """A configuration for the test server, plus ``extra`` keys ("options.max_pool_size"...)."""
    values: dict[str, Any] = {
        "connection.host": pg.host,
        "connection.port": pg.port,
        "connection.database": pg.database,
        "credential.username": pg.user,
        "credential.password": pg.password,
    }
    values.update({key.replace("__", "."): value for key, value in extra.items()})
    return ConfigParams.from_value({k: v for k, v in values.items() if v is not None})


@pytest.fixture
def component(pg: Server) -> Iterator[PostgresConnection]:
    """An open component on the test server, closed after the test."""
    connection = PostgresConnection()
    connection.configure(base_config(pg))
    connection.open(None)
    try:
        yield connection
    finally:
        connection.close(None)


def admin_query(pg: Server, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a connection of its own (superuser on the embedded server)."""
    with psycopg.connect(pg.superuser_conninfo(), autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def backends(pg: Server, application_name: str) -> list[tuple[Any, ...]]:
    """(pid, state) of the server's client backends with this application name."""
    return admin_query(
        pg,
        "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s "
        "AND backend_type = 'client backend'",
        (application_name,),
    )


class LogCapture:
    """A real Pip.Services ConsoleLogger whose output the test can read."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.logger = ConsoleLogger()
        self.logger.set_level(LogLevel.Trace)
        self.references = References.from_tuples(
            Descriptor("pip-services", "logger", "console", "default", "1.0"), self.logger
        )
        self._seen = io.StringIO()

    def text(self) -> str:
        out, err = self._capsys.readouterr()
        self._seen.write(out + err)
        return self._seen.getvalue()


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> LogCapture:
    return LogCapture(capsys)


def _anyio_backends() -> list[Any]:
    backends: list[Any] = [pytest.param("asyncio", id="asyncio")]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return backends
    return [*backends, pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]


@pytest.fixture(params=_anyio_backends())
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The event loops the async tests run on: asyncio, and asyncio with uvloop if installed."""
    return request.param
