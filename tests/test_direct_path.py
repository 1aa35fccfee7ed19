"""The direct checkout and return of both pools (see ``CheckoutPolicy._init_direct_path``).

An idle connection is taken from, and an idle one given back to, psycopg_pool's queue without
going through psycopg_pool's ``getconn()``/``putconn()``. These tests hold the direct path to
what psycopg_pool's own does in the same case: its statistics, its log lines, a caller waiting
for the connection, a ``drain()``; the way back to psycopg_pool's path when the direct one
is off. A caller that finds no idle connection waits in psycopg_pool's queue on a waiter of
this package: the tests hold it to psycopg_pool's counts and to its outcomes (a timeout, a
closed pool, a new connection, an interruption, a cancellation). Each runs on a real
psycopg_pool pool beside ours where they are compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout

from pip_postgres import (
    AsyncPostgresConnection,
    AsyncPostgresPool,
    CheckoutTimeout,
    PostgresConfig,
    PostgresConnection,
    PostgresPool,
)
from pip_postgres.pool import _Waiter

from .conftest import Server, admin_query, base_config

#: psycopg_pool's statistics that a checkout and a return of an idle connection change.
COUNTED = ("requests_num", "requests_queued", "requests_errors", "returns_bad", "pool_available")


def _config(pg: Server, size: int) -> Any:
    return base_config(pg, options__max_pool_size=size, options__min_pool_size=size)


@pytest.fixture
def ours(pg: Server) -> Iterator[PostgresConnection]:
    component = PostgresConnection()
    component.configure(_config(pg, 2))
    component.open(None)
    try:
        yield component
    finally:
        component.close(None)


@pytest.fixture
def theirs(pg: Server) -> Iterator[ConnectionPool[Any]]:
    pool: ConnectionPool[Any] = ConnectionPool(
        pg.conninfo(), min_size=2, max_size=2, name="theirs", open=True
    )
    pool.wait(timeout=30)
    try:
        yield pool
    finally:
        pool.close()


def _pool(component: PostgresConnection) -> Any:
    pool = component.get_connection()
    assert pool is not None
    return pool


def _counted(pool: Any) -> dict[str, int]:
    stats = pool.get_stats()
    return {key: stats.get(key, 0) for key in COUNTED}


def _exercise(pool: Any) -> None:
    """Five checkouts through ``getconn()``/``putconn()`` and two at once."""
    for _ in range(5):
        pool.putconn(pool.getconn())
    first, second = pool.getconn(), pool.getconn()
    pool.putconn(second)
    pool.putconn(first)


def test_statistics_are_psycopg_pools(
    ours: PostgresConnection, theirs: ConnectionPool[Any]
) -> None:
    pool = _pool(ours)
    before = {"ours": _counted(pool), "theirs": _counted(theirs)}
    _exercise(pool)
    _exercise(theirs)
    assert _counted(pool)["requests_num"] - before["ours"]["requests_num"] == 7
    assert _counted(pool) == {
        key: value + (7 if key == "requests_num" else 0) for key, value in before["ours"].items()
    }
    assert {k: v - before["theirs"][k] for k, v in _counted(theirs).items()} == {
        k: v - before["ours"][k] for k, v in _counted(pool).items()
    }


def test_log_lines_are_psycopg_pools(
    ours: PostgresConnection, theirs: ConnectionPool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    def lines(pool: Any) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="psycopg.pool"):
            pool.putconn(pool.getconn())
        return [record.msg for record in caplog.records if record.name == "psycopg.pool"]

    theirs_lines = lines(theirs)
    assert theirs_lines == [
        "connection requested from %r",
        "connection given by %r",
        "returning connection to %r",
    ]
    assert lines(_pool(ours)) == theirs_lines
    caplog.clear()
    _pool(ours).putconn(_pool(ours).getconn())  # logging off: no record, no formatting
    assert not [record for record in caplog.records if record.name == "psycopg.pool"]


def test_a_connection_given_back_goes_to_the_caller_waiting_for_it(pg: Server) -> None:
    component = PostgresConnection()
    component.configure(_config(pg, 1))
    component.open(None)
    try:
        pool = _pool(component)
        held = pool.getconn()
        pid = held.info.backend_pid
        got: list[int] = []
        waiter = threading.Thread(
            target=lambda: got.append(_pid_of_checkout(component)), daemon=True
        )
        before = _counted(pool)
        waiter.start()
        for _ in range(500):  # until it waits: psycopg_pool counts a queued request
            if _counted(pool)["requests_queued"] > before["requests_queued"]:
                break
            threading.Event().wait(0.01)
        assert _counted(pool)["requests_queued"] == before["requests_queued"] + 1
        pool.putconn(held)  # the direct return hands it to the waiting caller
        waiter.join(timeout=10)
        assert got == [pid]
        after = _counted(pool)
        assert after["requests_num"] == before["requests_num"] + 1  # counted once, not twice
        assert after["pool_available"] == 1
    finally:
        component.close(None)


def _pid_of_checkout(component: PostgresConnection) -> int:
    with component.connection(timeout=10) as conn:
        return conn.info.backend_pid


def test_a_connection_out_during_drain_is_closed_at_return(ours: PostgresConnection) -> None:
    pool = _pool(ours)
    conn = pool.getconn()
    pid = conn.info.backend_pid
    pool.drain()
    pool.putconn(conn)
    assert conn.closed
    pids = {_pid_of_checkout(ours) for _ in range(4)}
    assert pid not in pids


#: What a checkout with no time to wait gets, in place of a connection.
NO_WAIT = r"with a timeout of .* s gets no connection: give a positive timeout"


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan])
def test_a_checkout_with_no_time_to_wait_is_refused_and_told_why(
    ours: PostgresConnection, theirs: ConnectionPool[Any], timeout: float
) -> None:
    """psycopg_pool hands out no connection for a timeout of 0 or less, even an idle one; nor
    does ours, whose error says why (not that no connection was free), and a NaN is refused
    alike. Counted as psycopg_pool counts its own refusals; a closed pool says it is closed."""
    pool = _pool(ours)
    before = _counted(pool)
    with pytest.raises(CheckoutTimeout, match=NO_WAIT), ours.connection(timeout=timeout):
        pass
    with pytest.raises(CheckoutTimeout, match=NO_WAIT):
        pool.getconn(timeout)
    theirs_before = _counted(theirs)
    if timeout <= 0:  # (NaN: psycopg_pool hands out an idle connection)
        for _ in range(2):
            with pytest.raises(PoolTimeout):
                theirs.getconn(timeout)
        assert _counted(theirs) == {
            k: v + (2 if k == "requests_num" else 0) for k, v in theirs_before.items()
        }
    assert _counted(pool) == {k: v + (2 if k == "requests_num" else 0) for k, v in before.items()}
    with ours.connection() as conn:  # the pool serves as before
        conn.execute("SELECT 1")
    pool.close()
    with pytest.raises(PoolClosed):
        pool.getconn(timeout)


@pytest.mark.anyio
async def test_async_a_checkout_with_no_time_to_wait_is_refused_and_told_why(pg: Server) -> None:
    component = AsyncPostgresConnection()
    component.configure(_config(pg, 1))
    await component.open(None)
    try:
        for timeout in (0.0, -1.0, math.nan):
            with pytest.raises(CheckoutTimeout, match=NO_WAIT):
                async with component.connection(timeout=timeout):
                    pass
        async with component.connection() as conn:
            await conn.execute("SELECT 1")
        pool = component.get_connection()
        assert pool is not None
        assert pool.get_stats()["requests_num"] == 4
    finally:
        await component.close(None)


@pytest.mark.parametrize("callback", ["check", "reset"])
def test_a_check_or_reset_callback_takes_psycopg_pools_path_which_calls_it(
    pg: Server, callback: str
) -> None:
    """psycopg_pool calls a ``check`` callback at each checkout, a ``reset`` one at each return:
    a pool given either goes through psycopg_pool's ``getconn()`` and ``putconn()``, both
    ways, and still cleans what a holder left."""
    called: list[int] = []

    def count(conn: psycopg.Connection[Any]) -> None:
        called.append(conn.info.backend_pid)

    pool = PostgresPool(**_pool_of_one_args(pg, **{callback: count}))
    pool.open(wait=True, timeout=30)
    try:
        assert not pool._direct
        default = _work_mem(pool)
        for _ in range(3):
            with pool.connection() as conn:
                pid = conn.info.backend_pid
                conn.execute("SET work_mem = '7MB'")
        assert _work_mem(pool) == default  # reset by the return, as on the direct path
        # 5 checkouts or 5 returns, one connection (psycopg_pool's worker resets a return)
        deadline = time.monotonic() + 10
        while len(called) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert called == [pid] * 5
        assert pool.get_stats()["requests_num"] == 5
    finally:
        pool.close()


def _pool_of_one_args(pg: Server, **pool_kwargs: Any) -> dict[str, Any]:
    """The arguments of a pool of one connection to the test server (either pool class)."""
    config = PostgresConfig.from_config(base_config(pg))
    return {
        "conninfo": config.conninfo(),
        "kwargs": config.connect_kwargs(),
        "validation_bypass": 60.0,
        "min_size": 1,
        "max_size": 1,
        **pool_kwargs,
    }


def _work_mem(pool: PostgresPool) -> str:
    with pool.connection() as conn:
        row = conn.execute("SHOW work_mem").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.anyio
@pytest.mark.parametrize("callback", ["check", "reset"])
async def test_async_a_check_or_reset_callback_takes_psycopg_pools_path(
    pg: Server, callback: str
) -> None:
    """As the sync pool: ``AsyncConnectionPool``'s callbacks are awaited at each checkout or
    return, and what a holder left is still cleaned."""
    called: list[int] = []

    async def count(conn: psycopg.AsyncConnection[Any]) -> None:
        called.append(conn.info.backend_pid)

    async def work_mem() -> str:
        async with pool.connection() as conn:
            row = await (await conn.execute("SHOW work_mem")).fetchone()
        assert row is not None
        return str(row[0])

    pool = AsyncPostgresPool(**_pool_of_one_args(pg, **{callback: count}))
    await pool.open(wait=True, timeout=30)
    try:
        assert not pool._direct
        default = await work_mem()
        for _ in range(3):
            async with pool.connection() as conn:
                pid = conn.info.backend_pid
                await conn.execute("SET work_mem = '7MB'")
        assert await work_mem() == default
        deadline = time.monotonic() + 10  # (psycopg_pool's worker task resets a return)
        while len(called) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert called == [pid] * 5
        assert pool.get_stats()["requests_num"] == 5
    finally:
        await pool.close()


def test_psycopg_pools_path_when_the_direct_one_is_off(ours: PostgresConnection) -> None:
    """A pool without the attributes the direct path uses goes through psycopg_pool's."""
    pool = _pool(ours)
    assert pool._direct  # psycopg_pool 3.2.2 to 3.3 have them all
    pool._direct = False
    before = _counted(pool)
    _exercise(pool)
    assert {k: v - before[k] for k, v in _counted(pool).items()} == {
        k: (7 if k == "requests_num" else 0) for k in COUNTED
    }
    assert pool.get_stats()["connections_validated"] == 0  # the bypass window still applies


