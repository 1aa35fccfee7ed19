"""The :class:`AsyncPostgresConnection` component, for asyncio applications.

The same configuration, resolver, discovery and credential stores, the same guarantees; the
pool is a :class:`psycopg_pool.AsyncConnectionPool`
(:class:`~pip_postgres.pool_async.AsyncPostgresPool`).
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from pip_services4_commons.errors import InvalidStateException
from pip_services4_components.config import IConfigurable
from pip_services4_components.context import IContext
from pip_services4_components.refer import IReferenceable

from . import fork
from .config import PostgresConfig
from .connection import _Held, _PostgresComponent
from .pool_async import AsyncPooledConnection, AsyncPostgresPool

__all__ = ["AsyncPostgresConnection"]


class _AsyncCheckout(
    _Held[AsyncPostgresPool, AsyncPooledConnection],
    AbstractAsyncContextManager[psycopg.AsyncConnection[Any]],
):
    """Async context manager for one checkout: see :meth:`AsyncPostgresConnection.connection`."""

    __slots__ = ()

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        self._conn = await self._pool.getconn(self._timeout)
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        conn, pool = self._take(), self._pool
        try:
            # pool.finish(), without a coroutine when there is nothing to send
            sql = pool._end_statement(conn, exc_type is None)
            if sql is not None:
                await pool._send_end(conn, sql)
        except BaseException as error:
            # The connection's state is unknown (a failed COMMIT, or the task cancelled again
            # while its checkout ended): closed (which never suspends), the pool replaces it.
            await conn.close()
            if exc_type is None or not isinstance(error, Exception):
                raise
        finally:
            await self._pool.putconn(conn)


class AsyncPostgresConnection(_PostgresComponent, IReferenceable, IConfigurable):
    """PostgreSQL connection pool shared by the components of an asyncio service.

    Configured exactly as :class:`~pip_postgres.PostgresConnection` (same keys, same
    options, same resolver, discovery services and credential stores); :meth:`open` and
    :meth:`close` are coroutines, and the pool is a :class:`psycopg_pool.AsyncConnectionPool`.
    The Pip.Services ``IOpenable`` interface is synchronous, so a container does not open
    this component: the application does, in its event loop (see :doc:`/async`).

    Example::

        connection = AsyncPostgresConnection()
        connection.configure(ConfigParams.from_tuples(
            "connection.host", "localhost", "connection.database", "app",
            "credential.username", "app", "credential.password", "secret",
        ))
        await connection.open(None)
        async with connection.connection() as conn:
            await conn.execute("INSERT INTO t VALUES (1)")   # committed on exit
        await connection.close(None)
    """

    def __init__(self) -> None:
        super().__init__()
        #: The pool, a :class:`psycopg_pool.AsyncConnectionPool`; ``None`` while closed.
        self._connection: AsyncPostgresPool | None = None
        self._lock: asyncio.Lock | None = None

    def _guard(self) -> asyncio.Lock:
        # Made in the event loop that opens the component (Python 3.10 binds a lock to the
        # loop of its creation).
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def is_open(self) -> bool:
        """Check whether the component is open.

        :return: ``True`` between a successful :meth:`open` and :meth:`close`.
        """
        return self._connection is not None

    async def open(self, context: IContext | None) -> None:
        """Open the pool and prove that it works; does nothing if the component is open.

        As :meth:`pip_postgres.PostgresConnection.open`: a first connection is made directly,
        so that a wrong password, a missing database or an unreachable server fails here with
        the server's own reason, within ``options.connect_timeout``; then the pool opens and
        waits for ``options.min_pool_size`` connections. A failed open leaves no pool, task or
        connection behind. Discovery services and credential stores are called synchronously.

        :param context: (optional) context to trace execution through a call chain.
        :raises ConfigException: the configuration, or what discovery or a credential store
            supplied, is invalid.
        :raises ConnectionException: the server cannot be reached or refuses the connection.
        """
        async with self._guard():
            if self._connection is not None:
                return
            config = self._connection_resolver.resolve(context, self._pool_options)
            self._database_name = await self._probe(context, config)
            self._connection, self._config = await self._start(context, config), config
            fork.watch(self)
        self._log_opened(context, config)

    async def _probe(self, context: IContext | None, config: PostgresConfig) -> str:
        failure: Exception
        try:
            conn = await psycopg.AsyncConnection.connect(
                config.conninfo(), **config.connect_kwargs()
            )
            async with conn:
                return conn.info.dbname
        # The resolver raises UnicodeError for a host name it cannot encode (IDNA).
        except (psycopg.Error, UnicodeError, OSError) as error:
            failure = error
        raise self._connect_failed(context, config, failure)

    async def _start(self, context: IContext | None, config: PostgresConfig) -> AsyncPostgresPool:
        """Create and open a pool, and wait until it holds ``min_pool_size`` connections."""
        pool = AsyncPostgresPool(config.conninfo(), **self._pool_arguments(config, context))
        failure: Exception
        try:
            await pool.open(wait=True, timeout=config.options.connect_timeout)
            return pool
        except BaseException as error:
            await pool.close(timeout=config.options.shutdown_timeout)
            if not isinstance(error, Exception):
                raise
            failure = error
        raise self._connect_failed(context, config, failure)

    async def close(self, context: IContext | None) -> None:
        """Close the pool and free its connections; does nothing if the component is closed.

        As :meth:`pip_postgres.PostgresConnection.close`: waiting callers fail at once with
        :class:`psycopg_pool.PoolClosed`; connections still checked out may finish for up to
        ``options.shutdown_timeout``, then their queries are cancelled and they are cut. The
        component can be opened again.

        :param context: (optional) context to trace execution through a call chain.
        """
        async with self._guard():
            pool, config = self._connection, self._config
            self._connection = None
            if pool is None or config is None:
                return
            cut = await pool.shutdown(config.options.shutdown_timeout)
        self._log_closed(context, config, cut)

    def after_fork_in_child(self) -> None:
        """Let go of the parent's pool in a child process; called right after ``os.fork()``.

        The inherited connections are released without a word to the server (see
        :func:`pip_postgres.fork.release`), so the parent's sessions go on. Unlike
        :class:`~pip_postgres.PostgresConnection`, the component is then closed: the parent's
        event loop does not run in the child, so the child opens it again in its own. Not
        called by applications: :mod:`pip_postgres.fork` calls it.
        """
        self._lock = None  # bound to the parent's event loop
        pool, self._connection = self._connection, None
        if pool is not None:
            pool.detach_after_fork()

    def get_connection(self) -> AsyncPostgresPool | None:
        """Get the shared pool, as the Pip.Services persistence components expect.

        :return: the open pool, a :class:`psycopg_pool.AsyncConnectionPool` (use its
            ``connection()``, or ``getconn()``/``putconn()``), or ``None`` while closed.
        """
        return self._connection

    def connection(
        self, timeout: float | None = None
    ) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """Check a connection out of the pool, as an async context manager.

        On leaving the block the transaction is committed, or rolled back if the block
        raised (a cancellation too); session settings changed with ``SET`` are reset; the
        connection always goes back to the pool, even if the task is cancelled::

            async with component.connection() as conn:
                await conn.execute("UPDATE accounts SET balance = balance - 1 WHERE id = 1")

        :param timeout: the longest to wait for a free connection, in seconds, more than 0;
            default ``options.connect_timeout``.
        :return: an async context manager that yields a :class:`psycopg.AsyncConnection`.
        :raises InvalidStateException: the component is not open.
        :raises CheckoutTimeout: no connection was free in time; or ``timeout`` is 0 or less,
            or NaN.
        """
        pool = self._connection
        if pool is None:
            raise InvalidStateException(
                None, "NOT_OPENED", "AsyncPostgresConnection is not open: call open() first"
            )
        return _AsyncCheckout(pool, timeout)
