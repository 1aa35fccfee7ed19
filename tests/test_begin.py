"""``BEGIN`` sent with the first statement of a transaction (``options.begin_with_statement``).

The round trip saved is shown causally, not by timing: a proxy holds what the server answers
while it forwards what the client sends. A client that waits for ``BEGIN``'s answer before it
sends the statement leaves the server at ``BEGIN``; one that sends both at once gets its
statement to the server, which ``pg_stat_activity`` shows. The statements that must not be
pipelined, and the results and errors of those that are, are held to psycopg's own way side by
side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import psycopg
import pytest
from psycopg import errors, pq, sql, waiting

from pip_postgres import AsyncPostgresConnection, PostgresConnection
from pip_postgres.begin import (
    BUSY_SAVING,
    RETRIAL_PERIOD,
    SUPPORTED,
    TRIAL,
    TRIAL_LIMIT,
    TRIAL_SPACING,
    BeginAhead,
    begin_ahead_query,
)

from .conftest import Server, admin_query, base_config
from .proxy import FaultProxy

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="this libpq has no pipeline mode")

#: The longest a test waits for the server to show a statement, in seconds.
SHOW_TIMEOUT = 10.0


def _component(
    pg: Server, mode: str, port: int | None = None, size: int = 1, **extra: Any
) -> PostgresConnection:
    component = PostgresConnection()
    component.configure(
        base_config(
            pg,
            connection__port=port or pg.port,
            options__begin_with_statement=mode,
            options__max_pool_size=size,
            options__min_pool_size=size,
            **extra,
        )
    )
    component.open(None)
    return component


@pytest.fixture
def proxy(pg: Server) -> Iterator[FaultProxy]:
    with FaultProxy(pg.host, pg.port) as running:
        yield running


def _server_query(pg: Server, pid: int) -> str | None:
    rows = admin_query(pg, "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
    return rows[0][0] if rows else None


def _wait_for_query(pg: Server, pid: int, text: str) -> str | None:
    """Poll the server until backend ``pid`` shows ``text`` as its query (or time is up)."""
    deadline = time.monotonic() + SHOW_TIMEOUT
    seen = _server_query(pg, pid)
    while seen != text and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = _server_query(pg, pid)
    return seen


# What reaches the server before BEGIN's answer ---------------------------------------------


@pytest.mark.parametrize(
    ("mode", "autocommit_pool", "reaches"),
    [
        ("always", False, True),
        ("never", False, False),
        # a pool in autocommit mode: a holder that turns autocommit off gets psycopg's BEGIN
        ("always", True, False),
    ],
)
def test_statement_reaches_the_server_before_begins_answer(
    pg: Server, proxy: FaultProxy, mode: str, autocommit_pool: bool, reaches: bool
) -> None:
    component = _component(pg, mode, proxy.port, options__autocommit=autocommit_pool)
    try:
        with component.connection() as conn:
            if autocommit_pool:
                conn.autocommit = False
            _check_first_statement(pg, proxy, conn, f"sent with begin: {mode}", reaches)
    finally:
        component.close(None)


def _check_first_statement(
    pg: Server, proxy: FaultProxy, conn: psycopg.Connection[Any], text: str, reaches: bool
) -> None:
    """Run ``SELECT text`` while the proxy holds the server's answers, and check whether it
    ``reaches`` the server before ``BEGIN``'s answer (else the server stays at ``BEGIN``)."""
    statement = f"SELECT '{text}'"
    pid = conn.info.backend_pid
    outcome: list[Any] = []
    proxy.hold_replies()
    worker = threading.Thread(target=lambda: outcome.append(conn.execute(statement).fetchone()))
    worker.start()
    try:
        if reaches:
            assert _wait_for_query(pg, pid, statement) == statement
        else:
            assert _wait_for_query(pg, pid, "BEGIN") == "BEGIN"
            time.sleep(0.3)  # what was sent with it would have arrived by now
            assert _server_query(pg, pid) == "BEGIN"
    finally:
        proxy.release_replies()
        worker.join(SHOW_TIMEOUT)
    assert outcome == [(text,)]
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS


