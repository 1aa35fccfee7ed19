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
from .connection import CheckoutTimeout, PostgresConnection
from .factory import DefaultPostgresFactory
from .resolver import CredentialStore, Discovery, PostgresConnectionResolver

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_MS",
    "DEFAULT_PORT",
    "CheckoutTimeout",
    "CredentialStore",
    "DefaultPostgresFactory",
    "Discovery",
    "Endpoint",
    "PostgresConfig",
    "PostgresConnection",
    "PostgresConnectionResolver",
    "PostgresOptions",
]

__version__ = "0.1.0"
