"""The pool behind :class:`~pip_postgres.PostgresConnection`.

:class:`PostgresPool` is a :class:`psycopg_pool.ConnectionPool` that adds what a long-running
service needs of its checkouts:

- validation at checkout, skipped for connections returned within a short bypass window
  (HikariCP's idea: a connection used a moment ago is almost surely alive, and a round trip
  per checkout is a high price for that certainty) unless what costs no round trip (its
  state, a zero-timeout poll of its socket) shows that something happened to it;
- replacement at checkout of connections past their lifetime;
- restoring, at return, the connection attributes a caller may have changed (``autocommit``,
  ``isolation_level``, ``read_only``, ``deferrable``);
- leak detection: a connection held past a threshold is reported once, with the stack of its
  checkout;
- a bounded :meth:`PostgresPool.shutdown` that cuts connections still held after a grace time.

It is still a ``ConnectionPool``: code that calls ``getconn()``/``putconn()`` or
``connection()`` on it gets all of the above. It also speaks psycopg2-pool's API (keyed
``getconn(key)``, ``putconn(conn, key, close)``, ``closeall()``, ``minconn``/``maxconn``), its
connections end a ``with conn:`` block as psycopg2's did (without closing), and
``psycopg2_compat`` makes a fetch without a result raise an error psycopg2 code catches: code
written for psycopg2's pool runs on it unchanged.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from time import monotonic
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import pq
from psycopg.rows import TupleRow, tuple_row
from psycopg_pool import ConnectionPool, PoolTimeout

from .fork import release
from .redaction import SECRET_PARAMS, redact

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

#: The least and the most time given to a validation round trip, in seconds. Within these
#: bounds it gets a quarter of the checkout's timeout (and no more than is left of it), so
#: that a connection that does not answer (its network path silently dropped) leaves the
#: checkout time to get another one.
_MIN_PING_TIMEOUT = 0.05
_MAX_PING_TIMEOUT = 2.0

_IDLE = pq.TransactionStatus.IDLE
_ACTIVE = pq.TransactionStatus.ACTIVE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_CONN_OK = pq.ConnStatus.OK

try:  # psycopg2 is optional: only options.psycopg2_compat looks for it
    from psycopg2 import ProgrammingError as _Psycopg2ProgrammingError
except ImportError:  # pragma: no cover - psycopg2 is installed with the test extra
    _COMPAT_BASES: tuple[type[Exception], ...] = (psycopg.ProgrammingError,)
else:
    _COMPAT_BASES = (psycopg.ProgrammingError, _Psycopg2ProgrammingError)


class CheckoutTimeout(PoolTimeout):
    """No connection became free within the checkout timeout.

    A :class:`psycopg_pool.PoolTimeout`, so code that catches psycopg_pool's error keeps
    working; its message names the pool size, the wait, and the last connection error.
    """


@dataclass(frozen=True)
class Leak:
    """A connection held longer than the leak detection threshold."""

    #: The pool's name.
    pool: str
    #: How long the connection had been checked out when it was reported, in seconds.
    held: float
    #: Where it was checked out: the formatted stack of the checkout.
    stack: str


class _ConnectState:
    """What the pool's connections tell it when they connect (shared, one per pool)."""

    def __init__(self) -> None:
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return "<pool connect state>"


def _changes_session(query: object) -> bool:
    """Whether ``query`` looks like it changes a session setting.

    It does if one of its statements starts with ``SET`` or ``RESET`` (the first one, or one
    after a semicolon), or if it calls ``set_config()``. A composed query
    (:mod:`psycopg.sql`) is not looked at: its command status tells, after it ran. The screen
    costs a lowercase copy of the text and a substring search, so it stays cheap for long
    queries; a false positive costs one ``RESET ALL``, nothing more.
    """
    if isinstance(query, bytes):
        query = query.decode("latin-1")  # the keywords are ASCII; never fails
    elif not isinstance(query, str):
        return False
    text = query.lower()
    if "set" not in text:  # "reset" and "set_config" contain it too
        return False
    if _starts_with_set(text) or "set_config" in text:
        return True
    return ";" in text and any(_starts_with_set(part) for part in text.split(";")[1:])