@pytest.mark.parametrize(
    ("medians", "busy_too"),
    [((100e-6, 150e-6), False), ((100e-6, 100e-6 + BUSY_SAVING), True)],
)
def test_a_small_saving_sends_begin_with_the_statement_only_when_alone(
    pg: Server, proxy: FaultProxy, medians: tuple[float, float], busy_too: bool
) -> None:
    """Over loopback a round trip is CPU time that a busy pool is short of: ``auto`` keeps
    ``BEGIN`` with the statement for a checkout alone unless it saved ``BUSY_SAVING``."""
    component = _component(pg, "auto", proxy.port, size=2)
    try:
        decision = cast(Any, component.get_connection()).begin_ahead
        decision._decide(medians)  # as a trial that found these medians
        assert decision.on and decision.busy_too == busy_too
        assert ("on when alone" in repr(decision)) != busy_too
        with component.connection() as conn:
            _check_first_statement(pg, proxy, conn, "alone", True)
        with component.connection() as conn, component.connection() as other:
            other.execute("SELECT 1")  # out, in a transaction of its own
            proxy.release_replies()
            _check_first_statement(pg, proxy, conn, "not alone", busy_too)
    finally:
        component.close(None)


@pytest.mark.anyio
async def test_async_statement_reaches_the_server_before_begins_answer(
    pg: Server, proxy: FaultProxy
) -> None:
    component = AsyncPostgresConnection()
    component.configure(
        base_config(pg, connection__port=proxy.port, options__begin_with_statement="always")
    )
    await asyncio.wait_for(component.open(None), 30)
    try:
        async with component.connection() as conn:
            await _async_check_first_statement(pg, proxy, conn, "sent with begin: async", True)
    finally:
        await component.close(None)


async def _async_check_first_statement(
    pg: Server, proxy: FaultProxy, conn: psycopg.AsyncConnection[Any], text: str, reaches: bool
) -> None:
    """The async :func:`_check_first_statement`."""
    statement = f"SELECT '{text}'"
    pid = conn.info.backend_pid
    proxy.hold_replies()
    running = asyncio.ensure_future(conn.execute(statement))
    try:
        if reaches:
            assert await asyncio.to_thread(_wait_for_query, pg, pid, statement) == statement
        else:
            assert await asyncio.to_thread(_wait_for_query, pg, pid, "BEGIN") == "BEGIN"
            await asyncio.sleep(0.3)  # what was sent with it would have arrived by now
            assert await asyncio.to_thread(_server_query, pg, pid) == "BEGIN"
    finally:
        proxy.release_replies()
    cursor = await asyncio.wait_for(running, SHOW_TIMEOUT)
    assert await cursor.fetchone() == (text,)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS


@pytest.mark.anyio
async def test_async_a_small_saving_sends_begin_with_the_statement_only_when_alone(
    pg: Server, proxy: FaultProxy
) -> None:
    component = AsyncPostgresConnection()
    component.configure(base_config(pg, connection__port=proxy.port, options__max_pool_size=2))
    await asyncio.wait_for(component.open(None), 30)
    try:
        decision = cast(Any, component.get_connection()).begin_ahead
        decision._decide((100e-6, 150e-6))
        assert decision.on and not decision.busy_too
        async with component.connection() as conn, component.connection() as other:
            await other.execute("SELECT 1")
            await _async_check_first_statement(pg, proxy, conn, "not alone: async", False)
    finally:
        await component.close(None)


# auto: a trial ------------------------------------------------------------------------------

#: The most checkouts a trial test makes: far more than 2 x TRIAL, so that the random ways
#: fill both halves (a shortfall has a probability below 1e-20).
MAX_TRIAL_CHECKOUTS = 8 * TRIAL


def test_auto_keeps_the_way_a_trial_found_faster_where_round_trips_are_long(pg: Server) -> None:
    with FaultProxy(pg.host, pg.port, delay=0.002) as delayed:
        component = _component(pg, "auto", delayed.port)
        try:
            pool: Any = component.get_connection()
            decision = pool.begin_ahead
            for _ in range(MAX_TRIAL_CHECKOUTS):
                if not decision.deciding:
                    break
                with component.connection() as conn:
                    assert cast(Any, conn).begin_ahead
                    assert conn.execute("SELECT %s::int", (2,)).fetchone() == (2,)
            assert not decision.deciding and decision.medians is not None
            together, alone = decision.medians
            assert together < alone  # 2 round trips of 4 ms against 1
            assert alone - together > 0.003
            assert decision.on
            with component.connection() as conn:
                assert cast(Any, conn).begin_ahead
        finally:
            component.close(None)


