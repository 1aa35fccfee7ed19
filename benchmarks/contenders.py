"""The five contenders, and exactly what each one does per request.

Every contender opens a *session* on the target server: a held connection, a pool or a
component. A session offers the operations the workloads time:

- :meth:`Session.request`: check a connection out, run ``SELECT 1`` (or another statement
  that returns a row) and read its row, return the connection (committing first in
  transactional mode);
- :meth:`Session.checkout`: check a connection out and return it, with no query;
- :meth:`Session.worker`: a per-thread request that also reports how long the checkout waited;
- :meth:`Session.recovering_request`: a request as an application that survives a server
  restart would make it (the same as :meth:`Session.request` for the pools).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import psycopg
from pip_services4_postgres.connect.PostgresConnection import (
    PostgresConnection as PublishedConnection,
)
from psycopg2.pool import PoolError
from psycopg_pool import ConnectionPool

from pip_postgres import PostgresConnection, PostgresOptions
from pip_postgres.begin import BeginAhead

from .server import Target

SQL = "SELECT 1"
#: A statement's parameters, or ``None``.
Params = Sequence[Any] | None
#: How long a pool may take to open all its connections, in seconds.
OPEN_TIMEOUT = 30.0

#: A per-thread request for W2: returns the checkout wait in seconds, or ``None`` when the
#: pool refused the checkout instead of waiting.
Worker = Callable[[], "float | None"]


def timed_checkout(connection: Callable[[], AbstractContextManager[Any]]) -> Worker:
    """A W2 worker: check out with ``connection()``, run the query, return; the checkout wait."""

    def run() -> float:
        start = perf_counter()
        checkout = connection()
        conn = checkout.__enter__()
        waited = perf_counter() - start
        try:
            conn.execute(SQL).fetchone()
        except BaseException as error:
            checkout.__exit__(type(error), error, error.__traceback__)
            raise
        checkout.__exit__(None, None, None)
        return waited

    return run


class NotApplicableError(Exception):
    """The contender has no such operation (a held connection has no checkout)."""


class Session:
    """An open contender: see the module's description."""

    def __init__(self, target: Target, size: int, autocommit: bool) -> None:
        self.target = target
        self.size = size
        self.autocommit = autocommit

    def request(self, sql: str = SQL, params: Params = None) -> None:
        """Checkout, ``sql`` (default ``SELECT 1``) with its row read, return."""
        raise NotImplementedError

    def checkout(self) -> None:
        """Checkout and return, no query."""
        raise NotApplicableError

    def worker(self, index: int) -> Worker:
        """The request of thread ``index`` (W2), timing the checkout."""
        raise NotImplementedError

    def recovering_request(self) -> None:
        """A request that recovers from a server restart as an application would (W5)."""
        self.request()

    def hold(self, count: int) -> Callable[[], None]:
        """Check ``count`` connections out at once and query each; return the release."""
        raise NotImplementedError

    def checkouts(self) -> Callable[[], AbstractContextManager[Any]] | None:
        """The pool's context-managed checkout (``connection``); ``None`` for other kinds."""
        return None

    def close(self) -> None:
        """Close everything the session opened."""
        raise NotImplementedError


# -- 1. one psycopg connection held open ------------------------------------------------------


class HeldSession(Session):
    """One :class:`psycopg.Connection`, opened once and used for every request."""

    def __init__(self, target: Target, size: int, autocommit: bool, wait: bool = True) -> None:
        super().__init__(target, size, autocommit)
        self._conns: list[psycopg.Connection[Any]] = [self._connect()]
        self._broken = False

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target.conninfo, autocommit=self.autocommit)

    def request(self, sql: str = SQL, params: Params = None) -> None:
        conn = self._conns[0]
        conn.execute(sql, params).fetchone()
        if not self.autocommit:
            conn.commit()

    def worker(self, index: int) -> Worker:
        while len(self._conns) <= index:  # one connection per thread, opened before timing
            self._conns.append(self._connect())
        conn, autocommit = self._conns[index], self.autocommit

        def run() -> float:
            conn.execute(SQL).fetchone()
            if not autocommit:
                conn.commit()
            return 0.0

        return run

    def recovering_request(self) -> None:
        if self._broken:  # reconnect after an error, then try again
            self._conns[0].close()
            self._conns[0] = self._connect()
            self._broken = False
        try:
            self.request()
        except psycopg.OperationalError:
            self._broken = True
            raise

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


# -- 2. psycopg_pool.ConnectionPool used directly ---------------------------------------------