# Waiting in the sync pool: our waiter in psycopg_pool's queue ------------------------------


def _waits(pool: Any, before: dict[str, int], count: int = 1) -> None:
    """Until ``count`` more callers are queued (bounded: 5 s)."""
    for _ in range(500):
        if _counted(pool)["requests_queued"] >= before["requests_queued"] + count:
            return
        threading.Event().wait(0.01)
    raise AssertionError("no caller queued within 5 s")


def _one_connection(pg: Server, **options: Any) -> PostgresConnection:
    component = PostgresConnection()
    component.configure(_config(pg, 1) if not options else base_config(pg, **options))
    component.open(None)
    return component


def test_a_caller_that_gives_up_waiting_leaves_the_queue(
    pg: Server, theirs: ConnectionPool[Any]
) -> None:
    """Counted as psycopg_pool counts it; a later return does not go to the caller gone."""
    component = _one_connection(pg)
    try:
        pool = _pool(component)
        held = pool.getconn()
        pid = held.info.backend_pid
        before = _counted(pool)
        with (
            pytest.raises(CheckoutTimeout, match="max_pool_size=1"),
            component.connection(timeout=0.2),
        ):
            pass
        assert pool.get_stats().get("requests_waiting", 0) == 0
        ours_counts = {k: v - before[k] for k, v in _counted(pool).items()}
        pool.putconn(held)
        assert _counted(pool)["pool_available"] == 1  # idle again, not lost to the caller gone
        assert _pid_of_checkout(component) == pid

        both = [theirs.getconn(), theirs.getconn()]
        before = _counted(theirs)
        with pytest.raises(PoolTimeout):
            theirs.getconn(timeout=0.2)
        theirs_counts = {k: v - before[k] for k, v in _counted(theirs).items()}
        for conn in both:
            theirs.putconn(conn)
        assert ours_counts == theirs_counts
        assert ours_counts["requests_errors"] == ours_counts["requests_queued"] == 1
    finally:
        component.close(None)