def _starts_with_set(statement: str) -> bool:
    """Whether a lowercase statement starts with the word ``set`` or ``reset``."""
    statement = statement.lstrip()
    for word in ("set", "reset"):
        if statement.startswith(word):
            after = statement[len(word) : len(word) + 1]
            return not (after.isalnum() or after == "_")
    return False


_SESSION_STATUS = (b"SET", b"RESET")


class _UsageCursor(psycopg.Cursor[TupleRow]):
    """A cursor that marks its connection :attr:`~PooledConnection.used` when a statement runs.

    The cursor of ``options.reset_session`` = ``always``, which resets a session only if it
    ran something.
    """

    __slots__ = ()

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Self:
        """Execute a statement: see :meth:`psycopg.Cursor.execute`."""
        self._conn.used = True  # type: ignore[attr-defined]
        return super().execute(query, *args, **kwargs)

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        """Execute a statement many times: see :meth:`psycopg.Cursor.executemany`."""
        self._conn.used = True  # type: ignore[attr-defined]
        super().executemany(query, *args, **kwargs)


class _TrackingCursor(psycopg.Cursor[TupleRow]):
    """A cursor that tells its connection what ran during the checkout.

    The cursor of ``options.reset_session`` = ``auto``. It marks the connection
    :attr:`~PooledConnection.used` when any statement runs, and
    :attr:`~PooledConnection.session_changed` when one looks like it changes a session setting
    (its text: a statement that starts with ``SET`` or ``RESET``, or a call of
    ``set_config()``; or its command status ``SET``/``RESET``).
    """

    __slots__ = ()

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Self:
        """Execute a statement: see :meth:`psycopg.Cursor.execute`."""
        conn: PooledConnection = self._conn  # type: ignore[assignment]
        conn.used = True
        if conn.session_changed:
            return super().execute(query, *args, **kwargs)
        if _changes_session(query):
            conn.session_changed = True
        try:
            return super().execute(query, *args, **kwargs)
        finally:
            result = self.pgresult
            if result is not None and result.command_status in _SESSION_STATUS:
                conn.session_changed = True

    def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
        """Execute a statement many times: see :meth:`psycopg.Cursor.executemany`."""
        conn: PooledConnection = self._conn  # type: ignore[assignment]
        conn.used = True
        if _changes_session(query):
            conn.session_changed = True
        super().executemany(query, *args, **kwargs)


