"""``BEGIN`` sent with the first statement of a transaction (``options.begin_with_statement``).

In transactional mode psycopg starts a transaction by sending ``BEGIN`` and waiting for its
answer before it sends the first statement: a checkout that runs one statement costs three
round trips (``BEGIN``, the statement, ``COMMIT``). PgJDBC and Npgsql send ``BEGIN`` in the
same write as the first statement, which saves one of them. The pool's cursors do the same
here, with libpq's pipeline mode, for the statements where it changes nothing but the time it
takes (:func:`begin_ahead_query`): ``BEGIN`` (with the connection's isolation level,
read-only and deferrable modes) and the statement go in one write, followed by a sync, and
the statement's result or error is there when ``execute()`` returns, as without it.

It is not free: psycopg's pipeline machinery costs CPU time (on a 2-core virtual machine,
about 30 µs per transaction when the client and the server share one CPU). It pays where a
round trip costs more than that: a server on another host. ``auto``, the default, measures:
each new connection of the pool times :data:`PROBES` empty queries, and the pool sends
``BEGIN`` with the first statement only while the shortest round trip it has seen is at least
:data:`AUTO_ROUND_TRIP`. ``always`` and ``never`` decide without measuring.

It uses psycopg internals (:data:`PSYCOPG_ATTRIBUTES`, psycopg 3.2 and 3.3); where one is
missing, or libpq has no pipeline mode, psycopg's own way is always taken.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors, pq
from psycopg.rows import TupleRow
from psycopg.sql import Composable

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AUTO_ROUND_TRIP", "BEGIN_MODES", "BeginAhead", "begin_ahead_query"]

#: The values of ``options.begin_with_statement``.
BEGIN_MODES = ("auto", "always", "never")

#: ``auto`` sends ``BEGIN`` with the first statement when the pool's shortest measured round
#: trip is at least this long, in seconds (100 µs: more than a server on the same host takes,
#: less than one on another host usually does).
AUTO_ROUND_TRIP = 100e-6

#: How many empty queries a new connection times, in ``auto`` mode (the shortest counts).
PROBES = 2

#: The longest an async pool's probe waits for its answer with the event loop blocked, in
#: seconds (200 µs, twice :data:`AUTO_ROUND_TRIP`): enough to time a round trip that decides
#: for psycopg's own way without the loop's other turns in it; a longer one is awaited.
PROBE_BLOCK = 2 * AUTO_ROUND_TRIP

#: The longest a probe may wait for its answer, in seconds. A probe that gets none in time
#: stops the measuring of that connection (the pool's checkout validation deals with a
#: connection that does not answer).
PROBE_TIMEOUT = 5.0

#: The undocumented psycopg attributes this uses, on the connection classes (``_pipeline``,
#: ``_pipeline_nolock``: the pipeline of a connection whose lock is held;
#: ``_get_tx_start_command``: its ``BEGIN``), the cursor classes (``_execute_gen``) and the
#: pipeline classes (``result_queue``: what each command sent will answer).
PSYCOPG_ATTRIBUTES = {
    "connection": ("_pipeline", "_pipeline_nolock", "_get_tx_start_command"),
    "cursor": ("_execute_gen",),
}

_IDLE = pq.TransactionStatus.IDLE
_PIPELINE_OFF = pq.PipelineStatus.OFF
# Errors whose traceback psycopg drops (they happen in its generators, not in the caller).
_NO_TRACEBACK: tuple[type[BaseException], ...] = getattr(errors, "_NO_TRACEBACK", ())


def supported() -> bool:
    """Whether this psycopg and libpq can send ``BEGIN`` with the first statement."""
    classes = {
        "connection": (psycopg.Connection, psycopg.AsyncConnection),
        "cursor": (psycopg.Cursor, psycopg.AsyncCursor),
    }
    return psycopg.Pipeline.is_supported() and all(
        hasattr(cls, name)
        for kind, names in PSYCOPG_ATTRIBUTES.items()
        for cls in classes[kind]
        for name in names
        if name != "_pipeline"  # an instance attribute
    )


SUPPORTED = supported()


class BeginAhead:
    """A pool's decision to send ``BEGIN`` with the first statement (shared, one per pool).

    :param mode: ``auto``, ``always`` or ``never`` (``options.begin_with_statement``).
    :raises ValueError: ``mode`` is none of these.
    """

    def __init__(self, mode: str) -> None:
        if mode not in BEGIN_MODES:
            raise ValueError(f"begin_with_statement must be auto, always or never, got {mode!r}")
        #: ``auto``, ``always`` or ``never``.
        self.mode = mode
        #: The shortest round trip measured so far, in seconds (``auto`` only); ``None`` until
        #: one is.
        self.round_trip: float | None = None
        #: Whether the pool's checkouts send ``BEGIN`` with the first statement now. ``auto``
        #: starts off: it turns on with the first round trip measured that is long enough, and
        #: off, for good, with the first one that is shorter than :data:`AUTO_ROUND_TRIP`.
        self.on = SUPPORTED and mode == "always"

    @property
    def probes(self) -> bool:
        """Whether new connections time round trips (``auto`` mode, where supported)."""
        return SUPPORTED and self.mode == "auto"

    def measured(self, seconds: float) -> None:
        """Take one round trip measured by a new connection, in seconds."""
        if self.round_trip is None or seconds < self.round_trip:
            self.round_trip = seconds
        self.on = self.round_trip >= AUTO_ROUND_TRIP

    def __repr__(self) -> str:
        shortest = "-" if self.round_trip is None else f"{self.round_trip * 1e6:.0f} µs"
        return f"<BeginAhead {self.mode}: {'on' if self.on else 'off'}, round trip {shortest}>"


def begin_ahead_query(conn: Any, query: object) -> str | bytes | None:
    """The text of ``query`` if it may go in one write with ``BEGIN``, else ``None``.

    It may if ``conn`` is in transactional mode, outside a transaction and outside a pipeline
    (so that psycopg would send ``BEGIN`` first), and if ``query`` is text (or composed with
    :mod:`psycopg.sql`, then rendered as psycopg itself would) of one statement that is not a
    ``COPY``. Those are where a pipeline changes nothing but the time: a text of several
    statements runs with the simple query protocol outside a pipeline and is refused inside
    one, and ``COPY`` is refused there. A semicolon anywhere but at the end, or the letters
    ``copy`` anywhere (in a string or a name too), take psycopg's own way: a false alarm costs
    the round trip saved, nothing more.
    """
    pgconn = conn.pgconn
    if (
        pgconn.transaction_status != _IDLE
        or pgconn.pipeline_status != _PIPELINE_OFF
        or conn.autocommit
    ):
        return None
    text: str | bytes
    if isinstance(query, (str, bytes)):
        text = query
    elif isinstance(query, Composable):
        text = query.as_bytes(conn)
    else:  # a template string (psycopg 3.3, Python 3.14) or anything else: psycopg's way
        return None
    lowered = text.lower()
    if isinstance(lowered, bytes):
        if b"copy" in lowered or b";" in lowered.rstrip(b"; \t\r\n"):
            return None
    elif "copy" in lowered or ";" in lowered.rstrip("; \t\r\n"):
        return None
    return text


class BeginAheadCursor(psycopg.Cursor[TupleRow]):
    """A cursor that sends ``BEGIN`` with the first statement when its pool says so.

    The base of the pool's cursors. Only :meth:`execute` does it (``executemany()`` already
    runs in a pipeline, ``copy()`` and ``stream()`` cannot).
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
        conn: Any = self._conn
        if conn.begin_ahead and (text := begin_ahead_query(conn, query)) is not None:
            return self._begin_and_execute(conn, text, params, prepare, binary)
        return super().execute(query, params, prepare=prepare, binary=binary)

    def _begin_and_execute(
        self, conn: Any, query: str | bytes, params: Any, prepare: bool | None, binary: bool | None
    ) -> Self:
        running = self._execute_gen(query, params, prepare=prepare, binary=binary)
        try:
            with conn.lock:
                if not _still_idle(conn):  # another thread began meanwhile
                    conn.wait(running)
                    return self
                with conn._pipeline_nolock() as pipeline:
                    _send_begin(conn, pipeline)
                    conn.wait(running)
        except _NO_TRACEBACK as error:
            raise error.with_traceback(None)  # noqa: B904 (as psycopg's own execute())
        return self