@pytest.mark.anyio
async def test_async_trial(pg: Server) -> None:
    with FaultProxy(pg.host, pg.port, delay=0.002) as delayed:
        component = AsyncPostgresConnection()
        component.configure(base_config(pg, connection__port=delayed.port))
        await asyncio.wait_for(component.open(None), 30)
        try:
            decision = cast(Any, component.get_connection()).begin_ahead
            for _ in range(MAX_TRIAL_CHECKOUTS):
                if not decision.deciding:
                    break
                async with component.connection() as conn:
                    assert await (await conn.execute("SELECT 3")).fetchone() == (3,)
            assert not decision.deciding and decision.on
            assert decision.medians[1] - decision.medians[0] > 0.003
        finally:
            await component.close(None)


def test_a_trial_keeps_the_faster_way() -> None:
    for together, alone, on in [(1.0, 2.0, True), (2.0, 1.0, False)]:
        decision = BeginAhead("auto")
        assert decision.deciding and decision.stamp and not decision.on
        for _ in range(TRIAL):
            decision.timed(True, together)
        assert decision.deciding  # one way only so far
        for _ in range(TRIAL - 1):
            decision.timed(False, alone)
        assert "deciding (50 and 49 of 50 timed)" in repr(decision)
        decision.timed(False, alone)
        assert not decision.deciding
        assert (decision.on, decision.stamp, decision.medians) == (on, on, (together, alone))
        decision.timed(True, 100.0)  # a late one, from a checkout stamped before: ignored
        assert decision.medians == (together, alone)
    assert "off (2000000 µs with BEGIN, 1000000 µs without)" in repr(decision)


def test_a_decision_is_tried_again_when_its_time_is_up(pg: Server) -> None:
    decision = BeginAhead("auto")
    for _ in range(TRIAL):
        decision.timed(True, 1.0)
        decision.timed(False, 2.0)
    assert decision.on and not decision.deciding
    assert 0 < decision.retrial_at - time.monotonic() <= RETRIAL_PERIOD
    assert decision.retry() and decision.stamp and decision.deciding and not decision.on
    assert decision.medians == (1.0, 2.0) and decision.retrial_at == float("inf")
    # In a pool: the first checkout past the time starts the trial again.
    component = _component(pg, "auto")
    try:
        pooled = cast(Any, component.get_connection()).begin_ahead
        pooled.timed(True, 2.0)  # a pool's trial made short: psycopg's way won
        for _ in range(TRIAL):
            pooled.timed(False, 1.0)
            pooled.timed(True, 2.0)
        assert not pooled.deciding and not pooled.stamp
        with component.connection() as conn:
            assert not cast(Any, conn).begin_ahead  # decided: not looked at
        pooled.retrial_at = time.monotonic() - 1  # its time is up
        with component.connection() as conn:
            assert cast(Any, conn).begin_ahead and pooled.deciding
    finally:
        component.close(None)


def test_the_trial_goes_both_ways() -> None:
    decision = BeginAhead("auto", in_use=["this checkout"], spacing=0)
    ways = [decision.next_way() for _ in range(200)]
    assert None not in ways
    assert 40 < sum(map(bool, ways)) < 160


def test_the_trial_spreads_its_timed_statements_over_time() -> None:
    in_use = ["this checkout"]
    decision = BeginAhead("auto", in_use=in_use, spacing=0.2)
    assert decision.next_way() is not None
    start = time.monotonic()
    ways = [decision.next_way() for _ in range(TRIAL_LIMIT + 10)]  # within the spacing
    if time.monotonic() - start < 0.2:
        assert ways == [None] * len(ways)  # not timed, and not counted: still deciding
        assert decision.deciding
    time.sleep(0.25)
    in_use.append("another")  # due, but not alone: not timed, and not put off
    assert decision.next_way() is None
    in_use.pop()
    assert decision.next_way() is not None
    assert TRIAL_SPACING == 0.01 and BeginAhead("auto")._spacing == TRIAL_SPACING


