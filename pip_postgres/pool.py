"""The pool behind :class:`~pip_postgres.PostgresConnection`.

:class:`PostgresPool` is a :class:`psycopg_pool.ConnectionPool` that adds what a long-running
service needs of its checkouts:

- validation at checkout, skipped for connections returned within a short bypass window
  (HikariCP's idea: a connection used a moment ago is almost surely alive, and a round trip
  per checkout is a high price for that certainty);
- replacement at checkout of connections past their lifetime;
- restoring, at return, the connection attributes a caller may have changed (``autocommit``,
  ``isolation_level``, ``read_only``, ``deferrable``);
- leak detection: a connection held past a threshold is reported once, with the stack of its
  checkout;
- a bounded :meth:`PostgresPool.shutdown` that cuts connections still held after a grace time.

It is still a ``ConnectionPool``: code that calls ``getconn()``/``putconn()`` or
``connection()`` on it gets all of the above.

A checkout that finds an idle connection, and a return of a clean one, do not go through
psycopg_pool's ``getconn()`` and ``putconn()``: they do what those do in that case (the same
critical section, statistics and log lines) directly on psycopg_pool's queue, at a fraction of
the cost of their layers (log calls made even when nothing is logged, a retry loop, a check
callback this package does not use). A checkout that finds no idle connection takes its place
in psycopg_pool's queue of waiting callers, as ``getconn()`` would (the pool grows as it would,
and psycopg_pool's code hands it the next connection returned or made), but waits on a bare
lock instead of a condition made for each wait (:class:`_Waiter`): with more threads than
connections, that is most checkouts. Everything else (a queue bounded by ``max_waiting``, a
closed pool, a connection to discard) is psycopg_pool's own code. The direct path uses
attributes that psycopg_pool does not document
(:data:`~pip_postgres.checkout.DIRECT_PATH_ATTRIBUTES`, present from 3.2.2 to 3.3, the
versions this package accepts); a pool that lacks one of them takes psycopg_pool's path for
every checkout.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Hashable
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import pq
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from . import checkout
from .begin import BeginAheadCursor
from .checkout import ACTIVE as _ACTIVE
from .checkout import IDLE as _IDLE
from .checkout import (
    CheckoutMarks,
    CheckoutPolicy,
    CheckoutTimeout,
    Leak,
    bypass_applies,
    idle_and_intact,
    socket_has_news,
)

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "CheckoutTimeout",
    "Leak",
    "PooledConnection",
    "PostgresPool",
    "Psycopg2CompatError",
    "bypass_applies",
    "idle_and_intact",
    "socket_has_news",
]

try:  # psycopg2 is optional: only options.psycopg2_compat looks for it
    from psycopg2 import ProgrammingError as _Psycopg2ProgrammingError
except ImportError:  # pragma: no cover - psycopg2 is installed with the test extra
    _COMPAT_BASES: tuple[type[Exception], ...] = (psycopg.ProgrammingError,)
else:
    _COMPAT_BASES = (psycopg.ProgrammingError, _Psycopg2ProgrammingError)


class _UsageCursor(BeginAheadCursor):
    """A cursor that marks its connection :attr:`~PooledConnection.used` when a statement runs.

    The cursor of ``options.reset_session`` = ``always``, which resets a session only if it
    ran something.
    """

    __slots__ = ()

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        """Execute a statement: see :meth:`psycopg.Cursor.execute`."""
        conn: PooledConnection = self._conn  # type: ignore[assignment]
        conn.used = True
        if conn.begin_ahead:
            return super().execute(query, params, prepare=prepare, binary=binary)
        return psycopg.Cursor.execute(self, query, params, prepare=prepare, binary=binary)

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        """Execute a statement many times: see :meth:`psycopg.Cursor.executemany`."""
        self._conn.used = True  # type: ignore[attr-defined]
        super().executemany(query, *args, **kwargs)


class _TrackingCursor(BeginAheadCursor):
    """A cursor that tells its connection what ran during the checkout.

    The cursor of ``options.reset_session`` = ``auto``. It marks the connection
    :attr:`~PooledConnection.used` when any statement runs, and
    :attr:`~PooledConnection.session_changed` when one looks like it changes a session setting
    (its text: a statement that starts with ``SET`` or ``RESET``, or a call of
    ``set_config()``; or its command status ``SET``/``RESET``).
    """

    __slots__ = ()

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        """Execute a statement: see :meth:`psycopg.Cursor.execute`."""
        conn: PooledConnection = self._conn  # type: ignore[assignment]
        if checkout.cannot_change_session(conn, query):  # most statements
            conn.used = True
            if conn.begin_ahead:
                return super().execute(query, params, prepare=prepare, binary=binary)
            # no BEGIN to send with it: psycopg's own, one call less
            return psycopg.Cursor.execute(self, query, params, prepare=prepare, binary=binary)
        if not checkout.track_before(conn, query):
            return super().execute(query, params, prepare=prepare, binary=binary)
        try:
            return super().execute(query, params, prepare=prepare, binary=binary)
        finally:
            checkout.track_after(conn, self.pgresult)

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        """Execute a statement many times: see :meth:`psycopg.Cursor.executemany`."""
        checkout.track_before(self._conn, query)  # type: ignore[arg-type]
        super().executemany(query, *args, **kwargs)


#: The cursor class of the pool's connections for each ``options.reset_session`` mode: each
#: watches only what the end of a checkout needs to know.
_CURSORS: dict[str, type[psycopg.Cursor[TupleRow]]] = {
    "auto": _TrackingCursor,
    "always": _UsageCursor,
    "never": BeginAheadCursor,
}

if TYPE_CHECKING:

    class Psycopg2CompatError(psycopg.ProgrammingError):
        """See the definition below."""

else:
    Psycopg2CompatError = type(
        "Psycopg2CompatError",
        _COMPAT_BASES,
        {
            "__module__": __name__,
            "__doc__": """A fetch found no result to fetch (``options.psycopg2_compat``).

    A :class:`psycopg.ProgrammingError`, and also a ``psycopg2.ProgrammingError`` when
    psycopg2 is importable, so that code written for psycopg2, which catches psycopg2's error
    after a statement that returns no rows (an ``INSERT``, a ``DELETE``, DDL), keeps working.
    """,
        },
    )


class _Psycopg2Fetch(psycopg.Cursor[TupleRow]):
    """The fetch methods of ``options.psycopg2_compat``, mixed into a reset mode's cursor.

    A fetch without a result to fetch raises :class:`Psycopg2CompatError`.
    """

    __slots__ = ()

    def fetchone(self) -> TupleRow | None:
        """Fetch the next row: see :meth:`psycopg.Cursor.fetchone`."""
        try:
            return super().fetchone()
        except psycopg.ProgrammingError as error:
            raise _compat_error(error) from None

    def fetchmany(self, size: int = 0) -> list[TupleRow]:
        """Fetch the next rows: see :meth:`psycopg.Cursor.fetchmany`."""
        try:
            return super().fetchmany(size)
        except psycopg.ProgrammingError as error:
            raise _compat_error(error) from None

    def fetchall(self) -> list[TupleRow]:
        """Fetch the remaining rows: see :meth:`psycopg.Cursor.fetchall`."""
        try:
            return super().fetchall()
        except psycopg.ProgrammingError as error:
            raise _compat_error(error) from None


def _compat_error(error: psycopg.ProgrammingError) -> psycopg.ProgrammingError:
    """The "no result" error of psycopg as a :class:`Psycopg2CompatError`, message kept."""
    return error if isinstance(error, Psycopg2CompatError) else Psycopg2CompatError(str(error))


_COMPAT_CURSORS: dict[str, type[psycopg.Cursor[TupleRow]]] = {
    mode: cast(
        "type[psycopg.Cursor[TupleRow]]",
        type(f"_Psycopg2{base.__name__.lstrip('_')}", (_Psycopg2Fetch, base), {"__slots__": ()}),
    )
    for mode, base in _CURSORS.items()
}


class PooledConnection(CheckoutMarks, psycopg.Connection[TupleRow]):
    """A psycopg connection that knows its age, its last use and its current holder."""

    def __enter__(self) -> Self:
        """Start a ``with conn:`` block: remember which checkout it belongs to."""
        checkout.block_started(self, threading.get_ident())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """End a ``with conn:`` block as psycopg2 did, and never close a pool's connection.

        A connection of a pool whose checkout is still the block's own is committed (or
        rolled back, if the block raised), and stays checked out. If the block already gave it
        back (``pool.putconn(conn)`` inside the block), nothing is done: it is idle in the
        pool, or another holder's. A connection of no pool behaves as psycopg's: committed
        or rolled back, then closed. See :func:`pip_postgres.checkout.block_end`.
        """
        end = checkout.block_ended(self, threading.get_ident(), exc_type is not None)
        if end == "close":
            super().__exit__(exc_type, exc_val, exc_tb)
        elif end == "commit":
            self.commit()
        elif end == "rollback":
            # Keep the block's exception: a connection that cannot roll back is cleaned (or
            # replaced) when it is given back.
            with contextlib.suppress(psycopg.Error):
                self.rollback()

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """Connect, stamp the connection, and tell the pool of a failure.

        :param conninfo: the libpq connection string.
        :param kwargs: as :meth:`psycopg.Connection.connect`, plus ``connect_state``, where
            the pool keeps the last connection error.
        """
        state: checkout.ConnectState | None = kwargs.pop("connect_state", None)
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as error:
            checkout.connect_failed(state, error, kwargs)
            raise
        return checkout.connected(state, conn)


class _Waiter:
    """A place in psycopg_pool's queue of callers waiting for a connection (sync pool).

    What psycopg_pool's ``WaitingClient`` is to its ``getconn()``, for the checkout of
    :class:`PostgresPool`: psycopg_pool's code hands it a connection (:meth:`set`, under the
    pool's lock, when a connection is returned or made) or an error (:meth:`fail`, when the
    pool closes). It waits on a bare lock, released once, instead of a
    :class:`threading.Condition` made for each wait; a caller that gives up decides so under
    the pool's lock (:meth:`PostgresPool._leave_queue`), so that no connection is handed to
    a caller that has left.
    """

    __slots__ = ("conn", "error", "ready")

    def __init__(self) -> None:
        self.conn: PooledConnection | None = None
        self.error: BaseException | None = None
        #: Held until a connection or an error is set.
        self.ready = threading.Lock()
        self.ready.acquire()

    def set(self, conn: PooledConnection) -> bool:
        """Hand the caller a connection; ``False`` if it has left (or already has one)."""
        return self._settle(conn, None)

    def fail(self, error: BaseException) -> bool:
        """Hand the caller an error; ``False`` if it has left (or already has an outcome)."""
        return self._settle(None, error)

    def _settle(self, conn: PooledConnection | None, error: BaseException | None) -> bool:
        if self.conn is not None or self.error is not None:
            return False
        self.conn, self.error = conn, error
        self.ready.release()
        return True


class PostgresPool(CheckoutPolicy, ConnectionPool[PooledConnection]):
    """A :class:`psycopg_pool.ConnectionPool` with checkout validation and leak detection.

    :param conninfo: the libpq connection string.
    :param kwargs: connection keyword arguments (password, autocommit).
    :param validation_bypass: seconds since its return within which a connection is handed
        out without a validation round trip; 0 validates at every checkout.
    :param leak_threshold: seconds after which a connection still checked out is reported to
        ``on_leak``, once; 0 turns leak detection off (and the stack is not recorded).
    :param on_leak: called, from a background thread, with each :class:`Leak`.
    :param reset_session: when the end of a checkout resets the session with ``RESET ALL``:
        ``auto`` (default), ``always`` or ``never``; see :meth:`finish`.
    :param idle_order: which idle connection a checkout gets: ``lifo`` (default), the one
        returned last; ``fifo``, the one idle longest (psycopg_pool's own order).
    :param begin_with_statement: send ``BEGIN`` and the first statement of a transaction
        without waiting for ``BEGIN``'s answer in between: ``auto`` (default: where a trial
        of the first transactions finds it faster), ``always`` or ``never``; see
        :mod:`pip_postgres.begin`.
    :param psycopg2_compat: a cursor's ``fetchone()``/``fetchmany()``/``fetchall()`` after a
        statement without a result raises :class:`Psycopg2CompatError`, which code written for
        psycopg2 catches; default ``False``.
    :param open: open the pool now (see :meth:`psycopg_pool.ConnectionPool.open`); default
        ``False``.
    :param pool_kwargs: passed on to :class:`psycopg_pool.ConnectionPool` (sizes, timeouts).
    """

    _entry_frames = 1  # getconn() calls _checkout()

    def __init__(
        self,
        conninfo: str,
        *,
        kwargs: dict[str, Any],
        validation_bypass: float,
        leak_threshold: float = 0.0,
        on_leak: Callable[[Leak], None] | None = None,
        reset_session: str = "auto",
        idle_order: str = "lifo",
        begin_with_statement: str = "auto",
        psycopg2_compat: bool = False,
        open: bool = False,
        **pool_kwargs: Any,
    ) -> None:
        kwargs = self._init_policy(
            kwargs,
            _COMPAT_CURSORS if psycopg2_compat else _CURSORS,
            validation_bypass,
            leak_threshold,
            on_leak,
            reset_session,
            idle_order,
            begin_with_statement,
        )
        #: Whether fetching without a result raises :class:`Psycopg2CompatError`.
        self.psycopg2_compat = psycopg2_compat
        # psycopg2's keyed checkouts: the connection of each key, and the key of each one.
        self._keyed: dict[Hashable, PooledConnection] = {}
        self._key_of: dict[int, Hashable] = {}
        self._keys_lock = threading.Lock()
        super().__init__(
            conninfo, connection_class=PooledConnection, kwargs=kwargs, open=False, **pool_kwargs
        )
        self._init_idle_queue(idle_order)
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        if open:
            self.open()

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool, and start the leak watcher if leak detection is on.

        See :meth:`psycopg_pool.ConnectionPool.open`.
        """
        super().open(wait=wait, timeout=timeout)
        self._init_direct_path()
        if self.leak_threshold > 0 and self._watcher is None:
            self._stop_watch.clear()
            self._watcher = threading.Thread(
                target=self._watch_leaks, name=f"{self.name}-leaks", daemon=True
            )
            self._watcher.start()

    @property
    def minconn(self) -> int:
        """psycopg2's name of ``min_size``: the connections kept open even when idle."""
        return self.min_size

    @property
    def maxconn(self) -> int:
        """psycopg2's name of ``max_size``: the most connections the pool opens."""
        return self.max_size

    def getconn(
        self, timeout: float | Hashable | None = None, *, key: Hashable | None = None
    ) -> PooledConnection:
        """Check a connection out.

        A connection idle past the bypass window, or whose state or socket shows that
        something happened to it, is validated first, and one past its lifetime is replaced;
        neither costs the caller an error. A closed or broken connection is never handed out.

        Both psycopg_pool's ``getconn(timeout)`` and psycopg2's ``getconn(key)`` work: a
        positional number (``int`` or ``float``, not ``bool``) is a timeout, anything else is
        psycopg2's key. An ``int`` key must be passed by name: ``getconn(key=3)``.

        :param timeout: the longest to wait, in seconds, more than 0; default the pool's
            ``timeout``.
        :param key: psycopg2's key: while a connection checked out with this key is not given
            back, ``getconn(key=...)`` returns that same connection (in any thread). Give it
            back once, with :meth:`putconn`. Default ``None``: a checkout of its own.
        :raises CheckoutTimeout: no working connection could be had in time; or ``timeout`` is
            0 or less (psycopg_pool's rule: no connection, even an idle one) or NaN.
        :raises psycopg_pool.PoolClosed: the pool is closed.
        """
        if timeout is not None and not _is_timeout(timeout):
            if key is not None:
                raise TypeError(f"getconn() got a key twice: {timeout!r} and key={key!r}")
            timeout, key = None, timeout
        wait = None if timeout is None else float(cast("float", timeout))
        if key is None:
            return self._checkout(wait)
        with self._keys_lock:
            conn = self._keyed.get(key)
        if conn is not None:
            return conn
        conn = self._checkout(wait)
        with self._keys_lock:
            other = self._keyed.get(key)
            if other is None:
                self._keyed[key] = conn
                self._key_of[id(conn)] = key
                return conn
        self.putconn(conn)  # another thread checked one out with this key meanwhile
        return other

    def _checkout(self, timeout: float | None) -> PooledConnection:
        wait = self.timeout if timeout is None else timeout
        start = monotonic()
        conn = self._take_idle(wait)
        if isinstance(conn, _Waiter):
            conn = self._wait_for(conn, start, wait)
            if self._ready(conn, monotonic()):
                return conn
        elif conn is None:
            self._refuse_no_wait(wait)
            try:
                conn = super().getconn(wait)
            except PoolTimeout:
                raise self._timeout_error(wait, 0) from None
            if self._ready(conn, monotonic()):
                return conn
        elif self._ready(conn, monotonic()):  # (not start: the lock may have made it wait)
            return conn
        steps, reply = self._checkout_steps(conn, start, wait), None
        try:
            while True:
                reply = self._step(*steps.send(reply))
        except StopIteration as done:
            vetted: PooledConnection = done.value
            return vetted

    def _take_idle(self, timeout: float) -> PooledConnection | _Waiter | None:
        """psycopg_pool's checkout of an idle connection, direct; else a place in its queue.

        See :meth:`~pip_postgres.checkout.CheckoutPolicy._init_direct_path`. With no idle
        connection the caller queues as psycopg_pool's ``getconn()`` would have it (and the
        pool grows if it may), but waits on a :class:`_Waiter`, which costs a fraction of
        psycopg_pool's own; unless ``max_waiting`` bounds the queue, which psycopg_pool's
        code enforces.

        :return: the connection; a waiter already in the queue; ``None`` if the caller must
            take psycopg_pool's path.
        """
        # (see _init_direct_path(); a timeout of 0 or less, or NaN, goes the other way, where
        # _refuse_no_wait() refuses it)
        if not (timeout > 0 and self._direct) or self._closed:
            return None
        with self._lock:
            conn = self._pop_idle()
            if conn is None:
                return self._queued(_Waiter())
        taken: PooledConnection = self._took(conn)
        return taken

    def _wait_for(self, waiter: _Waiter, start: float, wait: float) -> PooledConnection:
        """Wait until psycopg_pool hands ``waiter`` a connection (a return, a new connection).

        :raises CheckoutTimeout: none came within ``wait`` seconds of ``start``.
        :raises psycopg_pool.PoolClosed: the pool was closed meanwhile.
        """
        pool: Any = self
        try:
            handed = waiter.ready.acquire(timeout=max(start + wait - monotonic(), 0.0))
        except BaseException as error:  # Ctrl-C: give back what came meanwhile, let it through
            self._leave_queue(waiter, None)
            self._count_failed(error, (Exception,))
            raise
        finally:
            pool._stats[pool._REQUESTS_WAIT_MS] += int(1000.0 * (monotonic() - start))
        if not handed:
            self._leave_queue(waiter, PoolTimeout())
        taken: PooledConnection = self._waited(waiter, wait)
        return taken

    def _leave_queue(self, waiter: _Waiter, error: BaseException | None) -> None:
        """A waiter gives up: out of the queue, unless a connection reached it first.

        :param error: what it gave up with; ``None`` (an interruption): a connection that
            reached it goes back to the pool.
        """
        with self._lock:
            if self._give_up(waiter, error):
                return
        if error is None and waiter.conn is not None:
            self._add_to_pool(waiter.conn)

    def _step(self, step: str, conn: Any, seconds: float) -> Any:
        """Do one step of a checkout's I/O: see :data:`pip_postgres.checkout.Step`."""
        if step == "ping":
            return _ping(conn, seconds)
        if step == "discard":  # a closed connection given back is replaced in the background
            conn.close()
            return super().putconn(conn)
        try:
            return super().getconn(seconds)
        except PoolTimeout:
            return None

    def finish(self, conn: PooledConnection, success: bool) -> None:
        """End a checkout's transaction, and reset the session if it needs it, in one round trip.

        The transaction is committed if ``success``, else rolled back. ``RESET ALL`` follows
        when :attr:`~pip_postgres.checkout.CheckoutPolicy.reset_session` asks for it:
        ``auto``, if a statement of the checkout looked like it changed a setting; ``always``,
        if any statement ran; ``never``. In a transaction it travels with the COMMIT or
        ROLLBACK, as one query; outside one (in autocommit mode) it costs a round trip of its
        own. :meth:`putconn` calls it with ``success`` false, so that a connection given back
        in a transaction is rolled back.

        :param conn: a connection checked out of this pool.
        :param success: commit (rather than roll back) an open transaction.
        :raises psycopg.Error: the COMMIT, ROLLBACK or reset failed; the connection is then in
            an unknown state, and the caller closes it.
        """
        sql = self._end_statement(conn, success)
        if sql is not None:
            self._send_end(conn, sql)

    def _send_end(self, conn: PooledConnection, sql: str) -> None:
        """Send what ends a checkout (see :meth:`finish`)."""
        if sql == "COMMIT":
            conn.commit()
        elif sql == "ROLLBACK":
            conn.rollback()
        elif sql == checkout.RESET_ALL:  # outside a transaction
            self._reset_outside_transaction(conn)
        else:  # A plain cursor: the connection's own would mark the reset as a session change.
            psycopg.Cursor(conn).execute(sql, prepare=False)

    def _reset_outside_transaction(self, conn: PooledConnection) -> None:
        # In transactional mode a plain execute() would open a transaction first.
        autocommit = conn.autocommit
        conn.autocommit = True
        try:
            psycopg.Cursor(conn).execute(checkout.RESET_ALL, prepare=False)
        finally:
            if not conn.closed:
                conn.autocommit = autocommit

    def putconn(
        self, conn: PooledConnection, key: Hashable | None = None, close: bool = False
    ) -> None:
        """Return a connection: clean what its holder left, then hand it back.

        An open transaction is rolled back and the session reset as :meth:`finish` does;
        the attributes its holder may have changed (``autocommit``, ``isolation_level``,
        ``read_only``, ``deferrable``, ``row_factory``, ``cursor_factory``) are restored. A
        connection that cannot be cleaned is closed, and the pool replaces it.

        :param conn: a connection checked out of this pool.
        :param key: psycopg2's key it was checked out with, if any; without it, the key it was
            checked out with is released all the same.
        :param close: discard the connection (psycopg2's ``close=True``): it is closed, and
            the pool opens a new one in the background if it needs one. Default ``False``.
        :raises ValueError: ``key`` is not the key this connection was checked out with.
        """
        if key is not None or self._key_of:
            self._release_key(conn, key)
        if self._given_back(conn) and not close:
            self._restore(conn)
        elif close:
            conn.close()
        if self._direct_return(conn):
            self._add_to_pool(conn)
        else:
            super().putconn(conn)

    def _release_key(self, conn: PooledConnection, key: Hashable | None) -> None:
        with self._keys_lock:
            held = self._key_of.get(id(conn))
            if key is not None and (held is None or held != key):
                raise ValueError(
                    f"putconn(): this connection was not checked out with key {key!r}"
                    + ("" if held is None else f" but with key {held!r}")
                )
            if held is not None:
                del self._key_of[id(conn)]
                del self._keyed[held]

    def closeall(self) -> None:
        """psycopg2's ``closeall()``: close the pool and every connection, even those in use.

        :meth:`shutdown` without grace: connections still checked out are cut at once (their
        holders get an error at their next use, and may still give them back). A closed pool
        cannot be reopened (psycopg_pool's rule); a new component opens a new one.
        """
        self.shutdown(grace=0.0)
        with self._keys_lock:
            self._keyed.clear()
            self._key_of.clear()

    def _restore(self, conn: PooledConnection) -> None:
        status = conn.pgconn.transaction_status
        if status == _ACTIVE:  # in the middle of an operation: unusable
            conn.close()
            return
        try:
            if checkout.needs_cleaning(status, conn):
                self.finish(conn, success=False)
            for name, value in checkout.attributes_to_restore(conn, self._autocommit):
                setattr(conn, name, value)
            checkout.restore_factories(conn, self._cursor_factory)
        except psycopg.Error:
            conn.close()  # the pool replaces a closed connection

    def get_stats(self) -> dict[str, int]:
        """The pool's statistics (see :meth:`psycopg_pool.ConnectionPool.get_stats`), and ours.

        Ours: ``connections_validated`` (validation round trips at checkout),
        ``connections_broken`` (connections found broken at checkout and replaced),
        ``connections_expired`` (replaced at checkout for their age), ``leaks_reported``.
        """
        stats = super().get_stats()
        stats.update(self._counters)
        return stats

    def _watch_leaks(self) -> None:
        while not self._stop_watch.wait(checkout.leak_period(self.leak_threshold)):
            self._report_leaks(monotonic())

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool and stop the leak watcher.

        See :meth:`psycopg_pool.ConnectionPool.close`.
        """
        self._stop_watch.set()
        super().close(timeout=timeout)

    def detach_after_fork(self) -> None:
        """In a child process after ``os.fork()``: let go of the parent's connections.

        The connections are released without a word to the server (see
        :func:`pip_postgres.fork.release`), so that the parent's sessions go on; the pool is
        then closed. Its worker threads are the parent's and do not exist here.
        """
        self._stop_watch.set()
        self._watcher = None
        self._let_go_after_fork()

    def shutdown(self, grace: float) -> int:
        """Close the pool, then cut the connections still checked out after ``grace``.

        Callers waiting for a connection fail at once with
        :class:`psycopg_pool.PoolClosed`. Connections returned within ``grace`` seconds are
        closed normally; after that, the queries of those still held are cancelled and their
        sockets shut down, so the server ends their sessions and their holders get an error at
        their next use.

        :param grace: seconds to let holders finish.
        :return: the number of connections that had to be cut.
        """
        deadline = monotonic() + grace
        self.close(timeout=grace)
        while self._in_use and monotonic() < deadline:
            time.sleep(0.01)
        held = list(self._in_use.values())
        for conn in held:
            _cut(conn)
        if self._watcher is not None:
            self._watcher.join(timeout=1.0)
            self._watcher = None
        return len(held)


def _ping(conn: PooledConnection, timeout: float) -> bool:
    """Send an empty query and wait at most ``timeout`` seconds for its answer.

    psycopg's own ``execute()`` has no client-side timeout, and over a network that swallows
    packets it would wait for TCP to give up, many minutes later; this does not. A server
    that ended the session (a restart, ``pg_terminate_backend()``) answers with an error, or
    not at all.

    :return: whether the connection answered, idle, in time.
    """
    pgconn = conn.pgconn
    if conn.closed or pgconn.transaction_status != _IDLE:
        return False
    deadline = monotonic() + timeout
    try:
        with conn.lock:
            pgconn.send_query(b"")
            if not _answered_by(pgconn, deadline):
                return False
            answered = False
            while (result := pgconn.get_result()) is not None:
                answered = result.status == pq.ExecStatus.EMPTY_QUERY
    except psycopg.Error:
        return False
    return answered and pgconn.transaction_status == _IDLE


def _answered_by(pgconn: pq.abc.PGconn, deadline: float) -> bool:
    """Send what libpq holds, and wait for the whole answer until ``deadline`` (blocking).

    :param deadline: a ``time.monotonic()`` time.
    :return: whether the answer is all in (to be read with ``get_result()``); if not, what
        was sent may still be answered later.
    """
    while pgconn.flush() != 0:
        if not _wait(pgconn.socket, True, deadline):
            return False
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            return True
        if not _wait(pgconn.socket, False, deadline):
            return False


def _wait(fd: int, write: bool, deadline: float) -> bool:
    """Wait until ``fd`` is writable (or readable), or ``deadline``; whether it became so."""
    remaining = deadline - monotonic()
    if remaining <= 0:
        return False
    if not hasattr(select, "poll"):  # Windows
        readers, writers = ([], [fd]) if write else ([fd], [])
        return any(select.select(readers, writers, [fd], remaining))
    poller = select.poll()
    events = select.POLLOUT if write else select.POLLIN
    poller.register(fd, events | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(remaining * 1000))


def _cut(conn: PooledConnection) -> None:
    """End a connection that another thread may be using, without freeing anything under it.

    Closing a libpq connection from a second thread could free memory its holder is using;
    cancelling the running query and shutting the socket down cannot.
    """
    with contextlib.suppress(psycopg.Error, OSError):
        conn.cancel_safe(timeout=2.0)
    _shutdown_socket(conn)


def _shutdown_socket(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Shut a connection's socket down (both ways), leaving its file descriptor open."""
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return
    try:
        with socket.socket(fileno=socket.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _is_timeout(value: object) -> bool:
    """Whether a positional ``getconn()`` argument is a timeout (a number, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
