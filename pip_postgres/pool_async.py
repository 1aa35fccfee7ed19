"""The pool behind :class:`~pip_postgres.AsyncPostgresConnection`.

:class:`AsyncPostgresPool` is a :class:`psycopg_pool.AsyncConnectionPool` with everything
:class:`~pip_postgres.pool.PostgresPool` adds to a checkout: validation with a bypass window,
replacement of connections past their lifetime, session reset, attribute restore, leak
detection, a bounded :meth:`AsyncPostgresPool.shutdown`, and idle connections served last in,
first out. The decisions are the sync pool's own (:mod:`pip_postgres.checkout`); so is the
direct path, with a task that finds no idle connection waiting in psycopg_pool's queue on a
future (:class:`_AsyncWaiter`) rather than on psycopg_pool's condition and its
:func:`asyncio.wait_for` task.

A task cancelled while it holds a connection never leaves it dirty in the pool: psycopg
cancels the running query on the server, and the return of the connection is shielded from
the cancellation, so that the transaction is rolled back (or the connection closed and
replaced) whatever happens to the task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import generators, pq, waiting
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.pool_async import ReturnConnection as _ReturnConnection

from . import checkout
from .begin import AsyncBeginAheadCursor
from .checkout import IDLE, CheckoutMarks, CheckoutPolicy, Leak
from .pool import _shutdown_socket

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncPooledConnection", "AsyncPostgresPool"]


class _AsyncUsageCursor(AsyncBeginAheadCursor):
    """The async cursor of ``reset_session`` = ``always``: marks its connection used."""

    __slots__ = ()

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Coroutine[Any, Any, Self]:
        """Execute a statement: see :meth:`psycopg.AsyncCursor.execute`.

        Not a coroutine function of its own: it returns psycopg's coroutine, to be awaited as
        usual, so that a statement costs no extra coroutine.
        """
        conn: AsyncPooledConnection = self._conn  # type: ignore[assignment]
        conn.used = True
        if conn.begin_ahead:
            return super().execute(query, params, prepare=prepare, binary=binary)
        return psycopg.AsyncCursor.execute(self, query, params, prepare=prepare, binary=binary)

    async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        """Execute a statement many times: see :meth:`psycopg.AsyncCursor.executemany`."""
        self._conn.used = True  # type: ignore[attr-defined]
        await super().executemany(query, *args, **kwargs)


class _AsyncTrackingCursor(AsyncBeginAheadCursor):
    """The async cursor of ``reset_session`` = ``auto``: see :mod:`pip_postgres.checkout`."""

    __slots__ = ()

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Coroutine[Any, Any, Self]:
        """Execute a statement: see :meth:`psycopg.AsyncCursor.execute`.

        Not a coroutine function of its own: unless the command status must be looked at
        after it ran, it returns psycopg's coroutine, to be awaited as usual, so that a
        statement costs no extra coroutine.
        """
        conn: AsyncPooledConnection = self._conn  # type: ignore[assignment]
        if checkout.cannot_change_session(conn, query):  # most statements
            conn.used = True
            if conn.begin_ahead:
                return super().execute(query, params, prepare=prepare, binary=binary)
            # no BEGIN to send with it: psycopg's own, one call less
            return psycopg.AsyncCursor.execute(self, query, params, prepare=prepare, binary=binary)
        if not checkout.track_before(conn, query):
            return super().execute(query, params, prepare=prepare, binary=binary)
        return self._execute_tracked(
            conn, super().execute(query, params, prepare=prepare, binary=binary)
        )

    async def _execute_tracked(
        self, conn: AsyncPooledConnection, running: Coroutine[Any, Any, Self]
    ) -> Self:
        try:
            return await running
        finally:
            checkout.track_after(conn, self.pgresult)

    async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        """Execute a statement many times: see :meth:`psycopg.AsyncCursor.executemany`."""
        checkout.track_before(self._conn, query)  # type: ignore[arg-type]
        await super().executemany(query, *args, **kwargs)


#: The cursor class of the pool's connections for each ``options.reset_session`` mode.
_CURSORS: dict[str, type[psycopg.AsyncCursor[TupleRow]]] = {
    "auto": _AsyncTrackingCursor,
    "always": _AsyncUsageCursor,
    "never": AsyncBeginAheadCursor,
}


class AsyncPooledConnection(CheckoutMarks, psycopg.AsyncConnection[TupleRow]):
    """A psycopg async connection that knows its age, its last use and its current holder."""

    async def __aenter__(self) -> Self:
        """Start an ``async with conn:`` block: remember which checkout it belongs to."""
        checkout.block_started(self, asyncio.current_task())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """End an ``async with conn:`` block, and never close a pool's connection.

        As :meth:`pip_postgres.pool.PooledConnection.__exit__`, per task rather than per
        thread: a connection whose checkout is still the block's own is committed (or rolled
        back, if the block raised) and stays checked out; one the block gave back
        (``await pool.putconn(conn)`` inside it) is left alone, idle in the pool or another
        task's; a connection of no pool is committed or rolled back, then closed, as
        psycopg's. See :func:`pip_postgres.checkout.block_end`.
        """
        end = checkout.block_ended(self, asyncio.current_task(), exc_type is not None)
        if end == "close":
            await super().__aexit__(exc_type, exc_val, exc_tb)
        elif end == "commit":
            await self.commit()
        elif end == "rollback":
            # Keep the block's exception: a connection that cannot roll back is cleaned (or
            # replaced) when it is given back.
            with contextlib.suppress(psycopg.Error):
                await self.rollback()

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        """Connect, stamp the connection, and tell the pool of a failure.

        :param conninfo: the libpq connection string.
        :param kwargs: as :meth:`psycopg.AsyncConnection.connect`, plus ``connect_state``,
            where the pool keeps the last connection error.
        """
        state: checkout.ConnectState | None = kwargs.pop("connect_state", None)
        try:
            conn = await super().connect(conninfo, **kwargs)
        except psycopg.Error as error:
            checkout.connect_failed(state, error, kwargs)
            raise
        return checkout.connected(state, conn)


class _AsyncWaiter:
    """A place in psycopg_pool's queue of tasks waiting for a connection (async pool).

    As :class:`pip_postgres.pool._Waiter`, on a future: psycopg_pool's async pool hands it a
    connection or an error with ``await set(...)``/``await fail(...)``, which decide without
    awaiting anything. psycopg_pool's own waiter makes an :class:`asyncio.Condition` per wait,
    and waits on it through :func:`asyncio.wait_for`, a task of its own.
    """

    __slots__ = ("conn", "error", "ready")

    def __init__(self) -> None:
        self.conn: AsyncPooledConnection | None = None
        self.error: BaseException | None = None
        #: Done once an outcome is set, or the wait timed out (:func:`_wake`).
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def set(self, conn: AsyncPooledConnection) -> bool:
        """Hand the task a connection; ``False`` if it has left (or already has one)."""
        return self._settle(conn, None)

    async def fail(self, error: BaseException) -> bool:
        """Hand the task an error; ``False`` if it has left (or already has an outcome)."""
        return self._settle(None, error)

    def _settle(self, conn: AsyncPooledConnection | None, error: BaseException | None) -> bool:
        if self.conn is not None or self.error is not None:
            return False
        self.conn, self.error = conn, error
        _wake(self.ready)
        return True


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class AsyncPostgresPool(CheckoutPolicy, AsyncConnectionPool[AsyncPooledConnection]):
    """A :class:`psycopg_pool.AsyncConnectionPool` with checkout validation and leak detection.

    The parameters are those of :class:`~pip_postgres.pool.PostgresPool`; ``on_leak`` is called
    from a task of the pool's event loop. Open it with ``await pool.open()``: an
    ``AsyncConnectionPool`` is never opened by its constructor.

    :param conninfo: the libpq connection string.
    :param kwargs: connection keyword arguments (password, autocommit).
    :param validation_bypass: seconds since its return within which a connection is handed
        out without a validation round trip; 0 validates at every checkout.
    :param leak_threshold: seconds after which a connection still checked out is reported to
        ``on_leak``, once; 0 turns leak detection off (and the stack is not recorded).
    :param on_leak: called with each :class:`~pip_postgres.pool.Leak`.
    :param reset_session: ``auto`` (default), ``always`` or ``never``; see :meth:`finish`.
    :param idle_order: which idle connection a checkout gets: ``lifo`` (default), the one
        returned last; ``fifo``, the one idle longest (psycopg_pool's own order).
    :param begin_with_statement: send ``BEGIN`` and the first statement of a transaction
        without waiting for ``BEGIN``'s answer in between: ``auto`` (default: where a trial
        of the first transactions finds it faster), ``always`` or ``never``; see
        :mod:`pip_postgres.begin`.
    :param pool_kwargs: passed on to :class:`psycopg_pool.AsyncConnectionPool`.
    """

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
        **pool_kwargs: Any,
    ) -> None:
        kwargs = self._init_policy(
            kwargs,
            _CURSORS,
            validation_bypass,
            leak_threshold,
            on_leak,
            reset_session,
            idle_order,
            begin_with_statement,
        )
        super().__init__(
            conninfo,
            connection_class=AsyncPooledConnection,
            kwargs=kwargs,
            open=False,
            **pool_kwargs,
        )
        self._init_idle_queue(idle_order)
        self._watcher: asyncio.Task[None] | None = None

    async def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool, and start the leak watcher if leak detection is on.

        See :meth:`psycopg_pool.AsyncConnectionPool.open`.
        """
        await super().open(wait=wait, timeout=timeout)
        self._init_direct_path()
        if self.leak_threshold > 0 and self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_leaks(), name=f"{self.name}-leaks")

    async def getconn(self, timeout: float | None = None) -> AsyncPooledConnection:
        """Check a connection out.

        A connection idle past the bypass window is validated first, and one past its lifetime
        is replaced; neither costs the caller an error. A task cancelled here loses nothing:
        a connection it had taken goes back to the pool.

        :param timeout: the longest to wait, in seconds, more than 0; default the pool's
            ``timeout``.
        :raises CheckoutTimeout: no working connection could be had in time; or ``timeout`` is
            0 or less (psycopg_pool's rule: no connection, even an idle one) or NaN.
        :raises psycopg_pool.PoolClosed: the pool is closed.
        """
        wait = self.timeout if timeout is None else timeout
        start = monotonic()
        conn = await self._take_idle(wait)
        if isinstance(conn, _AsyncWaiter):
            conn = await self._wait_for(conn, start, wait)
            if self._ready(conn, monotonic()):
                return conn
        elif conn is None:
            self._refuse_no_wait(wait)
            try:
                conn = await super().getconn(wait)
            except PoolTimeout:
                raise self._timeout_error(wait, 0) from None
            if self._ready(conn, monotonic()):
                return conn
        elif self._ready(conn, monotonic()):  # (not start: the lock may have made it wait)
            return conn
        steps, reply = self._checkout_steps(conn, start, wait), None
        try:
            while True:
                reply = await self._step(*steps.send(reply))
        except StopIteration as done:
            vetted: AsyncPooledConnection = done.value
            return vetted

    async def _take_idle(self, timeout: float) -> AsyncPooledConnection | _AsyncWaiter | None:
        """psycopg_pool's checkout of an idle connection, direct; else a place in its queue.

        As :meth:`pip_postgres.pool.PostgresPool._take_idle`, with an :class:`_AsyncWaiter`.
        Nothing is awaited between taking the connection (or queueing) and handing it out: a
        task cancelled while it waits for the lock has taken nothing.
        """
        # (see _init_direct_path(); a timeout of 0 or less, or NaN, goes the other way, where
        # _refuse_no_wait() refuses it)
        if not (timeout > 0 and self._direct) or self._closed:
            return None
        lock = self._lock
        try:
            await lock.acquire()
        except BaseException as error:  # cancelled while psycopg_pool's code held the lock
            self._count_failed(error, ())  # a request, as psycopg_pool's getconn() counts it
            raise
        try:
            conn = self._pop_idle()
            if conn is None:
                return self._queued(_AsyncWaiter())
        finally:
            lock.release()
        taken: AsyncPooledConnection = self._took(conn)
        return taken

    async def _wait_for(
        self, waiter: _AsyncWaiter, start: float, wait: float
    ) -> AsyncPooledConnection:
        """Wait until psycopg_pool hands ``waiter`` a connection (a return, a new connection).

        As :meth:`pip_postgres.pool.PostgresPool._wait_for`; a task cancelled meanwhile
        leaves the queue, and a connection that reached it goes back to the pool.

        :raises CheckoutTimeout: none came within ``wait`` seconds of ``start``.
        :raises psycopg_pool.PoolClosed: the pool was closed meanwhile.
        """
        pool: Any = self
        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(start + wait - monotonic(), 0.0), _wake, waiter.ready)
        try:
            await waiter.ready
        except BaseException as error:  # cancelled
            if not self._give_up(waiter, None) and waiter.conn is not None:
                pool.run_task(_ReturnConnection(pool, waiter.conn, from_getconn=True))
            self._count_failed(error, (Exception, asyncio.CancelledError))
            raise
        finally:
            timer.cancel()
            pool._stats[pool._REQUESTS_WAIT_MS] += int(1000.0 * (monotonic() - start))
        self._give_up(waiter, PoolTimeout())  # (nothing if an outcome came)
        taken: AsyncPooledConnection = self._waited(waiter, wait)
        return taken

    async def _step(self, step: str, conn: Any, seconds: float) -> Any:
        """Do one step of a checkout's I/O: see :data:`pip_postgres.checkout.Step`."""
        if step == "get":
            try:
                return await super().getconn(seconds)
            except PoolTimeout:
                return None
        if step == "ping":
            try:
                return await _ping(conn, seconds)
            except BaseException:
                await _discard(self, conn)  # cancelled while validating: state unknown
                raise
        return await _discard(self, conn)

    async def finish(self, conn: AsyncPooledConnection, success: bool) -> None:
        """End a checkout's transaction, and reset the session if it needs it.

        As :meth:`pip_postgres.pool.PostgresPool.finish`: commit if ``success`` (else roll back),
        with ``RESET ALL`` in the same query when ``reset_session`` asks for it.

        :param conn: a connection checked out of this pool.
        :param success: commit (rather than roll back) an open transaction.
        :raises psycopg.Error: the COMMIT, ROLLBACK or reset failed; the caller closes it.
        """
        sql = self._end_statement(conn, success)
        if sql is not None:
            await self._send_end(conn, sql)

    async def _send_end(self, conn: AsyncPooledConnection, sql: str) -> None:
        """Send what ends a checkout (see :meth:`finish`)."""
        if sql == "COMMIT":
            await conn.commit()
        elif sql == "ROLLBACK":
            await conn.rollback()
        # A plain cursor: the connection's own would mark the reset as a session change.
        elif sql != checkout.RESET_ALL:  # in a transaction
            await psycopg.AsyncCursor(conn).execute(sql, prepare=False)
        else:
            autocommit = conn.autocommit
            await conn.set_autocommit(True)
            try:
                await psycopg.AsyncCursor(conn).execute(sql, prepare=False)
            finally:
                if not conn.closed:
                    await conn.set_autocommit(autocommit)

    async def putconn(self, conn: AsyncPooledConnection) -> None:
        """Return a connection: clean what its holder left, then hand it back.

        As :meth:`pip_postgres.pool.PostgresPool.putconn`. A task cancelled here loses
        nothing: a connection being cleaned is closed and given back, and the pool replaces
        it; one being handed back is handed back by psycopg_pool's worker.

        :param conn: a connection checked out of this pool.
        """
        if self._given_back(conn):
            try:
                await self._restore(conn)
            except BaseException:
                await _discard(self, conn)
                raise
        if self._direct_return(conn):
            try:
                await self._add_to_pool(conn)  # to a waiter, or idle
            except BaseException:
                # Cancelled while it awaited psycopg_pool's lock, which psycopg_pool's own
                # waiters (max_waiting set) make it hold across an await: the connection went
                # neither to a waiter nor to the idle queue (psycopg_pool's putconn() would
                # lose it). psycopg_pool's worker hands it back.
                pool: Any = self
                pool.run_task(_ReturnConnection(pool, conn, from_getconn=False))
                raise
        else:
            await super().putconn(conn)

    async def _restore(self, conn: AsyncPooledConnection) -> None:
        status = conn.pgconn.transaction_status
        if status == checkout.ACTIVE:  # in the middle of an operation: unusable
            await conn.close()
            return
        try:
            if checkout.needs_cleaning(status, conn):
                await self.finish(conn, success=False)
            for name, value in checkout.attributes_to_restore(conn, self._autocommit):
                await getattr(conn, f"set_{name}")(value)
            checkout.restore_factories(conn, self._cursor_factory)
        except psycopg.Error:
            await conn.close()  # the pool replaces a closed connection

    def get_stats(self) -> dict[str, int]:
        """The pool's statistics (see :meth:`psycopg_pool.AsyncConnectionPool.get_stats`).

        Plus ours, as :meth:`pip_postgres.pool.PostgresPool.get_stats`.
        """
        stats = super().get_stats()
        stats.update(self._counters)
        return stats

    async def _watch_leaks(self) -> None:
        while True:
            await asyncio.sleep(checkout.leak_period(self.leak_threshold))
            self._report_leaks(monotonic())

    async def close(self, timeout: float = 5.0) -> None:
        """Close the pool and stop the leak watcher.

        See :meth:`psycopg_pool.AsyncConnectionPool.close`.
        """
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await super().close(timeout=timeout)

    def detach_after_fork(self) -> None:
        """In a child process after ``os.fork()``: let go of the parent's connections.

        As :meth:`pip_postgres.pool.PostgresPool.detach_after_fork`; the pool's tasks belong
        to the parent's event loop and are left alone.
        """
        self._watcher = None
        self._let_go_after_fork()

    async def shutdown(self, grace: float) -> int:
        """Close the pool, then cut the connections still checked out after ``grace``.

        As :meth:`pip_postgres.pool.PostgresPool.shutdown`: waiting callers fail at once with
        :class:`psycopg_pool.PoolClosed`; connections returned within ``grace`` seconds are
        closed normally; the queries of those still held are then cancelled and their sockets
        shut down, so their holders get an error at their next use.

        :param grace: seconds to let holders finish.
        :return: the number of connections that had to be cut.
        """
        deadline = monotonic() + grace
        await self.close(timeout=grace)
        while self._in_use and monotonic() < deadline:
            await asyncio.sleep(0.01)
        held = list(self._in_use.values())
        for conn in held:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.cancel_safe(timeout=2.0)
            _shutdown_socket(conn)
        return len(held)


async def _discard(pool: AsyncPostgresPool, conn: AsyncPooledConnection) -> None:
    """Close a connection taken at checkout and give it back: the pool replaces it."""

    async def discard() -> None:
        await conn.close()
        await AsyncConnectionPool.putconn(pool, conn)

    await asyncio.shield(discard())


async def _ping(conn: AsyncPooledConnection, timeout: float) -> bool:
    """Send an empty query and wait at most ``timeout`` seconds for its answer.

    As the sync pool's ping: psycopg's ``execute()`` has no client-side timeout, and a
    cancelled ``execute()`` would first try to cancel on the server; this waits on the socket
    directly, within ``asyncio.wait_for``.

    :return: whether the connection answered, idle, in time.
    """
    pgconn = conn.pgconn
    if conn.closed or pgconn.transaction_status != IDLE:
        return False
    try:
        async with conn.lock:
            pgconn.send_query(b"")
            results = await asyncio.wait_for(
                waiting.wait_async(generators.execute(pgconn), pgconn.socket), timeout
            )
    except (psycopg.Error, OSError, asyncio.TimeoutError):
        return False
    answered = bool(results) and results[-1].status == pq.ExecStatus.EMPTY_QUERY
    return answered and pgconn.transaction_status == IDLE
