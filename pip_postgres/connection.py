"""The :class:`PostgresConnection` component.

A psycopg_pool pool shared by the components of a service, with a Pip.Services lifecycle.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

import psycopg
from pip_services4_commons.errors import ConnectionException, InvalidStateException
from pip_services4_components.config import ConfigParams, IConfigurable
from pip_services4_components.context import ContextResolver, IContext
from pip_services4_components.refer import IReferenceable, IReferences
from pip_services4_components.run import IOpenable
from pip_services4_observability.log import CompositeLogger

from . import fork
from .config import PostgresConfig, PostgresOptions
from .pool import Leak, PooledConnection, PostgresPool
from .redaction import redact, shows_secret
from .resolver import PostgresConnectionResolver

__all__ = ["PostgresConnection"]

_P = TypeVar("_P")
_C = TypeVar("_C")


class _Held(Generic[_P, _C]):
    """One checkout's pool, timeout and connection (the sync and async context managers)."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: _P, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: _C | None = None

    def _take(self) -> _C:
        """The connection checked out, which the checkout no longer holds."""
        conn = self._conn
        assert conn is not None
        self._conn = None
        return conn


class _Checkout(
    _Held[PostgresPool, PooledConnection], AbstractContextManager[psycopg.Connection[Any]]
):
    """Context manager for one checkout: see :meth:`PostgresConnection.connection`."""

    __slots__ = ()

    def __enter__(self) -> psycopg.Connection[Any]:
        self._conn = self._pool._checkout(self._timeout)  # getconn() without its key handling
        return self._conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn, pool = self._take(), self._pool
        try:
            # pool.finish(), without a call when there is nothing to send
            sql = pool._end_statement(conn, exc_type is None)
            if sql is not None:
                pool._send_end(conn, sql)
        except BaseException:
            # The connection's state is unknown: the pool replaces a closed one.
            conn.close()
            if exc_type is None:
                raise
        finally:
            pool.putconn(conn)


class _PostgresComponent:
    """The part of a component that does no I/O, shared by the sync and async components.

    Configuration, references, the failed-connection error, the pool's arguments, the log
    lines and the ``repr``: :class:`PostgresConnection` and
    :class:`~pip_postgres.AsyncPostgresConnection` differ only in how they wait.
    """

    def __init__(self) -> None:
        #: The logger.
        self._logger: CompositeLogger = CompositeLogger()
        #: The connection resolver.
        self._connection_resolver: PostgresConnectionResolver = PostgresConnectionResolver()
        #: The ``options`` section as configured.
        self._options: ConfigParams = ConfigParams()
        #: The ``options`` section, parsed.
        self._pool_options: PostgresOptions = PostgresOptions()
        #: The database name, as the server reported it at :meth:`open`.
        self._database_name: str | None = None
        self._config: PostgresConfig | None = None

    def configure(self, config: ConfigParams) -> None:
        """Configure the component; takes effect at the next :meth:`open`.

        :param config: configuration parameters, see the class description.
        :raises ConfigException: a value is missing, malformed or out of range; the message
            names the key.
        """
        options = config.get_section("options")
        pool_options = PostgresOptions.from_config(options)
        self._connection_resolver.configure(config)
        self._options, self._pool_options = options, pool_options

    def set_references(self, references: IReferences) -> None:
        """Set references to loggers, discovery services and credential stores.

        :param references: references to locate the component dependencies.
        """
        self._logger.set_references(references)
        self._connection_resolver.set_references(references)

    def _connect_failed(
        self, context: IContext | None, config: PostgresConfig, error: Exception
    ) -> ConnectionException:
        """The exception for a failed connection; the caller raises it outside any handler.

        Its message, ``cause`` and ``stack_trace`` never hold a secret. The driver's exception
        is its ``__cause__`` and ``cause`` if nothing in that exception's chain shows a
        secret; otherwise only the redacted reason is kept.
        """
        secrets = config.secrets()
        reason = redact(str(error).strip() or type(error).__name__, secrets)
        if isinstance(error, UnicodeError):
            reason = (
                f"the resolver refused a host name of connection.host or connection.uri ({reason})"
            )
        message = f"Could not connect to PostgreSQL at {config.describe()}: {reason}"
        exception = ConnectionException(
            ContextResolver.get_trace_id(context), "CONNECT_FAILED", message
        )
        if shows_secret(error, secrets):
            exception.with_cause(Exception(reason))
        else:
            exception.with_cause(error)
            exception.__cause__ = error
        self._logger.error(context, exception, "Failed to open PostgreSQL connection")
        return exception

    def _pool_arguments(self, config: PostgresConfig, context: IContext | None) -> dict[str, Any]:
        """The keyword arguments of the pool (after ``conninfo``), from the options."""
        options = config.options

        def on_leak(leak: Leak) -> None:
            # The stack shows source lines of the caller's code, which might quote a secret.
            stack = redact(leak.stack, config.secrets())
            self._logger.warn(
                context,
                "Connection leak suspected: a connection of pool %s has been checked out "
                "for %.1f s and not returned. It was checked out at:\n%s",
                leak.pool,
                leak.held,
                stack,
            )

        return dict(
            kwargs=config.connect_kwargs(),
            validation_bypass=options.validation_bypass,
            leak_threshold=options.leak_detection_threshold,
            on_leak=on_leak,
            reset_session=options.reset_session,
            idle_order=options.idle_order,
            begin_with_statement=options.begin_with_statement,
            min_size=options.min_pool_size,
            max_size=options.max_pool_size,
            timeout=options.connect_timeout,
            max_idle=options.idle_timeout,
            max_lifetime=options.max_lifetime,
            max_waiting=options.max_waiting,
            reconnect_timeout=options.reconnect_timeout,
            name=f"pip_postgres-{config.describe()}",
        )

    def get_database_name(self) -> str | None:
        """Get the database name, as the server reported it when the component opened.

        :return: the database name, or ``None`` before the first :meth:`open`.
        """
        return self._database_name

    def _log_opened(self, context: IContext | None, config: PostgresConfig) -> None:
        self._logger.info(
            context,
            "Connected to PostgreSQL %s as %s (pool %s..%s)",
            config.describe(),
            config.username or "the default user",
            config.options.min_pool_size,
            config.options.max_pool_size,
        )

    def _log_closed(self, context: IContext | None, config: PostgresConfig, cut: int) -> None:
        if cut:
            self._logger.warn(
                context,
                "Cut %s connections still checked out %.1f s after close() of %s",
                cut,
                config.options.shutdown_timeout,
                config.describe(),
            )
        self._logger.info(context, "Disconnected from PostgreSQL %s", config.describe())

    def is_open(self) -> bool:
        """Check whether the component is open."""
        raise NotImplementedError

    def __repr__(self) -> str:
        state = f"open {self._config.describe()}" if self.is_open() and self._config else "closed"
        return f"<{type(self).__name__} {state}>"