def test_closing_the_pool_fails_a_waiting_caller_at_once(pg: Server) -> None:
    component = _one_connection(pg)
    pool = _pool(component)
    held = pool.getconn()
    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            pool.putconn(pool.getconn(timeout=30))
            outcome.append(None)
        except BaseException as error:  # the outcome is what is tested
            outcome.append(error)

    before = _counted(pool)
    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    _waits(pool, before)
    assert [type(w) for w in pool._waiting] == [_Waiter]  # this package's waiter, not theirs
    started = time.monotonic()
    pool.close(timeout=5)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PoolClosed)
    assert time.monotonic() - started < 10  # not the 30 s of its timeout
    held.close()
    component.close(None)


def test_a_waiting_caller_gets_the_connection_the_pool_grows_by(pg: Server) -> None:
    component = _one_connection(pg, options__min_pool_size=1, options__max_pool_size=2)
    try:
        pool = _pool(component)
        held = pool.getconn()
        before = _counted(pool)
        pid = _pid_of_checkout(component)  # queued, then handed the new connection
        assert pid != held.info.backend_pid
        assert _counted(pool)["requests_queued"] == before["requests_queued"] + 1
        assert pool.get_stats()["pool_size"] == 2
        pool.putconn(held)
    finally:
        component.close(None)


