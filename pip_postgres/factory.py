"""Factory that lets Pip.Services containers create :class:`~pip_postgres.PostgresConnection`."""

from __future__ import annotations

from pip_services4_components.build import Factory
from pip_services4_components.refer import Descriptor

from .connection import PostgresConnection

__all__ = ["DefaultPostgresFactory"]


class DefaultPostgresFactory(Factory):
    """Creates PostgreSQL components by their descriptors.

    Registers :class:`~pip_postgres.PostgresConnection` as
    ``pip-services:connection:postgres:*:1.0``. In a container configuration::

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

    def __init__(self) -> None:
        super().__init__()
        self.register_as_type(
            DefaultPostgresFactory.PostgresConnectionDescriptor, PostgresConnection
        )