class AsyncBeginAheadCursor(psycopg.AsyncCursor[TupleRow]):
    """The async :class:`BeginAheadCursor`."""

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

        Not a coroutine function of its own: it returns a coroutine, to be awaited as usual.
        """
        conn: Any = self._conn
        if conn.begin_ahead and (text := begin_ahead_query(conn, query)) is not None:
            return self._begin_and_execute(conn, text, params, prepare, binary)
        return super().execute(query, params, prepare=prepare, binary=binary)

    async def _begin_and_execute(
        self, conn: Any, query: str | bytes, params: Any, prepare: bool | None, binary: bool | None
    ) -> Self:
        running = self._execute_gen(query, params, prepare=prepare, binary=binary)
        try:
            async with conn.lock:
                if not _still_idle(conn):  # another task began meanwhile
                    await conn.wait(running)
                    return self
                async with conn._pipeline_nolock() as pipeline:
                    _send_begin(conn, pipeline)
                    await conn.wait(running)
        except _NO_TRACEBACK as error:
            raise error.with_traceback(None)  # noqa: B904
        return self


def _still_idle(conn: Any) -> bool:
    """Whether the connection, whose lock is now held, is still idle and outside a pipeline."""
    return conn.pgconn.transaction_status == _IDLE and conn._pipeline is None


def _send_begin(conn: Any, pipeline: Any) -> None:
    """Put the connection's ``BEGIN`` in libpq's output buffer, in a pipeline just entered.

    What psycopg queues when it starts a transaction in a pipeline, sent at once: the
    connection is then busy (not idle), so the statement that follows does not start another
    transaction, and goes out in the same write.
    """
    conn.pgconn.send_query_params(conn._get_tx_start_command(), None)
    pipeline.result_queue.append(None)  # BEGIN returns no rows to anyone
