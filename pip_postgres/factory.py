"""Factory that lets Pip.Services containers create :class:`~pip_postgres.PostgresConnection`."""

from __future__ import annotations

from pip_services4_components.build import Factory
from pip_services4_components.refer import Descriptor

from .connection import PostgresConnection
from .connection_async import AsyncPostgresConnection

__all__ = ["DefaultPostgresFactory"]


class DefaultPostgresFactory(Factory):
    """Creates PostgreSQL components by their descriptors.

    Registers :class:`~pip_postgres.PostgresConnection` as
    ``pip-services:connection:postgres:*:1.0``, and
    :class:`~pip_postgres.AsyncPostgresConnection` as
    ``pip-services:connection:postgres-async:*:1.0`` (a container creates, configures and
    references it; the application opens it in its event loop). In a container
    configuration::

        - descriptor: "pip-services:connection:postgres:default:1.0"
          connection:
            host: localhost
            database: app
          credential:
            username: app
            password: "{{POSTGRES_PASSWORD}}"
    """

    #: The descriptor :class:`~pip_postgres.PostgresConnection` is created for.
    PostgresConnectionDescriptor = Descriptor("pip-services", "connection", "postgres", "*", "1.0")
    #: The descriptor :class:`~pip_postgres.AsyncPostgresConnection` is created for.
    AsyncPostgresConnectionDescriptor = Descriptor(
        "pip-services", "connection", "postgres-async", "*", "1.0"
    )

    def __init__(self) -> None:
        super().__init__()
        self.register_as_type(
            DefaultPostgresFactory.PostgresConnectionDescriptor, PostgresConnection
        )
        self.register_as_type(
            DefaultPostgresFactory.AsyncPostgresConnectionDescriptor, AsyncPostgresConnection
        )
