"""psycopg2 code on our pool: ``with pool.getconn() as conn``, psycopg2-pool's API, and no
closed or signalled connection handed out, bypass window or not.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg_pool import PoolClosed

from pip_postgres import PostgresConnection, PostgresPool
from pip_postgres.checkout import (
    NEWS_CHECK_AFTER,
    bypass_applies,
    idle_and_intact,
    news_poller,
    socket_has_news,
)

from .conftest import Server, admin_query, backends
from .test_reliability import app_name, opened, pool_of


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def fill(pool: PostgresPool, count: int) -> None:
    held = [pool.getconn(timeout=10) for _ in range(count)]
    for conn in held:
        pool.putconn(conn)


def checkout_errors(pool: PostgresPool, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    for _ in range(count):
        conn = pool.getconn(timeout=10)
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as error:
            errors.append(error)
        finally:
            pool.putconn(conn)
    return errors


@pytest.fixture
def table(component: PostgresConnection) -> Any:
    name = f"with_{uuid.uuid4().hex[:10]}"
    with component.connection() as conn:
        conn.execute(f"CREATE TABLE {name} (x int)")
    yield name
    with component.connection() as conn:
        conn.execute(f"DROP TABLE {name}")


def count(component: PostgresConnection, table: str) -> int:
    with component.connection() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


# `with pool.getconn() as conn:` --------------------------------------------------------


def test_putconn_inside_the_with_block_repeatedly(component: PostgresConnection) -> None:
    pool = pool_of(component)
    pids = set()
    for _ in range(3 * pool.max_size + 5):
        with pool.getconn() as conn:
            conn.execute("SELECT 1")
            pids.add(conn.info.backend_pid)
            conn.commit()
            pool.putconn(conn)
        assert not conn.closed  # psycopg's __exit__ would have closed it
    assert len(pids) == 1  # the same connection each time: none was closed and replaced
    assert pool.get_stats()["connections_broken"] == 0
    assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"]


def test_exit_after_putconn_leaves_the_next_holder_alone(
    component: PostgresConnection, table: str
) -> None:
    pool = pool_of(component)
    block = pool.getconn()
    block.__enter__()
    block.execute(f"INSERT INTO {table} VALUES (1)")
    block.commit()
    pool.putconn(block)
    other = pool.getconn()
    assert other is block  # last in, first out: the same connection, another checkout
    other.execute(f"INSERT INTO {table} VALUES (2)")  # the new holder's open transaction
    block.__exit__(None, None, None)  # the first block ends: must neither commit nor close
    assert not other.closed
    assert other.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    other.rollback()
    pool.putconn(other)
    assert count(component, table) == 1  # the second insert was not committed by __exit__


def test_exit_while_still_held_commits(component: PostgresConnection, table: str) -> None:
    pool = pool_of(component)
    conn = pool.getconn()
    try:
        with conn:
            conn.execute(f"INSERT INTO {table} VALUES (1)")
        assert not conn.closed
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        pool.putconn(conn)  # would roll back anything left open
    assert count(component, table) == 1


def test_exit_while_still_held_rolls_back_on_error(
    component: PostgresConnection, table: str
) -> None:
    pool = pool_of(component)
    conn = pool.getconn()
    try:
        with pytest.raises(ZeroDivisionError), conn:
            conn.execute(f"INSERT INTO {table} VALUES (1)")
            _ = 1 / 0
        assert not conn.closed
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.commit()
    finally:
        pool.putconn(conn)
    assert count(component, table) == 0


def test_a_connection_of_no_pool_closes_as_psycopg_does(pg: Server) -> None:
    from pip_postgres import PooledConnection

    with PooledConnection.connect(pg.superuser_conninfo()) as conn:
        conn.execute("SELECT 1")
    assert conn.closed


# Never hand out a closed or signalled connection ---------------------------------------------


def test_closed_idle_connection_is_not_handed_out_in_the_bypass_window(pg: Server) -> None:
    component = opened(pg, max_pool_size=2, min_pool_size=2, validation_bypass=60_000)
    try:
        pool = pool_of(component)
        conn = pool.getconn()
        pool.putconn(conn)
        conn.close()  # what psycopg's own __exit__ did after putconn()
        for _ in range(5):
            got = pool.getconn(timeout=10)
            try:
                assert not got.closed
                assert got.execute("SELECT 1").fetchone() == (1,)
            finally:
                pool.putconn(got)
        assert pool.get_stats()["connections_broken"] == 1
    finally:
        component.close(None)


def test_terminated_idle_backends_in_the_bypass_window_cost_no_error(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=4, min_pool_size=4, validation_bypass=60_000,
                       application_name=name)  # fmt: skip
    try:
        pool = pool_of(component)
        fill(pool, 4)
        pids = {pid for pid, _ in backends(pg, name)}
        assert len(pids) == 4
        admin_query(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = %s", (name,))  # fmt: skip
        # The terminations reach the sockets a moment later: bounded wait until all are gone.
        wait_until(lambda: not backends(pg, name))
        errors = checkout_errors(pool, 20)
        assert errors == []
        assert pool.get_stats()["connections_broken"] >= 1
        assert not pids & {pid for pid, _ in backends(pg, name)}
    finally:
        component.close(None)


def test_bypass_decisions() -> None:
    ok, idle = psycopg.pq.ConnStatus.OK, psycopg.pq.TransactionStatus.IDLE
    assert idle_and_intact(ok, idle)
    assert not idle_and_intact(psycopg.pq.ConnStatus.BAD, idle)  # closed or broken
    assert not idle_and_intact(ok, psycopg.pq.TransactionStatus.INTRANS)
    window = {"bypass": 1.0, "suspect_before": 5.0, "max_lifetime": 100.0}
    assert bypass_applies(10.0, 9.5, 0.0, **window)
    assert not bypass_applies(10.0, 8.5, 0.0, **window)  # idle past the window
    assert not bypass_applies(5.5, 4.9, 0.0, **window)  # returned before a failure
    assert not bypass_applies(110.0, 109.5, 0.0, **window)  # past its lifetime


def test_news_poller_sees_data_and_a_hang_up() -> None:
    ours, peer = socket.socketpair()
    try:
        poll = news_poller(ours.fileno())
        assert poll is not None  # C's poll() is there on every POSIX system
        assert not socket_has_news(ours.fileno(), poll)
        peer.send(b"x")
        assert socket_has_news(ours.fileno(), poll)
        ours.recv(1)
        assert not socket_has_news(ours.fileno(), poll)
        peer.close()
        assert socket_has_news(ours.fileno(), poll)  # end of file
    finally:
        ours.close()


def test_socket_has_news_sees_a_notification(component: PostgresConnection) -> None:
    pool = pool_of(component)
    conn = pool.getconn()
    try:
        conn.autocommit = True
        conn.execute("LISTEN compat_news")
        assert not socket_has_news(conn.pgconn.socket)
        with component.connection() as other:
            other.execute("NOTIFY compat_news")
        assert wait_until(lambda: socket_has_news(conn.pgconn.socket))
        conn.execute("UNLISTEN *")
    finally:
        pool.putconn(conn)


def test_a_checkout_polls_the_socket_only_after_news_check_after_idle(
    component: PostgresConnection,
) -> None:
    """Given back less than ``NEWS_CHECK_AFTER`` before, a connection is handed out without the
    poll's system call; idle that long, its news send it to validation."""
    pool = pool_of(component)
    conn = pool.getconn()
    kept = (conn.returned_at, conn.created_at, conn.news_poller, pool._suspect_before)
    polls: list[int] = []
    poller = conn.news_poller
    assert poller is not None

    def counted() -> int:
        polls.append(poller())
        return polls[-1]

    try:
        conn.autocommit = True
        conn.execute("LISTEN gap_news")
        with component.connection() as other:
            other.execute("NOTIFY gap_news")
        assert wait_until(lambda: socket_has_news(conn.pgconn.socket))
        conn.news_poller = counted
        conn.returned_at = conn.created_at = pool._suspect_before = 0.0
        assert pool._ready(conn, NEWS_CHECK_AFTER * 0.99)
        assert polls == []
        assert not pool._ready(conn, NEWS_CHECK_AFTER)
        assert len(polls) == 1 and polls[0] > 0
    finally:
        conn.returned_at, conn.created_at, conn.news_poller, pool._suspect_before = kept
        conn.execute("UNLISTEN *")  # (reads the notification)
        pool.putconn(conn)