def test_a_waiting_caller_interrupted_by_ctrl_c_leaves_the_queue(pg: Server) -> None:
    component = _one_connection(pg)
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where the tests were started
    # with SIGINT ignored (a shell's background job, nohup's children inherit it).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        pool = _pool(component)
        held = pool.getconn()
        pid = held.info.backend_pid
        before = _counted(pool)
        main = threading.main_thread().ident
        assert main is not None and threading.get_ident() == main

        def interrupt() -> None:
            _waits(pool, before)
            threading.Event().wait(0.2)  # in the wait itself, past the queueing
            signal.pthread_kill(main, signal.SIGINT)

        interrupter = threading.Thread(target=interrupt, daemon=True)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt), component.connection(timeout=20):
            pass
        interrupter.join(timeout=10)
        assert pool.get_stats().get("requests_waiting", 0) == 0
        # counted as psycopg_pool counts it: a request, not an error (not an Exception)
        counts = {k: v - before[k] for k, v in _counted(pool).items()}
        assert (counts["requests_num"], counts["requests_queued"], counts["requests_errors"]) == (
            1, 1, 0,
        )  # fmt: skip
        pool.putconn(held)
        assert _counted(pool)["pool_available"] == 1
        assert _pid_of_checkout(component) == pid
    finally:
        signal.signal(signal.SIGINT, previous)
        component.close(None)


def test_a_connection_that_reached_a_caller_who_left_goes_back_to_the_pool(
    ours: PostgresConnection,
) -> None:
    """The race a Ctrl-C can lose: the connection came just as the caller gave up."""
    pool = _pool(ours)
    first, second = pool.getconn(), pool.getconn()
    waiter = _Waiter()
    with pool._lock:
        pool._waiting.append(waiter)
    pool.putconn(first)  # handed to the waiter, under the pool's lock
    assert waiter.conn is first and _counted(pool)["pool_available"] == 0
    pool._leave_queue(waiter, None)  # the caller was interrupted before it took it
    assert _counted(pool)["pool_available"] == 1
    assert waiter.fail(PoolClosed("late")) is False  # an outcome is set once
    pool.putconn(second)


@pytest.mark.anyio
async def test_async_task_cancelled_waiting_for_the_pools_lock_loses_nothing(pg: Server) -> None:
    """psycopg_pool's own waiters (``max_waiting`` set) make its code hold the pool's lock
    across an await: a checkout cancelled there has taken nothing, and is counted as
    psycopg_pool counts it (a request); a return cancelled there still hands the connection
    back (psycopg_pool's ``putconn()`` would lose it)."""
    component = await _one_async_connection(pg)
    try:
        pool: Any = component.get_connection()
        held = await pool.getconn()
        pid = held.info.backend_pid
        for name, call in (("checkout", pool.getconn), ("return", lambda: pool.putconn(held))):
            before = _counted(pool)
            async with pool._lock:  # as psycopg_pool's _add_to_pool() awaiting its waiter
                task = asyncio.ensure_future(call())
                await asyncio.sleep(0.05)
                assert not task.done()  # waiting for the lock
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            counts = {k: v - before[k] for k, v in _counted(pool).items()}
            if name == "checkout":
                assert (counts["requests_num"], counts["requests_errors"]) == (1, 0)
                assert counts["requests_queued"] == counts["pool_available"] == 0
                assert not pool._waiting
        await _until_all_idle(pool, 1, 5)
        again = await asyncio.wait_for(pool.getconn(timeout=5), 10)
        assert again.info.backend_pid == pid
        await pool.putconn(again)
    finally:
        await component.close(None)


# Storms: many callers on two connections, waiting, giving up, cancelled ---------------------

#: A storm's timeouts, in seconds, each checkout drawing one: most short ones expire while
#: the caller waits, the long one does not.
STORM_TIMEOUTS = (0.0005, 0.005, 10.0)
#: A storm's bound, in seconds: its callers stop starting checkouts after it.
STORM_SECONDS = 60.0