#: The cursor class of the pool's connections for each ``options.reset_session`` mode: each
#: watches only what the end of a checkout needs to know.
_CURSORS: dict[str, type[psycopg.Cursor[TupleRow]]] = {
    "auto": _TrackingCursor,
    "always": _UsageCursor,
    "never": psycopg.Cursor,
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


def cursor_class(reset_session: str, psycopg2_compat: bool) -> type[psycopg.Cursor[TupleRow]]:
    """The cursor class of a pool's connections.

    :param reset_session: ``auto``, ``always`` or ``never``: what the cursor watches.
    :param psycopg2_compat: its fetch methods raise :class:`Psycopg2CompatError`.
    :raises ValueError: an unknown ``reset_session``.
    """
    classes = _COMPAT_CURSORS if psycopg2_compat else _CURSORS
    if reset_session not in classes:
        raise ValueError(f"reset_session must be auto, always or never, got {reset_session!r}")
    return classes[reset_session]


def bypass_applies(
    now: float,
    returned_at: float,
    created_at: float,
    *,
    bypass: float,
    suspect_before: float,
    max_lifetime: float,
) -> bool:
    """Whether an idle connection is recent enough to skip the validation round trip.

    All times are ``time.monotonic()`` seconds. It is if it was returned at most ``bypass``
    seconds ago, not before ``suspect_before`` (when another connection was found broken),
    and it is younger than ``max_lifetime``. The connection must still pass
    :func:`idle_and_intact` and :func:`socket_has_news`.
    """
    return (
        now - returned_at <= bypass
        and returned_at >= suspect_before
        and now - created_at < max_lifetime
    )


def idle_and_intact(closed: bool, broken: bool, status: int, transaction: int) -> bool:
    """Whether a connection's own state (no round trip) lets it be handed out unvalidated.

    :param closed: ``conn.closed``: someone closed it (a caller, after giving it back).
    :param broken: ``conn.broken``: psycopg saw it fail.
    :param status: ``conn.pgconn.status``: libpq's view; ``OK`` only.
    :param transaction: ``conn.pgconn.transaction_status``: ``IDLE`` only.
    """
    return not closed and not broken and status == _CONN_OK and transaction == _IDLE


def socket_has_news(fd: int) -> bool:
    """Whether an idle connection's socket has something to read, or hung up or failed.

    A zero-timeout poll (about a microsecond, no round trip). An idle session is sent nothing
    unless the server has something to say: a termination notice (``pg_terminate_backend()``,
    a shutdown or restart, ``idle_session_timeout``), an end of file, or an asynchronous
    notice or notification. Any of these sends the connection to a validation round trip.
    """
    try:
        if not hasattr(select, "poll"):  # Windows
            readable, _, failed = select.select([fd], [], [fd], 0)
            return bool(readable or failed)
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # a closed or invalid descriptor
        return True


class PooledConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection that knows its age, its last use and its current holder."""

    #: When it was connected (``time.monotonic()``).
    created_at: float = 0.0
    #: When it was last returned to the pool, or connected (``time.monotonic()``).
    returned_at: float = 0.0
    #: When it was last checked out (``time.monotonic()``).
    checked_out_at: float = 0.0
    _blocks: dict[int, list[int]]
    #: The stack of its checkout, kept only while leak detection is on.
    checkout_stack: list[str] | None = None
    #: Whether the current checkout was reported as a leak.
    leak_reported: bool = False
    #: Whether a statement ran through one of its cursors during the checkout (watched when
    #: ``reset_session`` is ``auto`` or ``always``; cleared when the checkout ends).
    used: bool = False
    #: Whether a statement that looks like it changes a session setting ran during the checkout
    #: (watched when ``reset_session`` is ``auto``; cleared when the checkout ends).
    session_changed: bool = False
    #: Whether it belongs to a :class:`PostgresPool` (set when the pool connects it).
    pooled: bool = False
    #: Whether it is checked out now.
    held: bool = False
    #: Counts its checkouts and returns: a ``with conn:`` block that sees it changed knows
    #: that its checkout ended (and that the connection may be another holder's now).
    checkout_seq: int = 0

    def __enter__(self) -> Self:
        """Start a ``with conn:`` block: remember which checkout it belongs to."""
        if self.pooled:
            self._blocks.setdefault(threading.get_ident(), []).append(self.checkout_seq)
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
        or rolled back, then closed.
        """
        if not self.pooled:
            super().__exit__(exc_type, exc_val, exc_tb)
            return
        ident = threading.get_ident()
        blocks = self._blocks.get(ident)
        seq = blocks.pop() if blocks else None
        if not blocks:
            self._blocks.pop(ident, None)
        if seq != self.checkout_seq or not self.held or self.closed:
            return
        if exc_type is None:
            self.commit()
            return
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
        state: _ConnectState | None = kwargs.pop("connect_state", None)
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as error:
            if state is not None:
                secrets = [str(kwargs[name]) for name in SECRET_PARAMS & kwargs.keys()]
                state.last_error = redact(str(error).strip(), secrets)
            raise
        if state is not None:
            state.last_error = None
            conn.pooled = True
        # The open ``with conn:`` blocks, per thread: the checkout number each one started in.
        conn._blocks = {}
        conn.created_at = conn.returned_at = monotonic()
        return conn


class _LastInFirstOut(deque[Any]):
    """psycopg_pool's queue of idle connections, served last in, first out.

    psycopg_pool takes the connection that has been idle longest (``popleft``). Taking the one
    returned last instead keeps a few connections busy and warm, and makes the validation
    bypass window apply more often. psycopg_pool's shrinking after ``max_idle`` also takes
    from this end: it closes the connection returned last, which costs the next checkout
    nothing, since any idle connection serves.
    """

    def popleft(self) -> Any:
        return self.pop()


class PostgresPool(ConnectionPool[PooledConnection]):
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
    :param psycopg2_compat: a cursor's ``fetchone()``/``fetchmany()``/``fetchall()`` after a
        statement without a result raises :class:`Psycopg2CompatError`, which code written for
        psycopg2 catches; default ``False``.
    :param open: open the pool now (see :meth:`psycopg_pool.ConnectionPool.open`); default
        ``False``.
    :param pool_kwargs: passed on to :class:`psycopg_pool.ConnectionPool` (sizes, timeouts).
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
        psycopg2_compat: bool = False,
        open: bool = False,
        **pool_kwargs: Any,
    ) -> None:
        self._cursor_factory = cursor_class(reset_session, psycopg2_compat)
        if idle_order not in ("lifo", "fifo"):
            raise ValueError(f"idle_order must be lifo or fifo, got {idle_order!r}")
        #: When the end of a checkout resets the session: ``auto``, ``always`` or ``never``
        #: (see :meth:`finish`).
        self.reset_session = reset_session
        #: Whether fetching without a result raises :class:`Psycopg2CompatError`.
        self.psycopg2_compat = psycopg2_compat
        self._connect_state = _ConnectState()
        self._autocommit = bool(kwargs.get("autocommit", False))
        super().__init__(
            conninfo,
            connection_class=PooledConnection,
            kwargs={
                **kwargs,
                "connect_state": self._connect_state,
                "cursor_factory": self._cursor_factory,
            },
            open=False,
            **pool_kwargs,
        )
        #: Which idle connection a checkout gets: ``lifo`` or ``fifo``.
        self.idle_order = idle_order
        # psycopg_pool keeps its idle connections in this deque (psycopg_pool 3.2 and 3.3; the
        # test suite checks the order, so that a change there is noticed).
        if idle_order == "lifo":
            self._pool = _LastInFirstOut(self._pool)
        self.validation_bypass = validation_bypass
        # Connections returned before this moment are validated whatever their bypass window:
        # one of them was found broken, so the others may have died with it.
        self._suspect_before = 0.0
        self.leak_threshold = leak_threshold
        self._on_leak = on_leak
        # Connections checked out now, by id: for leak detection and shutdown.
        self._in_use: dict[int, PooledConnection] = {}
        # psycopg2's keyed checkouts: the connection of each key, and the key of each one.
        self._keyed: dict[Hashable, PooledConnection] = {}
        self._key_of: dict[int, Hashable] = {}
        self._keys_lock = threading.Lock()
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None
        self._counters = {
            "connections_validated": 0,
            "connections_broken": 0,
            "connections_expired": 0,
            "leaks_reported": 0,
        }
        if open:
            self.open()

    @property
    def last_connect_error(self) -> str | None:
        """The server's reason for the last failed connection attempt.

        ``None`` if the last attempt succeeded.
        """
        return self._connect_state.last_error

    def open(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Open the pool, and start the leak watcher if leak detection is on.

        See :meth:`psycopg_pool.ConnectionPool.open`.
        """
        super().open(wait=wait, timeout=timeout)
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

        :param timeout: the longest to wait, in seconds; default the pool's ``timeout``.
        :param key: psycopg2's key: while a connection checked out with this key is not given
            back, ``getconn(key=...)`` returns that same connection (in any thread). Give it
            back once, with :meth:`putconn`. Default ``None``: a checkout of its own.
        :raises CheckoutTimeout: no working connection could be had in time.
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
        remaining = wait
        broken = 0
        while True:
            try:
                conn = super().getconn(remaining)
            except PoolTimeout:
                raise self._timeout_error(wait, broken) from None
            now = monotonic()
            pgconn = conn.pgconn
            if not (
                bypass_applies(
                    now,
                    conn.returned_at,
                    conn.created_at,
                    bypass=self.validation_bypass,
                    suspect_before=self._suspect_before,
                    max_lifetime=self.max_lifetime,
                )
                and idle_and_intact(
                    conn.closed, conn.broken, pgconn.status, pgconn.transaction_status
                )
                and not socket_has_news(pgconn.socket)
            ):
                problem = self._vet(conn, now, min(wait / 4, start + wait - now))
                if problem is not None:
                    broken += problem == "connections_broken"
                    remaining = start + wait - monotonic()
                    continue
            conn.checked_out_at = now
            conn.used = conn.session_changed = False
            conn.held = True
            conn.checkout_seq += 1
            self._in_use[id(conn)] = conn
            if self.leak_threshold > 0:
                conn.checkout_stack = traceback.format_stack()[:-1]
                conn.leak_reported = False
            return conn

    def _vet(self, conn: PooledConnection, now: float, ping_time: float) -> str | None:
        """Check a connection that is old, or idle past the bypass window, or suspect.

        :param ping_time: the time the validation round trip may take, in seconds, before the
            bounds ``_MIN_PING_TIMEOUT`` and ``_MAX_PING_TIMEOUT`` apply.
        :return: ``None`` if it may be handed out; else the counter of why it was discarded.
        """
        if now - conn.created_at >= self.max_lifetime:
            problem = "connections_expired"
        elif self._alive(conn, min(max(ping_time, _MIN_PING_TIMEOUT), _MAX_PING_TIMEOUT)):
            return None
        else:
            problem = "connections_broken"
            if conn.broken or not conn.closed:
                # The server or the network failed it: the others may have failed with it. (A
                # connection closed by a caller, after it gave it back, says nothing of them.)
                self._suspect_before = monotonic()
        self._counters[problem] += 1
        conn.close()
        # A closed connection given back is dropped, and a new one is made in the background.
        super().putconn(conn)
        return problem

    def finish(self, conn: PooledConnection, success: bool) -> None:
        """End a checkout's transaction, and reset the session if it needs it, in one round trip.

        The transaction is committed if ``success``, else rolled back. ``RESET ALL`` follows
        when :attr:`reset_session` asks for it: ``auto``, if a statement of the checkout looked
        like it changed a setting; ``always``, if any statement ran; ``never``. In a
        transaction it travels with the COMMIT or ROLLBACK, as one query; outside one (in
        autocommit mode) it costs a round trip of its own. :meth:`putconn` calls it with
        ``success`` false, so that a connection given back in a transaction is rolled back.

        :param conn: a connection checked out of this pool.
        :param success: commit (rather than roll back) an open transaction.
        :raises psycopg.Error: the COMMIT, ROLLBACK or reset failed; the connection is then in
            an unknown state, and the caller closes it.
        """
        status = conn.pgconn.transaction_status
        if status != _IDLE and status != _INTRANS and status != _INERROR:
            return  # closed, broken, or in the middle of an operation: putconn() deals with it
        commit = success and status == _INTRANS
        mode = self.reset_session
        reset = conn.session_changed if mode == "auto" else mode == "always" and conn.used
        conn.used = conn.session_changed = False  # what putconn() looks at: nothing left to do
        if not reset:
            if commit:
                conn.commit()
            elif status != _IDLE:
                conn.rollback()
            return
        # A plain cursor: the connection's own would mark the reset as a session change.
        if status != _IDLE:
            end = "COMMIT" if commit else "ROLLBACK"
            psycopg.Cursor(conn).execute(f"{end}; RESET ALL", prepare=False)
            return
        # In transactional mode a plain execute() would open a transaction first.
        autocommit = conn.autocommit
        conn.autocommit = True
        try:
            psycopg.Cursor(conn).execute("RESET ALL", prepare=False)
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
        self._release_key(conn, key)
        self._in_use.pop(id(conn), None)
        if conn.checkout_stack is not None:
            conn.checkout_stack = None
        conn.held = False
        conn.checkout_seq += 1
        conn.returned_at = now = monotonic()
        if close:
            conn.close()
        elif conn.broken or conn.closed:
            self._suspect_before = now
        else:
            self._restore(conn)
        super().putconn(conn)

    def _release_key(self, conn: PooledConnection, key: Hashable | None) -> None:
        if key is None and not self._key_of:
            return  # no keyed checkout (a connection's key is set before it is handed out)
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
            if status != _IDLE or conn.used or conn.session_changed:
                self.finish(conn, success=False)
            if conn.autocommit is not self._autocommit:
                conn.autocommit = self._autocommit
            if conn.isolation_level is not None:
                conn.isolation_level = None
            if conn.read_only is not None:
                conn.read_only = None
            if conn.deferrable is not None:
                conn.deferrable = None
            if conn.row_factory is not tuple_row:
                conn.row_factory = tuple_row
            if conn.cursor_factory is not self._cursor_factory:
                conn.cursor_factory = self._cursor_factory
        except psycopg.Error:
            conn.close()  # the pool replaces a closed connection

    def get_stats(self) -> dict[str, int]:
        """The pool's statistics (see :meth:`psycopg_pool.ConnectionPool.get_stats`), and ours.

        Ours: ``connections_validated`` (validation round trips at checkout),
        ``connections_broken`` (connections found broken, or closed, at checkout and replaced),
        ``connections_expired`` (replaced at checkout for their age), ``leaks_reported``.
        """
        stats = super().get_stats()
        stats.update(self._counters)
        return stats

    def _alive(self, conn: PooledConnection, timeout: float) -> bool:
        self._counters["connections_validated"] += 1
        return _ping(conn, timeout)

    def _timeout_error(self, waited: float, broken: int) -> CheckoutTimeout:
        stats = self.get_stats()
        message = (
            f"no connection free in pool {self.name!r} after waiting {waited:.2f} s "
            f"(max_pool_size={self.max_size}, {stats.get('pool_size', 0)} open, "
            f"{len(self._in_use)} checked out)"
        )
        if broken:
            message += (
                f"; {broken} idle connection(s) failed validation and were replaced, "
                "the network or the server may be down"
            )
        if self.last_connect_error:
            message += f"; the last connection attempt failed: {self.last_connect_error}"
        elif not broken:
            message += (
                ": raise options.max_pool_size or options.connect_timeout, or hold "
                "connections for less time"
            )
        return CheckoutTimeout(message)

    def _watch_leaks(self) -> None:
        period = min(max(self.leak_threshold / 4, 0.01), 1.0)
        while not self._stop_watch.wait(period):
            now = monotonic()
            for conn in list(self._in_use.values()):
                stack = conn.checkout_stack
                held = now - conn.checked_out_at
                if stack is not None and not conn.leak_reported and held >= self.leak_threshold:
                    conn.leak_reported = True
                    self._counters["leaks_reported"] += 1
                    if self._on_leak is not None:
                        self._on_leak(Leak(self.name, held, "".join(stack)))

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
        inherited = [*self._pool, *self._in_use.values()]
        self._pool.clear()
        self._in_use.clear()
        self._closed = True
        self._stop_watch.set()
        self._watcher = None
        release(inherited)

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


def _is_timeout(value: object) -> bool:
    """Whether a positional ``getconn()`` argument is a timeout (a number, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
            while pgconn.flush() != 0:
                if not _wait(pgconn.socket, True, deadline):
                    return False
            while True:
                pgconn.consume_input()
                if not pgconn.is_busy():
                    break
                if not _wait(pgconn.socket, False, deadline):
                    return False
            answered = False
            while (result := pgconn.get_result()) is not None:
                answered = result.status == pq.ExecStatus.EMPTY_QUERY
    except psycopg.Error:
        return False
    return answered and pgconn.transaction_status == _IDLE


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
    try:
        fd = conn.pgconn.socket
    except psycopg.Error:
        return
    try:
        with socket.socket(fileno=socket.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