def test_the_news_check_counts_the_time_idle_until_the_take_not_from_the_checkouts_start(
    pg: Server,
) -> None:
    """A checkout that waited for the pool's lock counts a connection's time idle up to when it
    took it: one with news, given back just before the checkout began and idle through the
    wait, is validated."""
    component = opened(pg, max_pool_size=1, min_pool_size=1, validation_bypass=60_000)
    try:
        pool = pool_of(component)
        conn = pool.getconn()
        conn.autocommit = True
        conn.execute("LISTEN lock_news")
        admin_query(pg, "NOTIFY lock_news")
        pool.putconn(conn)
        assert wait_until(lambda: socket_has_news(conn.pgconn.socket))
        validated = pool.get_stats()["connections_validated"]
        got: list[Any] = []
        with pool._lock:
            # Given back as the checkout starts (a thread takes longer than 100 µs to start:
            # the stamp is 10 ms ahead, and the lock is held 50 ms).
            conn.returned_at = time.monotonic() + 0.01
            taker = threading.Thread(target=lambda: got.append(pool.getconn(timeout=10)))
            taker.start()
            time.sleep(0.05)  # the checkout waits for the lock
        taker.join(10)
        assert got == [conn]
        pool.putconn(conn)
        assert pool.get_stats()["connections_validated"] == validated + 1
    finally:
        component.close(None)