class _Holders:
    """Which connection each holder has: one handed to two holders at once is recorded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, object] = {}
        self.twice: list[object] = []

    def take(self, conn: object) -> None:
        with self._lock:
            if id(conn) in self._held:
                self.twice.append(conn)
            self._held[id(conn)] = conn

    def give(self, conn: object) -> None:
        with self._lock:
            del self._held[id(conn)]


def _all_idle(pool: Any, size: int) -> bool:
    """Whether the pool has ``size`` connections, all idle."""
    stats = pool.get_stats()
    return bool(stats.get("pool_available") == stats.get("pool_size") == size)


async def _until_all_idle(pool: Any, size: int, seconds: float) -> None:
    """Until the pool has ``size`` connections, all idle, at most ``seconds`` (the event loop
    runs meanwhile: psycopg_pool's worker gives connections back in it)."""
    for _ in range(int(seconds * 100)):
        if _all_idle(pool, size):
            return
        await asyncio.sleep(0.01)


def _left_nothing(pool: Any, size: int) -> None:
    """Nothing queued or checked out, every connection idle (bounded wait: 10 s, for the
    pool to replace a connection closed in the middle of a query)."""
    for _ in range(1000):
        if _all_idle(pool, size):
            break
        time.sleep(0.01)
    stats = pool.get_stats()
    assert (stats.get("pool_available"), stats.get("pool_size")) == (size, size)
    assert stats.get("requests_waiting", 0) == 0
    assert not pool._waiting and not pool._in_use


#: The two ways a checkout waits: on the pool's own waiter, and (``max_waiting`` set) in
#: psycopg_pool's ``getconn()``.
STORM_PATHS = pytest.mark.parametrize(
    "max_waiting", [0, 1000], ids=["own-waiter", "psycopg_pool-getconn"]
)


@contextlib.contextmanager
def _terminating(pg: Server, application_name: str, on: bool) -> Iterator[list[int]]:
    """While in it (if ``on``), the server terminates the sessions of ``application_name``
    every 20 ms (at most 500 times), from a thread of its own.

    On the way out, it waits (at most 5 s) until the sessions it terminated have exited: a
    pool sees a termination at checkout, but not one the server has not carried out yet.

    :return: (as the ``with`` target) the process ids of the sessions terminated so far.
    """
    terminated: list[int] = []
    if not on:
        yield terminated
        return
    stop = threading.Event()

    def terminate() -> None:
        with psycopg.connect(pg.superuser_conninfo(), autocommit=True) as admin:
            for _ in range(500):
                if stop.wait(0.02):
                    return
                cursor = admin.execute(  # (in the select list: only for the rows chosen)
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (application_name,),
                )
                terminated.extend(pid for (pid, done) in cursor.fetchall() if done)

    thread = threading.Thread(target=terminate, daemon=True)
    thread.start()
    try:
        yield terminated
    finally:
        stop.set()
        thread.join(timeout=10)
        for _ in range(500):
            if not admin_query(
                pg, "SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", (terminated,)
            ):
                break
            time.sleep(0.01)


#: What a storm's holders may leave behind on a session, and its value when nothing is.
_LEFT_BEHIND = (
    "SELECT current_setting('statement_timeout'), current_setting('transaction_read_only')"
)
_NOTHING_LEFT = ("0", "off")


def _hold(conn: Any, action: int, seconds: float) -> None:
    """What a storm's holder does with its connection: one of six actions, each changing
    what the return must undo (a setting, an attribute, a transaction), or sleeping."""
    if action == 0:
        conn.execute("SET statement_timeout = '7s'")
    elif action == 1:
        with conn.transaction():
            assert conn.execute("SELECT 1").fetchone() == (1,)
    elif action == 2:
        conn.autocommit = True
    elif action == 3:
        conn.read_only = True
    elif action == 4:
        assert conn.execute("SELECT 1 FROM pg_sleep(%s)", (seconds,)).fetchone() == (1,)
    else:
        time.sleep(seconds)


async def _hold_async(conn: Any, action: int, seconds: float) -> None:
    """:func:`_hold`, in a task."""
    if action == 0:
        await conn.execute("SET statement_timeout = '7s'")
    elif action == 1:
        async with conn.transaction():
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    elif action == 2:
        await conn.set_autocommit(True)
    elif action == 3:
        await conn.set_read_only(True)
    elif action == 4:
        cursor = await conn.execute("SELECT 1 FROM pg_sleep(%s)", (seconds,))
        assert await cursor.fetchone() == (1,)
    else:
        await asyncio.sleep(seconds)


#: Whether the server terminates the storm's sessions meanwhile: see :func:`_terminating`.
STORM_SERVER = pytest.mark.parametrize(
    "terminating", [False, True], ids=["calm", "sessions-terminated"]
)


def _storm_config(pg: Server, max_waiting: int, application_name: str) -> Any:
    return base_config(
        pg,
        options__min_pool_size=2,
        options__max_pool_size=2,
        options__max_waiting=max_waiting,
        options__application_name=application_name,
    )


def _storm_survived(outcomes: list[str], terminated: list[int], terminating: bool) -> None:
    """A failed query is a terminated session's (one was terminated, in the right storm)."""
    assert ("broken" in outcomes) <= terminating
    assert bool(terminated) == terminating


@STORM_PATHS
@STORM_SERVER
def test_a_storm_of_threads_hands_each_connection_to_one_holder_at_a_time(
    pg: Server, max_waiting: int, terminating: bool
) -> None:
    """12 threads, 40 checkouts each, on 2 connections: most wait, many give up, holders
    change what the return must undo (:func:`_hold`); in one storm the server terminates the
    sessions meanwhile, and the pool replaces them."""
    component = PostgresConnection()
    name = f"storm-{uuid.uuid4().hex[:8]}"
    component.configure(_storm_config(pg, max_waiting, name))
    component.open(None)
    try:
        pool = _pool(component)
        before = _counted(pool)
        holders = _Holders()
        outcomes: list[str] = []
        stop_at = time.monotonic() + STORM_SECONDS

        def work(seed: int) -> None:
            draw = random.Random(seed)
            for _ in range(40):
                if time.monotonic() > stop_at:
                    return
                try:
                    with component.connection(timeout=draw.choice(STORM_TIMEOUTS)) as conn:
                        holders.take(conn)
                        try:
                            _hold(conn, draw.randrange(6), draw.random() * 0.002)
                        finally:
                            holders.give(conn)
                except CheckoutTimeout:
                    outcomes.append("timeout")
                except psycopg.OperationalError:
                    outcomes.append("broken")
                else:
                    outcomes.append("ok")

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(12)]
        with _terminating(pg, name, terminating) as terminated:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=STORM_SECONDS + 30)
        assert not any(thread.is_alive() for thread in threads)
        assert holders.twice == []
        assert len(outcomes) == 12 * 40 and {"ok", "timeout"} <= set(outcomes)
        _storm_survived(outcomes, terminated, terminating)
        if not terminating:  # (a connection found broken at checkout is a request more)
            counts = {k: v - before[k] for k, v in _counted(pool).items()}
            assert counts["requests_num"] == len(outcomes)
            assert counts["requests_errors"] == outcomes.count("timeout")
        _left_nothing(pool, 2)
        for _ in range(3):  # the holders' changes all undone
            with component.connection(timeout=10) as conn:
                assert conn.execute(_LEFT_BEHIND).fetchone() == _NOTHING_LEFT
                assert (conn.autocommit, conn.read_only) == (False, None)
    finally:
        component.close(None)


