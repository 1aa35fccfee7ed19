"""PostgreSQL connection component for Pip.Services 4, on psycopg 3 and psycopg_pool.

The public names are exported here; :mod:`pip_postgres.embedded` (a throwaway server for
demos and tests) needs the ``embedded`` extra and is imported on its own.
"""

from .config import (
    DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_PORT,
    Endpoint,
    PostgresConfig,
    PostgresOptions,
)
from .connection import PostgresConnection
from .connection_async import AsyncPostgresConnection
from .factory import DefaultPostgresFactory
from .persistence import (
    IdentifiableJsonPostgresPersistence,
    IdentifiablePostgresPersistence,
    PostgresPersistence,
)
from .pool import CheckoutTimeout, Leak, PooledConnection, PostgresPool, Psycopg2CompatError
from .pool_async import AsyncPooledConnection, AsyncPostgresPool
from .resolver import CredentialStore, Discovery, PostgresConnectionResolver

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_MS",
    "DEFAULT_PORT",
    "AsyncPooledConnection",
    "AsyncPostgresConnection",
    "AsyncPostgresPool",
    "CheckoutTimeout",
    "CredentialStore",
    "DefaultPostgresFactory",
    "Discovery",
    "Endpoint",
    "IdentifiableJsonPostgresPersistence",
    "IdentifiablePostgresPersistence",
    "Leak",
    "PooledConnection",
    "PostgresConfig",
    "PostgresConnection",
    "PostgresConnectionResolver",
    "PostgresOptions",
    "PostgresPersistence",
    "PostgresPool",
    "Psycopg2CompatError",
]

__version__ = "0.1.0"