class RawPoolSession(Session):
    """A :class:`psycopg_pool.ConnectionPool` of ``size`` connections (min = max)."""

    def __init__(
        self, target: Target, size: int, autocommit: bool, wait: bool = True, min_size: int = 0
    ) -> None:
        super().__init__(target, size, autocommit)
        self.pool: ConnectionPool[Any] = ConnectionPool(
            target.conninfo,
            min_size=min_size or size,
            max_size=size,
            kwargs={"autocommit": autocommit},
            name="bench-psycopg_pool",
            open=True,
        )
        if wait:
            self.pool.wait(timeout=OPEN_TIMEOUT)

    def request(self, sql: str = SQL, params: Params = None) -> None:
        with self.pool.connection() as conn:
            conn.execute(sql, params).fetchone()

    def checkout(self) -> None:
        with self.pool.connection():
            pass

    def worker(self, index: int) -> Worker:
        return timed_checkout(self.pool.connection)

    def checkouts(self) -> Callable[[], AbstractContextManager[Any]]:
        return self.pool.connection

    def hold(self, count: int) -> Callable[[], None]:
        conns = [self.pool.getconn() for _ in range(count)]
        for conn in conns:
            conn.execute(SQL).fetchone()
            conn.commit()

        def release() -> None:
            for conn in conns:
                self.pool.putconn(conn)

        return release

    def close(self) -> None:
        self.pool.close()


# -- 3. pip_postgres.PostgresConnection (ours) ------------------------------------------------


class OursSession(Session):
    """:class:`pip_postgres.PostgresConnection`, ``min_pool_size`` = ``max_pool_size`` = size.

    Only its public API is used: ``configure()``, ``open()``, ``connection()``,
    ``get_connection()`` and ``close()``.
    """

    def __init__(
        self,
        target: Target,
        size: int,
        autocommit: bool,
        wait: bool = True,
        min_size: int = 0,
        idle_order: str = PostgresOptions.idle_order,
        begin_with_statement: str = PostgresOptions.begin_with_statement,
    ) -> None:
        super().__init__(target, size, autocommit)
        self.component = PostgresConnection()
        self.component.configure(
            target.pip_config(
                max_pool_size=size,
                min_pool_size=min_size or size,
                autocommit=autocommit,
                idle_order=idle_order,
                begin_with_statement=begin_with_statement,
            )
        )
        self.component.open(None)  # waits for min_pool_size connections whatever ``wait`` says
        self._measures = begin_with_statement == "auto" and not autocommit
        if self._measures:
            pool = self.component.get_connection()
            assert pool is not None
            settle(pool.begin_ahead, self.request)

    def request(self, sql: str = SQL, params: Params = None) -> None:
        with self.component.connection() as conn:
            conn.execute(sql, params).fetchone()

    def checkout(self) -> None:
        with self.component.connection():
            pass

    def worker(self, index: int) -> Worker:
        return timed_checkout(self.component.connection)

    def checkouts(self) -> Callable[[], AbstractContextManager[Any]]:
        return self.component.connection

    def hold(self, count: int) -> Callable[[], None]:
        pool = self.component.get_connection()
        assert pool is not None
        conns = [pool.getconn() for _ in range(count)]
        for conn in conns:
            conn.execute(SQL).fetchone()
            conn.commit()

        def release() -> None:
            for conn in conns:
                pool.putconn(conn)

        return release

    def close(self) -> None:
        pool = self.component.get_connection()
        if self._measures and pool is not None:
            AUTO_DECISIONS.append(pool.begin_ahead)
        self.component.close(None)


#: The longest a session of ours makes requests for its ``auto`` trial to end, in seconds.
SETTLE_LIMIT = 10.0


def settle(decision: BeginAhead, request: Callable[[], object]) -> None:
    """Make requests, one at a time, until ``auto``'s trial has decided (or for
    :data:`SETTLE_LIMIT`).

    A trial times one first statement per 10 ms at most (``TRIAL_SPACING``): in a service it
    ends within its first seconds, but the benchmark uses a session only during its own blocks,
    and the trial would run through most of a workload's rounds. Settled first, the session is
    measured as a service runs after its first seconds, with the decision made where it runs.
    """
    deadline = perf_counter() + SETTLE_LIMIT
    while decision.deciding and perf_counter() < deadline:
        request()


#: What ``options.begin_with_statement`` = ``auto`` decided in the transactional sessions of
#: ours closed since the list was last emptied (for the report's notes).
AUTO_DECISIONS: list[BeginAhead] = []


# -- 4. the published pip-services4-postgres 0.0.1 PostgresConnection -------------------------