# asyncio --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_statistics_and_log_lines_are_psycopg_pools(
    pg: Server, caplog: pytest.LogCaptureFixture
) -> None:
    component = AsyncPostgresConnection()
    component.configure(_config(pg, 2))
    await asyncio.wait_for(component.open(None), 30)
    theirs: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg.conninfo(), min_size=2, max_size=2, name="theirs-async", open=False
    )
    await theirs.open(wait=True, timeout=30)
    try:
        pool: Any = component.get_connection()
        assert pool._direct  # made at open(), when psycopg_pool's async pool has its lock
        counts = []
        for subject in (pool, theirs):
            before = _counted(subject)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="psycopg.pool"):
                for _ in range(5):
                    await subject.putconn(await subject.getconn())
                first, second = await subject.getconn(), await subject.getconn()
                await subject.putconn(second)
                await subject.putconn(first)
            counts.append({k: v - before[k] for k, v in _counted(subject).items()})
            lines = [r.msg for r in caplog.records if r.name == "psycopg.pool"]
            assert lines[:3] == [
                "connection requested from %r",
                "connection given by %r",
                "returning connection to %r",
            ]
            assert len(lines) == 21
        assert counts[0] == counts[1]
        assert counts[0]["requests_num"] == 7
    finally:
        await component.close(None)
        await theirs.close()


@pytest.mark.anyio
async def test_async_waiting_task_and_drain(pg: Server) -> None:
    component = AsyncPostgresConnection()
    component.configure(_config(pg, 1))
    await asyncio.wait_for(component.open(None), 30)
    try:
        pool: Any = component.get_connection()
        held = await pool.getconn()
        pid = held.info.backend_pid
        before = _counted(pool)

        async def checkout() -> int:
            async with component.connection(timeout=10) as conn:
                return int(conn.info.backend_pid)

        waiter = asyncio.ensure_future(checkout())
        for _ in range(500):
            if _counted(pool)["requests_queued"] > before["requests_queued"]:
                break
            await asyncio.sleep(0.01)
        await pool.putconn(held)
        assert await asyncio.wait_for(waiter, 10) == pid
        assert _counted(pool)["requests_num"] == before["requests_num"] + 1

        conn = await pool.getconn()
        await pool.drain()
        await pool.putconn(conn)
        assert conn.closed
        assert await asyncio.wait_for(checkout(), 10) != pid
    finally:
        await component.close(None)