#: Times for the rule's property test: eighths of a second, whose differences are exact.
_TIME = st.integers(0, 48).map(lambda eighths: eighths / 8)
#: How far a bound is from the value it bounds: met exactly, cleared or missed by a little or
#: a lot (``<=`` against ``<`` is told by the exact ones).
_NEAR = st.sampled_from([0.0, 0.0, 0.125, -0.125, 1.0, -1.0])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    times=st.tuples(_TIME, _TIME, _TIME, _NEAR, _NEAR, _NEAR),
    state=st.sampled_from(["idle", "idle", "in a transaction", "news"]),
    with_poller=st.booleans(),
)
# Each bound met exactly, the others cleared: handed out at the window's and the suspicion's
# bound, not at the lifetime's. Every bound cleared, and news on the socket.
@example(times=(1.0, 1.0, 0.0, 0.0, -1.0, 1.0), state="idle", with_poller=True)
@example(times=(1.0, 1.0, 0.0, 1.0, 0.0, 1.0), state="idle", with_poller=True)
@example(times=(1.0, 1.0, 0.0, 1.0, -1.0, 0.0), state="idle", with_poller=True)
@example(times=(1.0, 1.0, 0.0, 1.0, -1.0, 1.0), state="news", with_poller=True)
@example(times=(1.0, 1.0, 0.0, 1.0, -1.0, 1.0), state="news", with_poller=False)
# Given back a moment ago (no time idle): handed out without a look at its socket.
@example(times=(1.0, 0.0, 0.0, 1.0, -1.0, 1.0), state="news", with_poller=True)
def test_the_checkouts_written_out_rule_agrees_with_its_functions(
    component: PostgresConnection,
    times: tuple[float, float, float, float, float, float],
    state: str,
    with_poller: bool,
) -> None:
    """``_ready()`` writes ``bypass_applies()``, ``idle_and_intact()`` and ``socket_has_news()``
    (after ``NEWS_CHECK_AFTER`` idle) out (every checkout goes through it): on a real
    connection it hands out exactly what they let through."""
    returned, idle, created, off_bypass, off_suspect, off_lifetime = times
    now = returned + idle
    bypass = max(idle + off_bypass, 0.0)
    suspect = returned + off_suspect
    lifetime = now - created + off_lifetime
    pool = pool_of(component)
    conn = pool.getconn()
    kept = (conn.returned_at, conn.created_at, conn.news_poller)
    kept_pool = (pool.validation_bypass, pool._suspect_before, pool.max_lifetime)
    try:
        conn.autocommit = True
        if state == "news":  # (a session in a transaction is sent no notification)
            conn.execute("LISTEN rule_news")
            with component.connection() as other:
                other.execute("NOTIFY rule_news")
            assert wait_until(lambda: socket_has_news(conn.pgconn.socket))
        elif state == "in a transaction":
            conn.execute("BEGIN")
        conn.returned_at, conn.created_at = returned, created
        if not with_poller:
            conn.news_poller = None  # where C's poll() cannot be called: select()
        pool.validation_bypass, pool._suspect_before, pool.max_lifetime = bypass, suspect, lifetime
        pgconn = conn.pgconn
        expected = (
            bypass_applies(now, returned, created, bypass, suspect, lifetime)
            and idle_and_intact(pgconn.status, pgconn.transaction_status)
            and (idle < NEWS_CHECK_AFTER or not socket_has_news(pgconn.socket))
        )
        assert pool._ready(conn, now) is expected
    finally:
        conn.returned_at, conn.created_at, conn.news_poller = kept
        pool.validation_bypass, pool._suspect_before, pool.max_lifetime = kept_pool
        # (UNLISTEN reads the notification)
        conn.execute("ROLLBACK" if state == "in a transaction" else "UNLISTEN *")
        pool.putconn(conn)


