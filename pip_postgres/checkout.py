"""What a checkout decides, shared by the threaded and the asyncio pools.

:class:`~pip_postgres.pool.PostgresPool` and
:class:`~pip_postgres.pool_async.AsyncPostgresPool` differ only in how they wait (a thread
blocks, a task awaits). What they decide is pure and lives here,
once: when a connection is validated at checkout, what the end of a checkout sends
(``COMMIT``/``ROLLBACK``, ``RESET ALL``), which statements look like they change a session
setting, which attributes a holder changed, how long a validation round trip may take, which
held connections are leaks, and what a checkout timeout says. Nothing here does I/O but
:func:`socket_has_news`, a zero-timeout poll of an idle connection's socket.

psycopg_pool generates its sync pool from its async one with a script (``async_to_sync.py``
in the psycopg repository); for a layer this small, a module of pure functions and one state
class that both pools inherit keep each decision in one home at a lower cost (see
:doc:`/async`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import select
import traceback
from collections import deque
from collections.abc import Callable, Generator, Hashable, Mapping, Sized
from dataclasses import dataclass
from functools import partial
from time import monotonic
from typing import Any, TypeVar, cast

from psycopg import pq
from psycopg.rows import tuple_row
from psycopg_pool import PoolTimeout

from .begin import BeginAhead
from .fork import release
from .redaction import SECRET_PARAMS, redact

__all__ = ["CheckoutTimeout", "Leak"]

#: psycopg_pool's logger: the direct checkout and return log what psycopg_pool's own do.
_POOL_LOGGER = logging.getLogger("psycopg.pool")

#: The attributes of psycopg_pool's pools (3.2.2 to 3.3, not documented by psycopg_pool) that
#: the direct checkout and return use: a checkout that finds an idle connection and a return
#: of a clean one, done as psycopg_pool's ``getconn()`` and ``putconn()`` do them, without
#: their layers. A pool that lacks one of them always goes through psycopg_pool's public
#: ``getconn()`` and ``putconn()``.
DIRECT_PATH_ATTRIBUTES = (
    "_lock",
    "_pool",
    "_nconns_min",
    "_stats",
    "_REQUESTS_NUM",
    "_REQUESTS_QUEUED",
    "_REQUESTS_WAIT_MS",
    "_REQUESTS_ERRORS",
    "_waiting",
    "_maybe_grow_pool",
    "max_waiting",
    "run_task",
    "_closed",
    "_check",
    "_reset",
    "_drained_at",
    "_add_to_pool",
)

#: The least and the most time given to a validation round trip, in seconds. Within these
#: bounds it gets a quarter of the checkout's timeout (and no more than is left of it), so
#: that a connection that does not answer (its network path silently dropped) leaves the
#: checkout time to get another one.
MIN_PING_TIMEOUT = 0.05
MAX_PING_TIMEOUT = 2.0

#: How long a connection must have been idle, in seconds, for its checkout to poll its socket
#: (:func:`socket_has_news`): 100 µs. The poll catches what the server sent while the
#: connection was idle (a termination notice), so what it can catch grows with the time idle,
#: while its cost does not: a system call, a microsecond or two on a CPU that just woke up or
#: ran the server. A connection given back less than this before, by a thread or task making
#: requests back to back, is handed out without it; a notice that lands in such a gap costs
#: that request an error, as one that lands during the request itself would.
NEWS_CHECK_AFTER = 100e-6

IDLE = pq.TransactionStatus.IDLE
ACTIVE = pq.TransactionStatus.ACTIVE
INTRANS = pq.TransactionStatus.INTRANS
INERROR = pq.TransactionStatus.INERROR
CONN_OK = pq.ConnStatus.OK

#: The ``options.reset_session`` modes.
RESET_MODES = ("auto", "always", "never")


#: Command statuses of statements that change a session setting.
SESSION_STATUS = (b"SET", b"RESET")

#: The statement that resets a session.
RESET_ALL = "RESET ALL"


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


#: The ``idle_order`` values: which idle connection a checkout gets.
IDLE_ORDERS = ("lifo", "fifo")


def idle_queue(queue: deque[Any], idle_order: str) -> deque[Any]:
    """psycopg_pool's queue of idle connections, served in ``idle_order``.

    :param queue: the pool's queue (psycopg_pool 3.2 and 3.3 keep it in ``_pool``).
    :param idle_order: ``lifo``, the connection returned last; ``fifo``, the one idle longest
        (psycopg_pool's own order).
    :raises ValueError: ``idle_order`` is neither.
    """
    if idle_order not in IDLE_ORDERS:
        raise ValueError(f"idle_order must be lifo or fifo, got {idle_order!r}")
    return _LastInFirstOut(queue) if idle_order == "lifo" else queue


class ConnectState:
    """What the pool's connections tell it when they connect, and what they learn from it.

    Shared, one per pool: the last connection error, and the decision of
    ``options.begin_with_statement`` that each new connection keeps a reference to.

    :param begin_with_statement: ``options.begin_with_statement``: ``auto`` (default),
        ``always`` or ``never``.
    :param in_use: the pool's connections checked out now (see
        :class:`~pip_postgres.begin.BeginAhead`).
    """

    def __init__(self, begin_with_statement: str = "auto", in_use: Sized | None = None) -> None:
        #: The server's reason for the last failed connection attempt (``None`` after a
        #: success).
        self.last_error: str | None = None
        #: Whether checkouts send ``BEGIN`` with the first statement, and the ``auto``
        #: trial's state.
        self.begin = BeginAhead(begin_with_statement, in_use)

    def __repr__(self) -> str:
        return "<pool connect state>"


class CheckoutMarks:
    """What a pooled connection knows of its age, its last use and its current holder.

    A mixin of :class:`~pip_postgres.pool.PooledConnection` and
    :class:`~pip_postgres.pool_async.AsyncPooledConnection`.
    """

    #: When it was connected (``time.monotonic()``).
    created_at: float = 0.0
    #: When it was last returned to the pool, or connected (``time.monotonic()``).
    returned_at: float = 0.0
    #: When it was last checked out (``time.monotonic()``).
    checked_out_at: float = 0.0
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
    #: Whether it belongs to a pool of this package (set when the pool connects it).
    pooled: bool = False
    #: Whether its cursors look at the first statement of a transaction during the current
    #: checkout, to send ``BEGIN`` with it or to time it for the ``auto`` trial (stamped at
    #: checkout from :attr:`begin_decision`; never in a pool in autocommit mode, where a
    #: holder that turns autocommit off gets psycopg's own ``BEGIN``).
    begin_ahead: bool = False
    #: Its pool's :class:`~pip_postgres.begin.BeginAhead` (set when the pool connects it).
    begin_decision: BeginAhead
    #: Whether it is checked out now.
    held: bool = False
    #: Counts its checkouts and returns: a ``with conn:`` block that sees it changed knows
    #: that its checkout ended (and that the connection may be another holder's now).
    checkout_seq: int = 0
    #: A zero-timeout poll of its socket, made once when it connects (:func:`news_poller`),
    #: so that :func:`socket_has_news` costs one system call at a checkout after
    #: :data:`NEWS_CHECK_AFTER` idle (``None`` where C's ``poll()`` cannot be called: Windows).
    news_poller: Callable[[], int] | None = None
    #: The open ``with conn:`` blocks, per thread or task: the checkout number each one
    #: started in (made when it connects; see :func:`block_started`).
    open_blocks: dict[Hashable, list[int]]


#: What the end of a ``with conn:`` block does: see :func:`block_end`.
BLOCK_ENDS = ("close", "nothing", "commit", "rollback")


def block_end(
    pooled: bool, block_seq: int | None, seq: int, held: bool, closed: bool, failed: bool
) -> str:
    """What the end of a ``with conn:`` (or ``async with conn:``) block does.

    psycopg2's ``with conn:`` ended the transaction and left the connection open; psycopg's
    also closes it, unless psycopg_pool lent it. A pool of this package never lets a block
    close one of its connections: code that gives the connection back inside the block and
    then leaves it would otherwise close a connection that is idle in the pool, or another
    holder's.

    :param pooled: the connection belongs to a pool of this package.
    :param block_seq: the checkout number (:attr:`CheckoutMarks.checkout_seq`) the block
        started in; ``None`` if no block of this thread or task is open.
    :param seq: the connection's checkout number now.
    :param held: whether it is checked out now.
    :param closed: whether it is closed.
    :param failed: whether the block raised.
    :return: ``"close"``, psycopg's own end (commit, or roll back, then close: a connection of
        no pool); ``"nothing"``, the block's checkout ended (the block gave it back) or it is
        closed; ``"commit"`` or ``"rollback"`` (if the block raised), still the block's
        checkout, which stays checked out.
    """
    if not pooled:
        return "close"
    if block_seq != seq or not held or closed:
        return "nothing"
    return "rollback" if failed else "commit"


def block_started(conn: CheckoutMarks, key: Hashable) -> None:
    """Remember the checkout a ``with conn:`` block opened by ``key`` starts in.

    :param key: what runs the block: a thread's id (sync) or an asyncio task (async).
    """
    if conn.pooled:
        conn.open_blocks.setdefault(key, []).append(conn.checkout_seq)


def block_ended(conn: CheckoutMarks, key: Hashable, failed: bool) -> str:
    """Forget the innermost open block of ``key``; what its end does (:func:`block_end`)."""
    seq = None
    if conn.pooled:
        blocks = conn.open_blocks.get(key)
        seq = blocks.pop() if blocks else None
        if not blocks:
            conn.open_blocks.pop(key, None)
    closed: bool = cast(Any, conn).closed
    return block_end(conn.pooled, seq, conn.checkout_seq, conn.held, closed, failed)


def bypass_applies(
    now: float,
    returned_at: float,
    created_at: float,
    bypass: float,
    suspect_before: float,
    max_lifetime: float,
) -> bool:
    """Whether an idle connection is recent enough to skip the validation round trip.

    All times are ``time.monotonic()`` seconds. It is if it was returned at most ``bypass``
    seconds ago, not before ``suspect_before`` (when another connection was found broken),
    and it is younger than ``max_lifetime``. The connection must still pass
    :func:`idle_and_intact`, and :func:`socket_has_news` if it was idle
    :data:`NEWS_CHECK_AFTER` or longer. (The pools' checkout writes these rules out in one
    expression, a call less each on every checkout; a property test holds it to these
    functions.)
    """
    return (
        now - returned_at <= bypass
        and returned_at >= suspect_before
        and now - created_at < max_lifetime
    )


def idle_and_intact(status: int, transaction: int) -> bool:
    """Whether a connection's own state (no round trip) lets it be handed out unvalidated.

    :param status: ``conn.pgconn.status``, libpq's view: ``OK`` only. A connection closed
        (by a caller, after giving it back) or broken (psycopg saw it fail) is not.
    :param transaction: ``conn.pgconn.transaction_status``: ``IDLE`` only.
    """
    return status == CONN_OK and transaction == IDLE


class _PollFd(ctypes.Structure):
    """C's ``struct pollfd``."""

    _fields_ = (("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short))


def _held_poll() -> Callable[..., int] | None:
    """C's ``poll()``, called with the interpreter lock held; ``None`` where there is none.

    Without ``argtypes``: its arguments are passed as ready-made ctypes objects
    (:func:`news_poller`), which costs less per call than converting them.
    """
    try:
        function = ctypes.PyDLL(None).poll  # PyDLL: the lock is not released for the call
    except (AttributeError, OSError, TypeError):  # Windows
        return None
    function.restype = ctypes.c_int
    return cast("Callable[..., int]", function)


_HELD_POLL = _held_poll()
_ONE = ctypes.c_ulong(1)
_NEWS_EVENTS = (
    getattr(select, "POLLIN", 1) | getattr(select, "POLLERR", 8) | getattr(select, "POLLHUP", 16)
)


def news_poller(fd: int) -> Callable[[], int] | None:
    """A zero-timeout poll of ``fd``, made once per connection (:func:`socket_has_news`).

    A call of C's ``poll()`` that keeps the interpreter lock: it never blocks, and releasing
    the lock for it, as :mod:`select` does, lets another thread take it, so that with a few
    busy threads a checkout would wait for the lock for milliseconds (its 99th percentile went
    from about 50 µs to 1.5 ms with 8 threads on a pool of 8). ``None`` where C's ``poll()``
    cannot be called so (Windows): :func:`socket_has_news` then uses :func:`select.select`.

    :return: a callable that returns a positive number if ``fd`` has news, 0 if not, -1 on an
        error.
    """
    if _HELD_POLL is None:
        return None
    # The pointer keeps its struct alive; nfds is C's unsigned long, the timeout an int.
    return partial(_HELD_POLL, ctypes.pointer(_PollFd(fd, _NEWS_EVENTS, 0)), _ONE, 0)


def socket_has_news(fd: int, poller: Callable[[], int] | None = None) -> bool:
    """Whether an idle connection's socket has something to read, or hung up or failed.

    A zero-timeout poll (one system call, no round trip). An idle session is sent nothing
    unless the server has something to say: a termination notice (``pg_terminate_backend()``,
    a shutdown or restart, ``idle_session_timeout``), an end of file, or an asynchronous
    notice or notification. Any of these sends the connection to a validation round trip, as
    does an error of the poll itself.

    :param fd: the socket.
    :param poller: :func:`news_poller` of ``fd`` (:attr:`CheckoutMarks.news_poller`);
        default: one is made for this call.
    """
    if poller is None:
        poller = news_poller(fd)
    if poller is not None:
        return poller() != 0
    try:
        readable, _, failed = select.select([fd], [], [fd], 0)
    except (OSError, ValueError):  # a closed or invalid descriptor
        return True
    return bool(readable or failed)


_M = TypeVar("_M", bound=CheckoutMarks)
_W = TypeVar("_W")


def connect_failed(
    state: ConnectState | None, error: BaseException, kwargs: Mapping[str, Any]
) -> None:
    """Keep the server's reason for a failed connection, without the secrets of ``kwargs``."""
    if state is not None:
        secrets = [str(kwargs[name]) for name in SECRET_PARAMS & kwargs.keys()]
        state.last_error = redact(str(error).strip(), secrets)


def connected(state: ConnectState | None, conn: _M) -> _M:
    """Stamp a new connection, and clear the last connection error.

    :param state: the pool's connect state, or ``None`` for a connection of no pool.
    """
    if state is not None:
        state.last_error = None
        conn.pooled = True
        conn.begin_decision = state.begin
    conn.created_at = conn.returned_at = monotonic()
    conn.open_blocks = {}
    conn.news_poller = news_poller(cast(Any, conn).pgconn.socket)
    return conn


#: :func:`screen_statement`: the text has no ``set``, so it cannot change a session setting.
SCREEN_NO = 0
#: :func:`screen_statement`: the text has ``set`` somewhere, or is composed: its command status
#: tells.
SCREEN_MAYBE = 1
#: :func:`screen_statement`: it looks like it changes a session setting.
SCREEN_YES = 2


def screen_statement(query: object) -> int:
    """What the text of ``query`` says of whether it changes a session setting.

    :data:`SCREEN_YES` if one of its statements starts with ``SET`` or ``RESET`` (the first
    one, or one after a semicolon), or if it calls ``set_config()``; :data:`SCREEN_NO` if its
    text does not contain ``set`` at all (then no statement of it is a ``SET`` or ``RESET``,
    whose command statuses :func:`track_after` looks for); :data:`SCREEN_MAYBE` otherwise, and
    for a composed query (:mod:`psycopg.sql`), whose command status tells after it ran. The
    screen costs a lowercase copy of the text and a substring search, so it stays cheap for
    long queries; a false positive costs one ``RESET ALL``, nothing more.
    """
    if isinstance(query, str):
        text = query.lower()
    elif isinstance(query, bytes):
        text = query.decode("latin-1").lower()  # the keywords are ASCII; never fails
    else:
        return SCREEN_MAYBE
    if "set" not in text:  # "reset" and "set_config" contain it too
        return SCREEN_NO
    if starts_with_set(text) or "set_config" in text:
        return SCREEN_YES
    if ";" in text and any(starts_with_set(part) for part in text.split(";")[1:]):
        return SCREEN_YES
    return SCREEN_MAYBE


def cannot_change_session(conn: CheckoutMarks, query: object) -> bool:
    """Whether a statement leaves nothing to learn of the session (``reset_session`` auto).

    The checkout already changed the session, or the statement is a text with no ``set`` in
    it: :func:`screen_statement`'s first rule, asked first by the pools' cursors so that
    most statements cost one call here instead of :func:`track_before`'s three.
    """
    return conn.session_changed or (type(query) is str and "set" not in query.lower())


def changes_session(query: object) -> bool:
    """Whether ``query`` looks like it changes a session setting (:func:`screen_statement`).

    A composed query (:mod:`psycopg.sql`) is not looked at: its command status tells, after
    it ran.
    """
    return screen_statement(query) == SCREEN_YES


def starts_with_set(statement: str) -> bool:
    """Whether a lowercase statement starts with the word ``set`` or ``reset``."""
    statement = statement.lstrip()
    for word in ("set", "reset"):
        if statement.startswith(word):
            after = statement[len(word) : len(word) + 1]
            return not (after.isalnum() or after == "_")
    return False


def track_before(conn: CheckoutMarks, query: object) -> bool:
    """Mark a connection before a statement runs (``reset_session`` = ``auto``).

    :return: whether the command status must be looked at after it ran
        (:func:`track_after`): only if the session is not known to be changed yet and the
        text may hold a ``SET`` or ``RESET`` that does not start a statement (after a
        comment, say) or is composed.
    """
    conn.used = True
    if conn.session_changed:
        return False
    screen = screen_statement(query)
    if screen == SCREEN_YES:
        conn.session_changed = True
    return screen == SCREEN_MAYBE


def track_after(conn: CheckoutMarks, result: pq.abc.PGresult | None) -> None:
    """Mark a connection whose statement's command status was ``SET`` or ``RESET``."""
    if result is not None and result.command_status in SESSION_STATUS:
        conn.session_changed = True


def reset_needed(mode: str, conn: CheckoutMarks) -> bool:
    """Whether the end of a checkout resets the session, for ``options.reset_session``."""
    if mode == "auto":
        return conn.session_changed
    return mode == "always" and conn.used


def finish_statement(status: int, success: bool, reset: bool) -> str | None:
    """What ends a checkout, for its transaction ``status`` (see :func:`reset_needed`).

    :return: ``None`` (nothing to do: also for a closed, broken or busy connection, which the
        return to the pool deals with); ``"COMMIT"`` or ``"ROLLBACK"`` (the connection's own
        ``commit()``/``rollback()``); ``"COMMIT; RESET ALL"`` or ``"ROLLBACK; RESET ALL"``
        (one query); ``"RESET ALL"`` (outside a transaction, in autocommit mode).
    """
    if status != IDLE and status != INTRANS and status != INERROR:
        return None
    if status == IDLE:
        return RESET_ALL if reset else None
    end = "COMMIT" if success and status == INTRANS else "ROLLBACK"
    return f"{end}; {RESET_ALL}" if reset else end


def needs_cleaning(status: int, conn: CheckoutMarks) -> bool:
    """Whether a connection given back needs its transaction ended or its session reset."""
    return status != IDLE or conn.used or conn.session_changed


def attributes_to_restore(conn: Any, autocommit: bool) -> list[tuple[str, Any]]:
    """The transaction attributes a holder changed, and the values they go back to.

    :param conn: a :class:`psycopg.Connection` or :class:`psycopg.AsyncConnection`.
    :param autocommit: the pool's ``autocommit``.
    :return: ``(name, value)`` pairs, for ``autocommit``, ``isolation_level``, ``read_only``,
        ``deferrable``: set with the attribute (sync) or ``set_<name>()`` (async).
    """
    changed: list[tuple[str, Any]] = []
    if conn.autocommit is not autocommit:
        changed.append(("autocommit", autocommit))
    for name in ("isolation_level", "read_only", "deferrable"):
        if getattr(conn, name) is not None:
            changed.append((name, None))
    return changed


def transaction_attributes_changed(conn: Any, autocommit: bool) -> bool:
    """Whether a holder changed a transaction attribute of ``conn``.

    The attributes are ``autocommit``, ``isolation_level``, ``read_only`` and ``deferrable``
    (:func:`attributes_to_restore` says to what they go back). Asked at every return, so it
    reads the values where psycopg keeps them (``_autocommit``, ``_isolation_level``,
    ``_read_only``, ``_deferrable`` in the connection's ``__dict__``): four dictionary lookups
    instead of four property calls. A psycopg that keeps them elsewhere is asked through its
    public properties.

    :param conn: a :class:`psycopg.Connection` or :class:`psycopg.AsyncConnection`.
    :param autocommit: the pool's ``autocommit``.
    """
    state = conn.__dict__
    try:
        return (
            state["_autocommit"] is not autocommit
            or state["_isolation_level"] is not None
            or state["_read_only"] is not None
            or state["_deferrable"] is not None
        )
    except KeyError:
        return bool(attributes_to_restore(conn, autocommit))


def expired(conn: CheckoutMarks, now: float, max_lifetime: float) -> bool:
    """Whether a connection is past its lifetime (``max_lifetime``, in seconds)."""
    return now - conn.created_at >= max_lifetime


def restore_factories(conn: Any, cursor_factory: type) -> None:
    """Give a connection back its pool's row factory (tuples) and cursor class."""
    if conn.row_factory is not tuple_row:
        conn.row_factory = tuple_row
    if conn.cursor_factory is not cursor_factory:
        conn.cursor_factory = cursor_factory


def ping_timeout(wait: float, remaining: float) -> float:
    """The time a validation round trip may take, in seconds, for a checkout of ``wait``.

    A quarter of the wait, no more than ``remaining``, within ``MIN_PING_TIMEOUT`` and
    ``MAX_PING_TIMEOUT``.
    """
    return min(max(min(wait / 4, remaining), MIN_PING_TIMEOUT), MAX_PING_TIMEOUT)


def leak_period(threshold: float) -> float:
    """How often, in seconds, the leak watcher looks at held connections."""
    return min(max(threshold / 4, 0.01), 1.0)


#: What a checkout asks of its pool's I/O, and the pool's answer (see
#: ``CheckoutPolicy._checkout_steps()``): ``("get", None, timeout)``, answered with a
#: connection from psycopg_pool, or ``None`` for its ``PoolTimeout``; ``("ping", conn,
#: timeout)``, answered with whether the connection answered a round trip in time;
#: ``("discard", conn, 0.0)``, closing the connection and giving it back (answer ``None``).
Step = tuple[str, Any, float]


class CheckoutPolicy:
    """The state and the decisions of a pool's checkouts, shared by both pools.

    A base of :class:`~pip_postgres.pool.PostgresPool` and
    :class:`~pip_postgres.pool_async.AsyncPostgresPool`; ``_init_policy()`` takes:

    :param validation_bypass: seconds since its return within which a connection is handed
        out without a validation round trip; 0 validates at every checkout.
    :param leak_threshold: seconds after which a held connection is reported; 0 turns leak
        detection off.
    :param on_leak: called with each :class:`Leak`.
    :param reset_session: ``auto``, ``always`` or ``never``.
    :param idle_order: ``lifo`` or ``fifo``: see :attr:`idle_order` and :func:`idle_queue`.
    :param begin_with_statement: ``auto``, ``always`` or ``never``: see
        :mod:`pip_postgres.begin`.
    :raises ValueError: ``reset_session`` or ``begin_with_statement`` is none of its values.
    """

    #: When the end of a checkout resets the session with ``RESET ALL``: ``auto`` (if a
    #: statement looked like it changed a setting), ``always`` (if any statement ran) or
    #: ``never``; from ``options.reset_session``.
    reset_session: str = "auto"
    #: Which idle connection a checkout gets: ``lifo`` (the one returned last) or ``fifo``
    #: (the one idle longest, psycopg_pool's own order); from ``options.idle_order``.
    idle_order: str = "lifo"
    #: Frames of the pool's own between its caller and the checkout code here, left out of
    #: the checkout stacks kept for leak reports, beyond the one of ``getconn()``.
    _entry_frames = 0

    def _init_policy(
        self,
        kwargs: dict[str, Any],
        cursors: Mapping[str, type],
        validation_bypass: float,
        leak_threshold: float,
        on_leak: Callable[[Leak], None] | None,
        reset_session: str,
        idle_order: str = "lifo",
        begin_with_statement: str = "auto",
    ) -> dict[str, Any]:
        """Set the policy up.

        :param kwargs: the connection keyword arguments given to the pool.
        :param cursors: the cursor class of each ``reset_session`` mode.
        :param begin_with_statement: ``auto``, ``always`` or ``never``: see
            :mod:`pip_postgres.begin`.
        :return: the connection keyword arguments for psycopg_pool: ``kwargs`` with the
            pool's connect state and cursor class.
        """
        if reset_session not in RESET_MODES:
            raise ValueError(f"reset_session must be auto, always or never, got {reset_session!r}")
        self.idle_order = idle_order
        self._cursor_factory: Any = cursors[reset_session]
        self._autocommit = bool(kwargs.get("autocommit", False))
        self.reset_session = reset_session
        # Connections checked out now, by id: for leak detection, shutdown, and the trial of
        # begin_with_statement = auto (which times statements only while one is out).
        self._in_use: dict[int, Any] = {}
        self._connect_state = ConnectState(begin_with_statement, self._in_use)
        self._begin = self._connect_state.begin
        self.validation_bypass = validation_bypass
        # Connections returned before this moment are validated whatever their bypass window:
        # one of them was found broken, so the others may have died with it.
        self._suspect_before = 0.0
        self.leak_threshold = leak_threshold
        self._on_leak = on_leak
        # psycopg_pool's internals are only used where they are all there (DIRECT_PATH_ATTRIBUTES)
        self._direct = False
        self._counters = {
            "connections_validated": 0,
            "connections_broken": 0,
            "connections_expired": 0,
            "leaks_reported": 0,
        }
        return {
            **kwargs,
            "connect_state": self._connect_state,
            "cursor_factory": self._cursor_factory,
        }

    def _init_idle_queue(self, idle_order: str) -> None:
        """Serve psycopg_pool's queue of idle connections in ``idle_order`` (:func:`idle_queue`).

        Called by the pools once psycopg_pool's ``__init__()`` made the queue.
        """
        pool: Any = self
        pool._pool = queue = idle_queue(pool._pool, idle_order)
        # What the direct checkout takes with: a method of the deque itself, not the Python
        # override that psycopg_pool's own checkout calls.
        self._take_next: Callable[[], Any] = queue.pop if idle_order == "lifo" else queue.popleft

    def _init_direct_path(self) -> None:
        """Turn the direct checkout and return on if psycopg_pool has what they use.

        psycopg_pool's ``getconn()`` spends several microseconds on what a checkout of an idle
        connection does not need (log calls made even when nothing is logged, a retry loop, a
        ``check`` callback that this package does not use), and its ``putconn()`` as many on a
        connection that needs nothing. The direct checkout and return do what these do in that
        case, in the same critical sections, and nothing else. They are on only if psycopg_pool
        has every attribute they use (:data:`DIRECT_PATH_ATTRIBUTES`) and the pool was given
        neither a ``check`` nor a ``reset`` callback (which psycopg_pool's own paths call);
        each checkout also needs the pool open and a positive timeout (the pools'
        ``_take_idle()``), and each return what :meth:`_direct_return` checks.

        Called by the pools when they open (psycopg_pool's async pool makes its lock then).
        """
        pool: Any = self
        self._direct = (
            all(hasattr(self, name) for name in DIRECT_PATH_ATTRIBUTES)
            and pool._check is None
            and pool._reset is None
        )

    def _pop_idle(self) -> Any:
        """Take the next idle connection, or ``None``: call it in psycopg_pool's lock.

        What psycopg_pool's ``_get_ready_connection()`` does when a connection is idle,
        including the low-water mark that its ``max_idle`` shrinking reads.
        """
        pool: Any = self
        idle = pool._pool
        if not idle:
            return None
        conn = self._take_next()
        if len(idle) < pool._nconns_min:
            pool._nconns_min = len(idle)
        return conn

    def _took(self, conn: Any) -> Any:
        """What psycopg_pool's ``getconn()`` does to a connection it hands out (direct path)."""
        pool: Any = self
        pool._stats[pool._REQUESTS_NUM] += 1
        if _POOL_LOGGER.isEnabledFor(logging.INFO):
            _POOL_LOGGER.info("connection requested from %r", pool.name)
            _POOL_LOGGER.info("connection given by %r", pool.name)
        conn._pool = pool  # psycopg's ``with conn:`` then knows it is a pool's
        return conn

    def _queued(self, waiter: _W) -> _W | None:
        """Put ``waiter`` in psycopg_pool's queue as its ``getconn()`` would; the pool grows.

        Call it in the pool's lock, when no connection is idle.

        :return: the waiter; ``None`` if ``max_waiting`` bounds the queue, which psycopg_pool's
            own ``getconn()`` then enforces.
        """
        pool: Any = self
        if pool.max_waiting:
            return None
        pool._waiting.append(waiter)
        pool._stats[pool._REQUESTS_QUEUED] += 1
        pool._maybe_grow_pool()
        return waiter

    def _give_up(self, waiter: Any, error: BaseException | None) -> bool:
        """A waiter leaves psycopg_pool's queue, unless an outcome reached it first.

        For both pools' waiters; the outcome is a connection or an error. Call it in the
        pool's lock (sync pool), or without awaiting between the check and the choice (async
        pool: psycopg_pool hands outcomes without awaiting between its check and its choice).

        :param error: what it gives up with; ``None`` (an interruption) marks it with a
            timeout, so that nothing is handed to it afterwards.
        :return: whether it gave up; ``False`` if an outcome came first.
        """
        if waiter.conn is not None or waiter.error is not None:
            return False
        waiter.error = error or PoolTimeout()
        with contextlib.suppress(ValueError):
            cast(Any, self)._waiting.remove(waiter)
        return True

    def _waited(self, waiter: Any, wait: float) -> Any:
        """The outcome of a wait in psycopg_pool's queue, for both pools' waiters (no I/O).

        Counted as psycopg_pool's ``getconn()`` counts it: a failed request is a request
        and an error.

        :param waiter: a waiter that has an outcome (``conn`` or ``error``), or that left.
        :param wait: the checkout's timeout, for the error's message.
        :return: the connection it was handed, stamped as taken (:meth:`_took`).
        :raises CheckoutTimeout: it timed out.
        :raises BaseException: the error it was handed (:class:`psycopg_pool.PoolClosed`).
        """
        if waiter.error is not None:
            self._count_failed(waiter.error, (BaseException,))
            if isinstance(waiter.error, PoolTimeout):
                raise self._timeout_error(wait, 0) from None
            raise waiter.error
        assert waiter.conn is not None
        return self._took(waiter.conn)

    def _count_failed(self, error: BaseException, errors: tuple[type[BaseException], ...]) -> None:
        """Count a checkout that ``error`` ended, as psycopg_pool's ``getconn()`` counts one.

        A request; and an error if ``error`` is one of ``errors``: what psycopg_pool counts
        as one there (an outcome handed to a waiter, a timeout: any; an interruption of the
        wait: ``Exception``, and for the async pool ``asyncio.CancelledError`` too, so that a
        thread's Ctrl-C is a request, a task's cancellation a request and an error).
        """
        pool: Any = self
        pool._stats[pool._REQUESTS_NUM] += 1
        if isinstance(error, errors):
            pool._stats[pool._REQUESTS_ERRORS] += 1

    def _direct_return(self, conn: Any) -> bool:
        """Whether a connection given back goes straight to psycopg_pool's queue (or waiter).

        It does if it is this pool's, idle (not closed, broken or in a transaction), neither
        past its lifetime nor older than the pool's last ``drain()``, and the pool is open (and
        has no ``reset`` callback, see :meth:`_init_direct_path`): everything psycopg_pool's
        ``putconn()`` would check before adding it back. If it does, the return is logged as
        psycopg_pool's ``putconn()`` logs it; the caller then adds it with psycopg_pool's
        ``_add_to_pool()``. Anything else goes through psycopg_pool's ``putconn()``.

        :param conn: a connection stamped as given back (:meth:`_given_back`).
        """
        pool: Any = self
        if (
            self._direct
            and getattr(conn, "_pool", None) is self
            and not pool._closed
            and conn.pgconn.transaction_status == IDLE
            and conn._created_at > pool._drained_at
            and conn._expire_at > conn.returned_at
        ):
            if _POOL_LOGGER.isEnabledFor(logging.INFO):
                _POOL_LOGGER.info("returning connection to %r", pool.name)
            return True
        return False

    @property
    def begin_ahead(self) -> BeginAhead:
        """Whether checkouts send ``BEGIN`` with the first statement, and why.

        The pool's :class:`~pip_postgres.begin.BeginAhead`: ``options.begin_with_statement``
        and, in ``auto`` mode, the trial's state, then its result.
        """
        return self._begin

    @property
    def last_connect_error(self) -> str | None:
        """The server's reason for the last failed connection attempt.

        ``None`` if the last attempt succeeded.
        """
        return self._connect_state.last_error

    def _ready(self, conn: CheckoutMarks, now: float, depth: int = 3) -> bool:
        """Whether a connection just taken from the idle queue is handed out as it is.

        It is if it was returned within the bypass window, not before a connection was found
        broken, and is not past its lifetime (:func:`bypass_applies`), and if neither its own
        state nor its socket shows that something happened to it (:func:`idle_and_intact`;
        :func:`socket_has_news`, if it was idle :data:`NEWS_CHECK_AFTER` or longer): a closed
        or broken connection is never handed out, and one that the server sent something (a
        termination notice) is validated. It is then stamped as checked out. Else it is
        validated (or replaced) first: see :meth:`_checkout_steps`.

        :param depth: how many frames of the stack, from :meth:`_checked_out`'s, are the
            pool's own (left out of the checkout stack kept for leak reports).
        """
        pool: Any = self  # (a psycopg_pool pool; no cast() call on this path)
        pgconn = conn.pgconn  # type: ignore[attr-defined]
        returned, poller = conn.returned_at, conn.news_poller
        idle = now - returned
        # bypass_applies(), idle_and_intact() and not socket_has_news() (after
        # NEWS_CHECK_AFTER), written out: the checkout of every request comes here (a property
        # test pins that they agree).
        if (
            idle <= self.validation_bypass
            and returned >= self._suspect_before
            and now - conn.created_at < pool.max_lifetime
            and pgconn.status == CONN_OK
            and pgconn.transaction_status == IDLE
            and (
                idle < NEWS_CHECK_AFTER
                or (poller() == 0 if poller is not None else not socket_has_news(pgconn.socket))
            )
        ):
            self._checked_out(conn, now, depth)
            return True
        return False

    def _checkout_steps(
        self, conn: CheckoutMarks, start: float, wait: float
    ) -> Generator[Step, Any, Any]:
        """The rest of a checkout whose connection was not :meth:`_ready`, for both pools.

        Written once, its I/O yielded as :data:`Step`. A connection past its lifetime is
        discarded, one idle past the bypass window (or suspect) is validated, and a discarded
        one is replaced by the next one taken, until ``wait`` seconds from ``start`` have
        passed.

        :return: (as ``StopIteration.value``) the connection to hand out.
        :raises CheckoutTimeout: no working connection could be had in time.
        """
        max_lifetime: float = cast(Any, self).max_lifetime
        broken = 0
        while True:
            now = monotonic()
            if self._ready(conn, now, 4):
                return conn
            if expired(conn, now, max_lifetime):
                problem = "connections_expired"
            else:
                self._counters["connections_validated"] += 1
                if (yield ("ping", conn, ping_timeout(wait, start + wait - now))):
                    self._checked_out(conn, now, 3)
                    return conn
                problem = "connections_broken"
            self._discarded(problem, conn)
            broken += problem == "connections_broken"
            yield ("discard", conn, 0.0)
            conn = yield ("get", None, start + wait - monotonic())
            if conn is None:
                raise self._timeout_error(wait, broken)

    def _end_statement(self, conn: Any, success: bool) -> str | None:
        """What ends a checkout of ``conn`` (:func:`finish_statement`); clears its marks.

        No I/O: the pools send what it returns (``finish()``), if anything.
        """
        sql = finish_statement(
            conn.pgconn.transaction_status, success, reset_needed(self.reset_session, conn)
        )
        conn.used = conn.session_changed = False  # what putconn() looks at: nothing left to do
        return sql

    def _discarded(self, problem: str, conn: Any) -> None:
        """Count a connection discarded at checkout; a broken one makes the others suspect.

        One that a caller closed (after it gave it back) says nothing of the others.
        """
        self._counters[problem] += 1
        if problem == "connections_broken" and (conn.broken or not conn.closed):
            self._suspect_before = monotonic()

    def _checked_out(self, conn: CheckoutMarks, now: float, depth: int) -> None:
        """Stamp a connection handed out.

        :param depth: how many frames of the stack, from this one, are the pool's own.
        """
        conn.checked_out_at = now
        conn.used = conn.session_changed = False
        begin = self._begin
        conn.begin_ahead = not self._autocommit and (
            begin.stamp if now < begin.retrial_at else begin.retry()
        )
        conn.held = True
        conn.checkout_seq += 1
        self._in_use[id(conn)] = conn
        if self.leak_threshold > 0:
            conn.checkout_stack = traceback.format_stack()[: -(depth + self._entry_frames)]
            conn.leak_reported = False

    def _given_back(self, conn: Any) -> bool:
        """Stamp a connection given back, and say whether it needs cleaning.

        A broken or closed one makes the idle ones suspect, and needs nothing. One needs
        cleaning if it is in a transaction (or busy), ran something the reset mode resets
        after, or had an attribute, its row factory or its cursor class changed.
        """
        self._in_use.pop(id(conn), None)
        if conn.checkout_stack is not None:
            conn.checkout_stack = None
        conn.held = False
        conn.checkout_seq += 1
        conn.returned_at = now = monotonic()
        pgconn = conn.pgconn
        if pgconn.status != CONN_OK:  # closed or broken
            self._suspect_before = now
            return False
        return (
            pgconn.transaction_status != IDLE
            or conn.used
            or conn.session_changed
            or transaction_attributes_changed(conn, self._autocommit)
            or conn.row_factory is not tuple_row
            or conn.cursor_factory is not self._cursor_factory
        )

    def _scan_leaks(self: Any, now: float) -> list[Leak]:
        """Mark, count and return the held connections newly past the leak threshold."""
        leaks = []
        for conn in list(self._in_use.values()):
            stack = conn.checkout_stack
            held = now - conn.checked_out_at
            if stack is not None and not conn.leak_reported and held >= self.leak_threshold:
                conn.leak_reported = True
                self._counters["leaks_reported"] += 1
                leaks.append(Leak(self.name, held, "".join(stack)))
        return leaks

    def _let_go_after_fork(self) -> None:
        """In a forked child: release the parent's connections, idle or held, and close.

        See :func:`pip_postgres.fork.release`: the parent's sessions are not touched.
        """
        pool: Any = self
        inherited = [*pool._pool, *self._in_use.values()]
        pool._pool.clear()
        self._in_use.clear()
        pool._closed = True
        release(inherited)

    def _report_leaks(self, now: float) -> None:
        for leak in self._scan_leaks(now):
            if self._on_leak is not None:
                self._on_leak(leak)

    def _refuse_no_wait(self: Any, timeout: float) -> None:
        """Refuse a checkout whose timeout is 0 or less, or not a number.

        psycopg_pool's ``getconn()`` never hands out a connection for a timeout of 0 or less,
        even an idle one (and counts a request); nor does this pool, with a message that says
        why. A NaN, which psycopg_pool would let take an idle connection but not wait, is
        refused alike.

        :raises CheckoutTimeout: ``timeout`` is not positive.
        """
        if not timeout > 0 and not self._closed:  # (a closed pool: PoolClosed, as psycopg_pool)
            error = CheckoutTimeout(
                f"a checkout from pool {self.name!r} with a timeout of {timeout!r} s gets no "
                "connection: give a positive timeout, in seconds (or None for the pool's)"
            )
            self._count_failed(error, ())  # a request, not an error, as psycopg_pool counts it
            raise error

    def _timeout_error(self: Any, waited: float, broken: int) -> CheckoutTimeout:
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