async def _one_async_connection(pg: Server) -> AsyncPostgresConnection:
    component = AsyncPostgresConnection()
    component.configure(_config(pg, 1))
    await asyncio.wait_for(component.open(None), 30)
    return component


async def _async_waits(pool: Any, before: dict[str, int]) -> None:
    """Until one more task is queued (bounded: 5 s)."""
    for _ in range(500):
        if _counted(pool)["requests_queued"] > before["requests_queued"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no task queued within 5 s")


async def _held_and_queued(pool: Any) -> tuple[Any, asyncio.Future[Any]]:
    """The pool's one connection held, and a checkout (timeout 30 s) queued behind it."""
    held = await pool.getconn()
    before = _counted(pool)
    waiter = asyncio.ensure_future(pool.getconn(timeout=30))
    await _async_waits(pool, before)
    return held, waiter


@pytest.mark.anyio
async def test_async_task_that_gives_up_waiting_leaves_the_queue(pg: Server) -> None:
    component = await _one_async_connection(pg)
    theirs: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg.conninfo(), min_size=1, max_size=1, name="theirs-async", open=False
    )
    await theirs.open(wait=True, timeout=30)
    try:
        pool: Any = component.get_connection()
        held = await pool.getconn()
        pid = held.info.backend_pid
        before = _counted(pool)
        with pytest.raises(CheckoutTimeout, match="max_pool_size=1"):
            await asyncio.wait_for(pool.getconn(timeout=0.2), 10)
        assert pool.get_stats().get("requests_waiting", 0) == 0
        ours_counts = {k: v - before[k] for k, v in _counted(pool).items()}
        await pool.putconn(held)
        assert _counted(pool)["pool_available"] == 1  # idle again, not lost to the task gone
        again = await pool.getconn()
        assert again.info.backend_pid == pid
        await pool.putconn(again)

        theirs_held = await theirs.getconn()
        before = _counted(theirs)
        with pytest.raises(PoolTimeout):
            await asyncio.wait_for(theirs.getconn(timeout=0.2), 10)
        theirs_counts = {k: v - before[k] for k, v in _counted(theirs).items()}
        await theirs.putconn(theirs_held)
        assert ours_counts == theirs_counts
        assert ours_counts["requests_errors"] == ours_counts["requests_queued"] == 1
    finally:
        await component.close(None)
        await theirs.close()


@pytest.mark.anyio
async def test_async_closing_the_pool_fails_a_waiting_task_at_once(pg: Server) -> None:
    component = await _one_async_connection(pg)
    pool: Any = component.get_connection()
    held, waiter = await _held_and_queued(pool)
    assert [type(w).__name__ for w in pool._waiting] == ["_AsyncWaiter"]
    started = asyncio.get_running_loop().time()
    await pool.close(timeout=5)
    with pytest.raises(PoolClosed):
        await asyncio.wait_for(waiter, 10)
    assert asyncio.get_running_loop().time() - started < 10  # not the 30 s of its timeout
    await held.close()
    await component.close(None)


async def _cancelled_while_waiting(pool: Any, handed: bool) -> dict[str, int]:
    """A task queued behind the pool's one connection is cancelled; what it counted.

    And how many tasks were still in the pool's queue right after the cancellation.

    ``handed``: the race a cancellation can lose, the connection came as it was delivered.
    Afterwards the connection is idle again (bounded wait: 5 s) and checked out once more.
    """
    before = _counted(pool)
    held, waiter = await _held_and_queued(pool)
    pid = held.info.backend_pid
    waiter.cancel()  # delivered at the task's next step...
    if handed:
        await pool.putconn(held)  # ...after the connection reached its waiter
    with pytest.raises(asyncio.CancelledError):
        await waiter
    waiting = pool.get_stats().get("requests_waiting", 0)
    if not handed:
        await pool.putconn(held)
    await _until_all_idle(pool, 1, 5)
    counts = {k: v - before[k] for k, v in _counted(pool).items() if k != "pool_available"}
    counts["waiting_after_the_cancellation"] = waiting
    assert _counted(pool)["pool_available"] == 1
    again = await asyncio.wait_for(pool.getconn(), 10)
    assert again.info.backend_pid == pid
    await pool.putconn(again)
    return counts