class PostgresConnection(_PostgresComponent, IReferenceable, IConfigurable, IOpenable):
    """PostgreSQL connection pool shared by the components of a service.

    By defining a connection and sharing it through several persistence components, a service
    reduces the number of database connections it uses. The pool is a
    :class:`psycopg_pool.ConnectionPool`; :meth:`open` proves that it works before it returns.

    Configuration parameters:
        - connection(s):
            - discovery_key: (optional) key to retrieve the connection from ``IDiscovery``
            - host: host name or IP address
            - port: port number (default: 5432)
            - database: database name (default: the user name, as libpq does)
            - uri: ``postgresql://`` URI or libpq ``key=value`` string; explicit keys win
        - credential(s):
            - store_key: (optional) key to retrieve the credential from ``ICredentialStore``
            - username: user name
            - password: user's password
        - options: see :class:`~pip_postgres.PostgresOptions`
            - connect_timeout: (ms) checkout wait and connect bound (default: 0, i.e. 10000)
            - idle_timeout: (ms) idle time before a connection above the minimum is closed
              (default: 10000)
            - max_pool_size: maximum number of connections (default: 10)
            - min_pool_size, max_lifetime, max_waiting, autocommit, idle_order,
              begin_with_statement, application_name,
              ssl_mode, ssl_root_cert, ssl_cert, ssl_key, psycopg2_compat

    References:
        - ``*:logger:*:*:1.0``: (optional) loggers to pass log messages to
        - ``*:discovery:*:*:1.0``: (optional) discovery services to resolve connections
        - ``*:credential-store:*:*:1.0``: (optional) credential stores to resolve credentials

    Example::

        connection = PostgresConnection()
        connection.configure(ConfigParams.from_tuples(
            "connection.host", "localhost", "connection.database", "app",
            "credential.username", "app", "credential.password", "secret",
        ))
        connection.open(None)
        with connection.connection() as conn:
            conn.execute("INSERT INTO t VALUES (1)")   # committed on exit
        connection.close(None)
    """

    def __init__(self) -> None:
        super().__init__()
        #: The pool, a :class:`psycopg_pool.ConnectionPool`; ``None`` while closed.
        self._connection: PostgresPool | None = None
        #: Whether this is a forked child of the process that opened the component, and has
        #: not made its own pool yet (see :meth:`after_fork_in_child`).
        self._forked = False
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        """Check whether the component is open.

        :return: ``True`` between a successful :meth:`open` and :meth:`close`, also in a
            process forked in between (which opens a pool of its own at first use).
        """
        return self._connection is not None or self._forked

    def open(self, context: IContext | None) -> None:
        """Open the pool and prove that it works; does nothing if the component is open.

        A first connection is made directly, so that a wrong password, a missing database or
        an unreachable server fails here with the server's own reason, within
        ``options.connect_timeout``. Then the pool opens and waits until it holds
        ``options.min_pool_size`` connections. A failed open leaves no pool, thread or
        connection behind.

        :param context: (optional) context to trace execution through a call chain.
        :raises ConfigException: the configuration, or what discovery or a credential store
            supplied, is invalid.
        :raises ConnectionException: the server cannot be reached or refuses the connection.
        """
        with self._lock:
            if self._connection is not None:
                return
            config = self._connection_resolver.resolve(context, self._pool_options)
            self._database_name = self._probe(context, config)
            self._connection, self._config = self._start(context, config), config
            self._forked = False
            fork.watch(self)
        self._log_opened(context, config)

    def _probe(self, context: IContext | None, config: PostgresConfig) -> str:
        failure: Exception
        try:
            with psycopg.Connection.connect(config.conninfo(), **config.connect_kwargs()) as conn:
                return conn.info.dbname
        # The resolver raises UnicodeError for a host name it cannot encode (IDNA).
        except (psycopg.Error, UnicodeError, OSError) as error:
            failure = error
        raise self._connect_failed(context, config, failure)

    def _start(self, context: IContext | None, config: PostgresConfig) -> PostgresPool:
        """Create and open a pool, and wait until it holds ``min_pool_size`` connections."""
        pool = self._create_pool(config, context)
        failure: Exception
        try:
            pool.open(wait=True, timeout=config.options.connect_timeout)
            return pool
        except BaseException as error:
            pool.close(timeout=config.options.shutdown_timeout)
            if not isinstance(error, Exception):
                raise
            failure = error
        raise self._connect_failed(context, config, failure)

    def _create_pool(self, config: PostgresConfig, context: IContext | None) -> PostgresPool:
        return PostgresPool(
            config.conninfo(),
            psycopg2_compat=config.options.psycopg2_compat,
            **self._pool_arguments(config, context),
        )

    def close(self, context: IContext | None) -> None:
        """Close the pool and free its connections; does nothing if the component is closed.

        Callers waiting for a connection fail at once with :class:`psycopg_pool.PoolClosed`.
        Connections still checked out may finish for up to ``options.shutdown_timeout``
        (default 5 s); then their queries are cancelled and they are cut, so that ``close()``
        always returns in bounded time and leaves no session of the pool on the server. The
        component can be opened again.

        :param context: (optional) context to trace execution through a call chain.
        """
        with self._lock:
            pool, config = self._connection, self._config
            self._connection, self._forked = None, False
            if pool is None or config is None:
                return
            cut = pool.shutdown(config.options.shutdown_timeout)
        self._log_closed(context, config, cut)

    def get_connection(self) -> PostgresPool | None:
        """Get the shared pool, as the Pip.Services persistence components expect.

        In a process forked after :meth:`open`, the first call opens the child's own pool.

        :return: the open pool, a :class:`psycopg_pool.ConnectionPool` (use its
            ``connection()``, or ``getconn()``/``putconn()``), or ``None`` while the component
            is closed.
        :raises ConnectionException: in a forked process, the child's pool cannot be opened.
        """
        pool = self._connection
        if pool is None and self._forked:
            pool = self._reopen_after_fork()
        return pool

    def after_fork_in_child(self) -> None:
        """Let go of the parent's pool in a child process; called right after ``os.fork()``.

        The inherited connections are released without a word to the server, so the parent's
        sessions go on (see :func:`pip_postgres.fork.release`); a connection that was checked
        out in the parent at the moment of the fork is unusable in the child. The component
        stays open: the first :meth:`connection` or :meth:`get_connection` in the child opens
        a pool of its own, with the configuration the parent resolved. Not called by
        applications: :mod:`pip_postgres.fork` calls it.
        """
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork
        pool = self._connection
        if pool is None:
            return
        self._connection, self._forked = None, True
        pool.detach_after_fork()

    def _reopen_after_fork(self) -> PostgresPool | None:
        with self._lock:
            config = self._config
            if self._connection is None and self._forked and config is not None:
                self._connection = self._start(None, config)
                self._forked = False
                self._logger.info(
                    None,
                    "Opened a pool of its own for PostgreSQL %s in forked process %s",
                    config.describe(),
                    os.getpid(),
                )
            return self._connection

    def connection(
        self, timeout: float | None = None
    ) -> AbstractContextManager[psycopg.Connection[Any]]:
        """Check a connection out of the pool, as a context manager.

        On leaving the block the transaction is committed, or rolled back if the block
        raised; session settings changed with ``SET`` are reset (see
        ``options.reset_session``); and the connection always goes back to the pool::

            with component.connection() as conn:
                conn.execute("UPDATE accounts SET balance = balance - 1 WHERE id = %s", (1,))

        :param timeout: the longest to wait for a free connection, in seconds, more than 0;
            default ``options.connect_timeout``.
        :return: a context manager that yields a :class:`psycopg.Connection`.
        :raises InvalidStateException: the component is not open.
        :raises CheckoutTimeout: no connection was free in time; or ``timeout`` is 0 or less,
            or NaN.
        """
        pool, config = self.get_connection(), self._config
        if pool is None or config is None:
            raise InvalidStateException(
                None, "NOT_OPENED", "PostgresConnection is not open: call open() first"
            )
        return _Checkout(pool, timeout)