class PublishedSession(Session):
    """``pip_services4_postgres`` 0.0.1: a psycopg2 ``ThreadedConnectionPool(1, size)``.

    Used as its own persistence classes use it: ``getconn()``, a cursor, ``commit()``,
    ``putconn()``. Its pool keeps only ``minconn`` = 1 idle connection (hard-coded by its
    ``open()``): a connection returned while another one is idle is closed.
    """

    def __init__(
        self, target: Target, size: int, autocommit: bool, wait: bool = True, min_size: int = 0
    ) -> None:
        super().__init__(target, size, autocommit)
        self.component = PublishedConnection()
        self.component.configure(target.pip_config(max_pool_size=size))
        self.component.open(None)
        if not self.component.is_open():  # its open() logs errors and returns normally
            raise RuntimeError("pip-services4-postgres did not open (its open() hides why)")
        self.pool: Any = self.component.get_connection()

    def request(self, sql: str = SQL, params: Params = None) -> None:
        pool = self.pool
        conn = pool.getconn()
        try:
            if self.autocommit and not conn.autocommit:
                conn.autocommit = True  # no round trip: psycopg2 just stops sending BEGIN
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                cursor.fetchone()
            if not self.autocommit:
                conn.commit()
        finally:
            pool.putconn(conn)

    def checkout(self) -> None:
        self.pool.putconn(self.pool.getconn())

    def worker(self, index: int) -> Worker:
        pool, autocommit = self.pool, self.autocommit

        def run() -> float | None:
            start = perf_counter()
            try:
                conn = pool.getconn()
            except PoolError:  # "connection pool exhausted": it does not wait
                return None
            waited = perf_counter() - start
            try:
                if autocommit and not conn.autocommit:
                    conn.autocommit = True
                with conn.cursor() as cursor:
                    cursor.execute(SQL)
                    cursor.fetchone()
                if not autocommit:
                    conn.commit()
            finally:
                pool.putconn(conn)
            return waited

        return run

    def hold(self, count: int) -> Callable[[], None]:
        conns = [self.pool.getconn(key=index) for index in range(count)]
        for conn in conns:
            with conn.cursor() as cursor:
                cursor.execute(SQL)
                cursor.fetchone()
            conn.commit()

        def release() -> None:
            for index, conn in enumerate(conns):
                self.pool.putconn(conn, key=index)

        return release

    def close(self) -> None:
        self.component.close(None)


# -- 5. a new psycopg connection per request --------------------------------------------------


class NewSession(Session):
    """No pool: ``psycopg.connect()`` for every request, closed after it."""

    def __init__(self, target: Target, size: int, autocommit: bool, wait: bool = True) -> None:
        super().__init__(target, size, autocommit)

    def request(self, sql: str = SQL, params: Params = None) -> None:
        with psycopg.connect(self.target.conninfo, autocommit=self.autocommit) as conn:
            conn.execute(sql, params).fetchone()

    def checkout(self) -> None:
        psycopg.connect(self.target.conninfo, autocommit=self.autocommit).close()

    def worker(self, index: int) -> Worker:
        conninfo, autocommit = self.target.conninfo, self.autocommit

        def run() -> float:
            start = perf_counter()
            conn = psycopg.connect(conninfo, autocommit=autocommit)
            waited = perf_counter() - start
            with conn:
                conn.execute(SQL).fetchone()
            return waited

        return run

    def close(self) -> None:
        pass


# -- 6. BEGIN sent with the first statement, by hand, through psycopg's pipeline mode ---------


def begin_with(conn: psycopg.Connection[Any], sql: str, params: Params) -> None:
    """Send ``BEGIN`` and ``sql`` in one round trip, read the row, then ``COMMIT``.

    psycopg itself, in transactional mode, waits for ``BEGIN``'s answer before it sends the
    first statement, even in pipeline mode (it syncs after ``BEGIN``). On a connection in
    autocommit mode it starts no transaction by itself, so a pipeline can carry an explicit
    ``BEGIN`` and the statement together: two round trips in all, with the ``COMMIT``.
    """
    with conn.pipeline():
        conn.execute("BEGIN")
        cursor = conn.execute(sql, params)
    cursor.fetchone()
    conn.commit()  # the server's transaction, though psycopg's autocommit is on


class HeldPipelineSession(HeldSession):
    """A held connection in autocommit mode whose requests run as :func:`begin_with` does."""

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.target.conninfo, autocommit=True)

    def request(self, sql: str = SQL, params: Params = None) -> None:
        begin_with(self._conns[0], sql, params)