def test_the_trial_times_only_a_checkout_alone() -> None:
    in_use = ["this checkout", "another"]
    decision = BeginAhead("auto", in_use=in_use, spacing=0)
    assert [decision.next_way() for _ in range(10)] == [None] * 10
    in_use.pop()
    assert decision.next_way() is not None
    in_use.append("another")
    for _ in range(TRIAL_LIMIT):
        decision.next_way()
    assert not decision.deciding and not decision.on and not decision.stamp
    assert decision.medians is None
    assert "auto: off, no trial" in repr(decision)


def test_a_busy_pools_trial_times_nothing(pg: Server) -> None:
    component = _component(pg, "auto", size=2)
    try:
        decision = cast(Any, component.get_connection()).begin_ahead
        with component.connection() as other:
            assert "deciding (0 and 0 of 50 timed)" in repr(decision)
            for _ in range(5):
                with component.connection() as conn:
                    assert cast(Any, conn).begin_ahead
                    assert conn.execute("SELECT 4").fetchone() == (4,)
            assert "deciding (0 and 0 of 50 timed)" in repr(decision)
            other.execute("SELECT 1")  # its checkout is alone now: timed
        assert "deciding (0 and 0 of 50 timed)" not in repr(decision)
    finally:
        component.close(None)


def test_always_and_never_do_not_try() -> None:
    always, never = BeginAhead("always"), BeginAhead("never")
    assert always.on and always.stamp and not always.deciding
    assert not never.on and not never.stamp and not never.deciding
    with pytest.raises(ValueError, match="begin_with_statement must be auto, always or never"):
        BeginAhead("sometimes")


def test_never_leaves_first_statements_alone(pg: Server) -> None:
    component = _component(pg, "never")
    try:
        with component.connection() as conn:
            assert not cast(Any, conn).begin_ahead
    finally:
        component.close(None)


# Which statements go with BEGIN ---------------------------------------------------------------


@pytest.fixture
def plain_conn(pg: Server) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg.conninfo()) as conn:
        yield conn


@pytest.mark.parametrize(
    ("query", "sent"),
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT 1;  ", "SELECT 1;  "),
        (b"SELECT %s", b"SELECT %s"),
        (sql.SQL("SELECT {}").format(sql.Identifier("x")), b'SELECT "x"'),
        ("SELECT 1; SELECT 2", None),  # the simple query protocol only
        ("SELECT ';'", None),  # a false alarm: psycopg's own way
        ("COPY t TO STDOUT", None),
        ("copy t from stdin", None),
        (42, None),
    ],
)
def test_which_statements_go_with_begin(
    plain_conn: psycopg.Connection[Any], query: object, sent: object
) -> None:
    assert begin_ahead_query(plain_conn, query) == sent


def test_only_where_psycopg_would_send_begin_first(plain_conn: psycopg.Connection[Any]) -> None:
    assert begin_ahead_query(plain_conn, "SELECT 1") == "SELECT 1"
    plain_conn.execute("SELECT 1")  # in a transaction now
    assert begin_ahead_query(plain_conn, "SELECT 1") is None
    plain_conn.rollback()
    with plain_conn.pipeline():
        assert begin_ahead_query(plain_conn, "SELECT 1") is None
    plain_conn.autocommit = True
    assert begin_ahead_query(plain_conn, "SELECT 1") is None


# What the client writes ------------------------------------------------------------------------

# struct tcp_info (linux/tcp.h): tcpi_data_segs_out, the data segments sent (Linux 4.6+).
_DATA_SEGS_OUT = 156


def _writes(conn: Any) -> int:
    """The data segments ``conn``'s socket has sent: one per write of a few hundred bytes.

    libpq sets ``TCP_NODELAY``, and each write here is followed by a wait for the server's
    answer, so that no two writes can share a segment.
    """
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_INFO", -1), 256)
    except OSError as error:  # not TCP (a Unix socket), or no TCP_INFO on this system
        pytest.skip(f"no TCP_INFO for this connection: {error}")
    finally:
        sock.close()
    if len(info) < _DATA_SEGS_OUT + 4:
        pytest.skip("this kernel's TCP_INFO has no tcpi_data_segs_out")
    return cast(int, struct.unpack_from("I", info, _DATA_SEGS_OUT)[0])