@pytest.mark.anyio
@pytest.mark.parametrize("handed", [False, True], ids=["waiting", "handed-then-cancelled"])
async def test_async_waiting_task_cancelled_leaves_the_queue(pg: Server, handed: bool) -> None:
    """No connection lost, counted as psycopg_pool counts its own (a request and an error); a
    connection that reached it goes back through psycopg_pool's worker, as its own waiters'."""
    component = await _one_async_connection(pg)
    theirs: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg.conninfo(), min_size=1, max_size=1, name="theirs-async", open=False
    )
    await theirs.open(wait=True, timeout=30)
    try:
        ours_counts = await _cancelled_while_waiting(component.get_connection(), handed)
        theirs_counts = await _cancelled_while_waiting(theirs, handed)
        # psycopg_pool leaves its cancelled waiter queued until a return skips it; ours left
        assert ours_counts.pop("waiting_after_the_cancellation") == 0
        theirs_counts.pop("waiting_after_the_cancellation")
        assert ours_counts == theirs_counts
        # the held connection's checkout and the cancelled one; the cancelled one is an error
        assert (ours_counts["requests_num"], ours_counts["requests_errors"]) == (2, 1)
    finally:
        await component.close(None)
        await theirs.close()


@pytest.mark.anyio
@STORM_PATHS
@STORM_SERVER
async def test_a_storm_of_tasks_hands_each_connection_to_one_holder_at_a_time(
    pg: Server, max_waiting: int, terminating: bool
) -> None:
    """24 tasks, 30 checkouts each, on 2 connections: most wait, many give up, and many are
    cancelled (waiting, or holding the connection, maybe in the middle of a query or of what
    the return undoes: :func:`_hold_async`); in one storm the server terminates the sessions
    meanwhile, and the pool replaces them."""
    component = AsyncPostgresConnection()
    name = f"storm-{uuid.uuid4().hex[:8]}"
    component.configure(_storm_config(pg, max_waiting, name))
    await asyncio.wait_for(component.open(None), 30)
    try:
        pool: Any = component.get_connection()
        before = _counted(pool)
        validated_before = pool.get_stats()["connections_validated"]
        holders = _Holders()
        outcomes: list[str] = []
        stop_at = time.monotonic() + STORM_SECONDS

        async def one(draw: random.Random, got: list[bool]) -> None:
            async with component.connection(timeout=draw.choice(STORM_TIMEOUTS)) as conn:
                got.append(True)
                holders.take(conn)
                try:
                    await _hold_async(conn, draw.randrange(6), draw.random() * 0.002)
                finally:
                    holders.give(conn)

        async def work(seed: int) -> None:
            draw = random.Random(seed)
            for _ in range(30):
                if time.monotonic() > stop_at:
                    return
                got: list[bool] = []
                try:
                    await asyncio.wait_for(one(draw, got), draw.choice((0.001, 0.01, 10.0)))
                except CheckoutTimeout:
                    outcomes.append("timeout")
                except asyncio.TimeoutError:
                    outcomes.append("cancelled holding" if got else "cancelled waiting")
                except psycopg.OperationalError:
                    outcomes.append("broken")
                else:
                    outcomes.append("ok")

        with _terminating(pg, name, terminating) as terminated:
            await asyncio.wait_for(
                asyncio.gather(*(work(seed) for seed in range(24))), STORM_SECONDS + 30
            )
        assert holders.twice == []
        assert len(outcomes) == 24 * 30
        assert {"ok", "timeout", "cancelled waiting", "cancelled holding"} <= set(outcomes)
        _storm_survived(outcomes, terminated, terminating)
        if not terminating:  # (a connection found broken at checkout is a request more)
            counts = {k: v - before[k] for k, v in _counted(pool).items()}
            validated = pool.get_stats()["connections_validated"] - validated_before
            # Every checkout is a request; psycopg_pool counts a timeout and a cancelled wait
            # as an error, but neither a task cancelled while its connection is validated (a
            # connection closed in the middle of a query makes the idle ones suspect), nor one
            # cancelled while it waits for the pool's lock, which only psycopg_pool's own
            # waiters make tasks do (their hand-over awaits under the lock).
            assert counts["requests_num"] == len(outcomes)
            errors = outcomes.count("timeout") + outcomes.count("cancelled waiting")
            fewest = outcomes.count("timeout") if max_waiting else errors - validated
            assert fewest <= counts["requests_errors"] <= errors
        await _until_all_idle(pool, 2, 10)
        _left_nothing(pool, 2)
        for _ in range(3):  # the holders' changes all undone
            async with component.connection(timeout=10) as conn:
                assert await (await conn.execute(_LEFT_BEHIND)).fetchone() == _NOTHING_LEFT
                assert (conn.autocommit, conn.read_only) == (False, None)
    finally:
        await component.close(None)