# -- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """A contender: its key, its name in the tables and its session class."""

    key: str
    label: str
    session: type[Session]
    #: What it does per request (reST, for the docs page).
    does: str

    #: Keyword arguments of the session class, e.g. ``idle_order``.
    options: dict[str, Any] = field(default_factory=dict)

    def open(self, target: Target, size: int, autocommit: bool, **kwargs: Any) -> Session:
        """Open a session of ``size`` connections."""
        return self.session(target, size, autocommit, **{**self.options, **kwargs})


OURS = "ours"
#: Ours with the order of idle connections that is not the default.
OTHER_ORDER = "fifo" if PostgresOptions.idle_order == "lifo" else "lifo"
OURS_OTHER = f"ours-{OTHER_ORDER}"
#: Ours with ``options.begin_with_statement`` forced either way (the default is ``auto``).
OURS_BEGIN_ALWAYS = "ours-begin-always"
OURS_BEGIN_NEVER = "ours-begin-never"

CONTENDERS: dict[str, Contender] = {
    contender.key: contender
    for contender in (
        Contender(
            "held",
            "held connection",
            HeldSession,
            "One ``psycopg.connect()`` made before timing; per request "
            '``conn.execute("SELECT 1").fetchone()``, then ``conn.commit()`` in transactional '
            "mode. No pool: the floor. In W2 each thread holds a connection of its own "
            "(as many connections as threads, no checkout); in W5 it reconnects after an error.",
        ),
        Contender(
            "psycopg_pool",
            "psycopg_pool",
            RawPoolSession,
            "``ConnectionPool(conninfo, min_size=8, max_size=8, kwargs={'autocommit': ...})``, "
            "otherwise its defaults; per request ``with pool.connection() as conn: "
            'conn.execute("SELECT 1").fetchone()`` (the block commits on exit).',
        ),
        Contender(
            OURS,
            "pip_postgres (ours)",
            OursSession,
            "``PostgresConnection`` configured with ``options.min_pool_size`` = "
            "``options.max_pool_size`` = 8 and ``options.autocommit``, then ``open(None)``; "
            "per request ``with component.connection() as conn: "
            'conn.execute("SELECT 1").fetchone()`` (the block commits on exit, and does what '
            "else the component does by default at the end of a checkout).",
        ),
        Contender(
            OURS_OTHER,
            f"pip_postgres, idle_order={OTHER_ORDER}",
            OursSession,
            f"Ours as above, with ``options.idle_order`` = ``{OTHER_ORDER}`` instead of the "
            f"default ``{PostgresOptions.idle_order}``.",
            {"idle_order": OTHER_ORDER},
        ),
        Contender(
            "published",
            "pip-services4-postgres 0.0.1",
            PublishedSession,
            "The published ``PostgresConnection`` with ``options.max_pool_size`` = 8 (its "
            "psycopg2 ``ThreadedConnectionPool(1, 8)``); per request, as its own persistence "
            "classes do: ``conn = pool.getconn()``, ``with conn.cursor() as cur: "
            'cur.execute("SELECT 1"); cur.fetchone()``, ``conn.commit()`` in transactional '
            "mode, ``pool.putconn(conn)``. In autocommit mode it sets ``conn.autocommit = "
            "True`` on a connection that does not have it yet (no round trip). Its pool keeps "
            "a single idle connection: a connection returned while another is idle is closed.",
        ),
        Contender(
            "new",
            "new connection per request",
            NewSession,
            '``with psycopg.connect(conninfo) as conn: conn.execute("SELECT 1").fetchone()``: '
            "connect (with scram-sha-256 authentication), query, commit, close.",
        ),
        Contender(
            "held-pipeline",
            "held connection, BEGIN with the statement",
            HeldPipelineSession,
            "A held connection in autocommit mode; per request, ``with conn.pipeline(): "
            'conn.execute("BEGIN"); cur = conn.execute(...)``, then ``cur.fetchone()`` and '
            "``conn.commit()``: a transaction in two round trips (psycopg's own transactions "
            "take three, even in pipeline mode). Transactional requests only.",
        ),
        Contender(
            OURS_BEGIN_ALWAYS,
            "pip_postgres, begin_with_statement=always",
            OursSession,
            "Ours as above, with ``options.begin_with_statement`` = ``always``: every "
            "transaction's ``BEGIN`` goes with its first statement, without waiting for its "
            "answer. Transactional requests only.",
            {"begin_with_statement": "always"},
        ),
        Contender(
            OURS_BEGIN_NEVER,
            "pip_postgres, begin_with_statement=never",
            OursSession,
            "Ours as above, with ``options.begin_with_statement`` = ``never``: psycopg's own "
            "way, ``BEGIN`` in a round trip of its own. Transactional requests only.",
            {"begin_with_statement": "never"},
        ),
    )
}