# (statement, prepare) -> the writes of a checkout that runs it: always, never.
_WRITES = {
    # BEGIN; the statement and a sync; COMMIT. psycopg: BEGIN; the statement; COMMIT
    ("SELECT %s::int", False): (3, 3),
    # the error came with the answers: ROLLBACK follows, no second sync
    ("SELECT 1 / %s::int", False): (3, 3),
    # the statement prepared first (psycopg: its PREPARE is a round trip); last, because a
    # ROLLBACK on a connection with a prepared statement makes psycopg send DEALLOCATE ALL
    ("SELECT %s::int + 1", True): (3, 4),
}


@pytest.mark.parametrize(("statement", "prepare"), list(_WRITES))
@pytest.mark.parametrize("mode", ["always", "never"])
def test_begin_goes_at_once_then_the_statement_and_a_sync_in_one_write(
    pg: Server, mode: str, statement: str, prepare: bool
) -> None:
    """psycopg's pipeline wrote ``BEGIN``, the statement, a sync and a flush request
    separately (five writes with the ``COMMIT``), each a system call and, on a CPU shared
    with the server, a context switch: slower than psycopg's three round trips there."""
    component = _component(pg, mode)
    try:
        with component.connection() as conn:  # the pool's only connection
            pass
        before = _writes(conn)
        with contextlib.suppress(errors.DivisionByZero), component.connection() as again:
            assert again is conn  # back within the validation bypass window: no round trip
            assert again.execute(statement, (0,), prepare=prepare).fetchone() in [(0,), (1,)]
        assert _writes(conn) - before == _WRITES[statement, prepare][mode == "never"]
        with component.connection() as conn:
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
            assert conn._pipeline is None
            assert conn.execute("SELECT 2").fetchone() == (2,)
    finally:
        component.close(None)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["always", "never"])
async def test_async_begin_goes_at_once_then_the_statement_and_a_sync_in_one_write(
    pg: Server, mode: str
) -> None:
    component = AsyncPostgresConnection()
    component.configure(
        base_config(
            pg,
            options__begin_with_statement=mode,
            options__max_pool_size=1,
            options__min_pool_size=1,
        )
    )
    await asyncio.wait_for(component.open(None), 30)
    try:
        async with component.connection(timeout=10) as conn:
            pass
        for statement, prepare in _WRITES:
            before = _writes(conn)
            with contextlib.suppress(errors.DivisionByZero):
                async with component.connection(timeout=10) as again:
                    assert again is conn
                    cursor = await again.execute(statement, (0,), prepare=prepare)
                    assert await cursor.fetchone() in [(0,), (1,)]
            assert _writes(conn) - before == _WRITES[statement, prepare][mode == "never"]
        await _assert_usable(component)
    finally:
        await component.close(None)


# The same results and errors as psycopg's own way --------------------------------------------


def _outcomes(pg: Server, mode: str) -> list[Any]:
    """What a series of checkouts sees, in ``mode``: results, errors, transaction states."""
    component = _component(pg, mode, options__reset_session="auto")
    seen: list[Any] = []

    def run(body: Callable[[Any], Any]) -> None:
        try:
            with component.connection() as conn:
                try:
                    seen.append(body(conn))
                finally:
                    seen.append(conn.info.transaction_status.name)
        except psycopg.Error as error:
            seen.append((type(error).__name__, error.sqlstate))

    def describe(cursor: Any) -> Any:
        names = [c.name for c in cursor.description] if cursor.description else None
        rows = cursor.fetchall() if cursor.description else None
        return (cursor.statusmessage, cursor.rowcount, names, rows)

    try:
        run(lambda c: describe(c.execute("SELECT %s::int AS n, %s::text AS t", (7, "x"))))
        run(lambda c: describe(c.execute(sql.SQL("SELECT {} AS n").format(sql.Literal(3)))))
        run(lambda c: describe(c.execute("SELECT 1/0")))
        run(lambda c: describe(c.execute("SELECT 1 AS a; SELECT 2 AS b")))
        run(lambda c: describe(c.execute("COPY (SELECT 1) TO STDOUT")))
        run(lambda c: describe(c.execute("CREATE TEMP TABLE begin_t (x int)")))
        run(lambda c: describe(c.execute("SELECT no_such_column")))
        # a parameter psycopg cannot send: raised before the statement is written
        run(lambda c: describe(c.execute("SELECT %s", (object(),))))

        def serializable(conn: Any) -> Any:
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
            conn.read_only = True
            first = describe(conn.execute("SHOW transaction_isolation"))
            try:
                conn.execute("CREATE TEMP TABLE read_only_t (x int)")
            except errors.ReadOnlySqlTransaction as error:
                return first, error.sqlstate
            return first, None

        run(serializable)
        run(lambda c: describe(c.execute("SHOW transaction_isolation")))  # restored
        run(lambda c: describe(c.execute("SET search_path TO begin_path, public")))
        run(lambda c: describe(c.execute("SHOW search_path")))  # reset after the SET
        run(lambda c: c.cursor().executemany("SELECT %s", [(1,), (2,)]))
    finally:
        component.close(None)
    return seen