# psycopg2-pool's API ---------------------------------------------------------------------------


def test_minconn_maxconn(pg: Server) -> None:
    component = opened(pg, max_pool_size=3, min_pool_size=2)
    try:
        pool = pool_of(component)
        assert (pool.minconn, pool.maxconn) == (2, 3)
    finally:
        component.close(None)


def test_keyed_getconn_returns_the_same_connection_until_put(
    component: PostgresConnection,
) -> None:
    pool = pool_of(component)
    first = pool.getconn("job")  # psycopg2's positional key
    try:
        assert pool.getconn("job") is first
        assert pool.getconn(key="job") is first
        other = pool.getconn(key=7)
        assert other is not first
        pool.putconn(other, key=7)
        with pytest.raises(ValueError, match="key 'nope'"):
            pool.putconn(first, key="nope")
        seen: list[Any] = []
        thread = threading.Thread(target=lambda: seen.append(pool.getconn("job")))
        thread.start()
        thread.join(timeout=30)
        assert seen == [first]  # any thread gets the key's connection
    finally:
        pool.putconn(first, "job")
    again = pool.getconn("job")
    try:
        assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"] - 1
    finally:
        pool.putconn(again)  # the key is released without being named too
    assert pool.getconn("job") is not None
    pool.putconn(pool.getconn("job"))


def test_positional_number_is_a_timeout(component: PostgresConnection) -> None:
    pool = pool_of(component)
    first = pool.getconn(5)
    second = pool.getconn(5.0)
    try:
        assert first is not second  # not keyed: two checkouts
    finally:
        pool.putconn(first)
        pool.putconn(second)
    with pytest.raises(TypeError, match="key twice"):
        pool.getconn("a", key="b")


def test_putconn_close_discards_and_replaces(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=2, min_pool_size=2, application_name=name)
    try:
        pool = pool_of(component)
        conn = pool.getconn()
        pid = conn.info.backend_pid
        pool.putconn(conn, close=True)
        assert conn.closed
        # The pool opens a replacement in the background: bounded wait for it.
        assert wait_until(lambda: pool.get_stats()["pool_available"] == 2)
        assert pid not in {p for p, _ in backends(pg, name)}
        assert pool.get_stats()["connections_broken"] == 0
    finally:
        component.close(None)


def test_closeall_closes_even_connections_in_use(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=2, min_pool_size=2, application_name=name)
    try:
        pool = pool_of(component)
        held = pool.getconn("mine")
        pool.closeall()
        with pytest.raises(PoolClosed):
            pool.getconn()
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        pool.putconn(held)  # giving it back after closeall() is harmless
        wait_until(lambda: not backends(pg, name))
        assert backends(pg, name) == []
    finally:
        component.close(None)