def test_results_and_errors_are_psycopgs_own(pg: Server) -> None:
    ours, theirs = _outcomes(pg, "always"), _outcomes(pg, "never")
    assert ours == theirs
    assert ("DivisionByZero", "22012") in ours
    assert "[('serializable',)]" in repr(ours) and "'25006'" in repr(ours)  # read-only


@pytest.mark.anyio
async def test_async_results_and_errors_are_psycopgs_own(pg: Server) -> None:
    async def outcomes(mode: str) -> list[Any]:
        component = AsyncPostgresConnection()
        component.configure(base_config(pg, options__begin_with_statement=mode))
        await asyncio.wait_for(component.open(None), 30)
        seen: list[Any] = []

        async def run(query: Any, params: Any = None) -> None:
            try:
                async with component.connection() as conn:
                    cursor = await conn.execute(query, params)
                    seen.append((cursor.statusmessage, await cursor.fetchall()))
            except psycopg.Error as error:
                seen.append((type(error).__name__, error.sqlstate))

        steps: list[Callable[[], Awaitable[None]]] = [
            lambda: run("SELECT %s::int", (5,)),
            lambda: run(sql.SQL("SELECT {}").format(sql.Literal("q"))),
            lambda: run("SELECT 1/0"),
            lambda: run("SELECT 1; SELECT 2"),
            lambda: run("SELECT %s", (object(),)),
        ]
        try:
            for step in steps:
                await step()
        finally:
            await component.close(None)
        return seen

    ours, theirs = await outcomes("always"), await outcomes("never")
    assert ours == theirs
    assert ("DivisionByZero", "22012") in ours


@pytest.mark.anyio
async def test_async_task_cancelled_as_begin_enters_its_pipeline_gets_its_cancellation(
    pg: Server,
) -> None:
    """psycopg's wait yields to a busy event loop (``sleep(0)``) even when what it waits for
    is done: entering the pipeline that carries ``BEGIN`` must not leave it half entered for
    a task cancelled there (psycopg's own context manager then raised ``AssertionError``)."""
    busy = getattr(waiting, "MAX_BUSY_TIME", None)
    if busy is None:
        pytest.skip("this psycopg's wait never yields when nothing is to wait for")
    component = AsyncPostgresConnection()
    component.configure(
        base_config(pg, options__begin_with_statement="always", options__max_pool_size=1)
    )
    await asyncio.wait_for(component.open(None), 30)
    try:

        async def query() -> None:
            async with component.connection(timeout=10) as conn:
                await conn.execute("SELECT 1")

        pid = await _async_backend_pid(component)
        time.sleep(2 * busy)  # the event loop busy, as under load: psycopg's next wait yields
        task = asyncio.ensure_future(query())
        await asyncio.sleep(0)  # the task runs to its first await: that yield, in the entry
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        # the connection came back usable, out of any pipeline or transaction
        assert await _async_backend_pid(component) == pid
        await _assert_usable(component)
    finally:
        await component.close(None)


async def _assert_usable(component: AsyncPostgresConnection) -> None:
    """A checkout gets a connection out of any pipeline, that runs a statement."""
    async with component.connection(timeout=10) as conn:
        assert conn._pipeline is None
        cursor = await conn.execute("SELECT 2")
        assert await cursor.fetchone() == (2,)


async def _async_backend_pid(component: AsyncPostgresConnection) -> int:
    async with component.connection(timeout=10) as conn:
        assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
        return conn.info.backend_pid
