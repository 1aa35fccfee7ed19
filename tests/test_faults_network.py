"""Keep working through network faults: the real server, behind a proxy that misbehaves.

Each test puts :class:`tests.proxy.FaultProxy` between the component and the test server and
then takes the network away in one way or another: the server looks down (connection
refused), the network swallows everything (blackhole), or the connections are cut. Each test
prints what it measured (``pytest -s`` shows it) and records it with ``record_property``.

Every wait is bounded: checkouts run in a helper thread joined with a deadline, so a checkout
that blocks is reported as such instead of hanging the suite, and every test has a
``pytest.mark.timeout``. Timing assertions are generous upper bounds only ("returned within
its timeout plus a margin"), never speed expectations.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from pip_services4_commons.errors import ConnectionException

from pip_postgres import CheckoutTimeout, PostgresConnection

from .conftest import Server, backends, base_config
from .proxy import FaultProxy

pytestmark = pytest.mark.slow

#: Slack on top of a configured timeout before a wait counts as "hung": thread scheduling,
#: a busy machine, the proxy's polling. Generous on purpose; it proves "returns", not "fast".
MARGIN = 2.0

#: The options of the "server away" tests (sync and async): checkouts of 1 s, every checkout
#: validated, a pool of 1 to 2.
#: Options of the blackholed-network checkout tests, sync and async: short timeouts, a pool
#: of two, validation after 200 ms idle.
BLACKHOLED: dict[str, Any] = {
    "options__connect_timeout": 2000,
    "options__reconnect_timeout": 2000,
    "options__validation_bypass": 200,
    "options__min_pool_size": 1,
    "options__max_pool_size": 2,
    "options__shutdown_timeout": 2000,
}
SERVER_AWAY: dict[str, Any] = {
    "options__connect_timeout": 1000,
    "options__reconnect_timeout": 2000,
    "options__validation_bypass": 0,
    "options__min_pool_size": 1,
    "options__max_pool_size": 2,
    "options__shutdown_timeout": 2000,
}

Record = Callable[[str, object], None]


@dataclass
class Outcome:
    """What a bounded call did: how long it took, what it raised, whether it was still stuck."""

    elapsed: float
    error: BaseException | None = None
    hung: bool = False
    stack: str = ""
    thread: threading.Thread | None = None


def bounded(call: Callable[[], object], limit: float) -> Outcome:
    """Run ``call`` in a daemon thread and wait at most ``limit`` seconds for it.

    If it is still running then, the outcome is ``hung`` and carries the thread's current
    stack (the evidence of where it blocked); the caller must unblock it (e.g. ``proxy.cut()``)
    and join ``outcome.thread``.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            call()
        except BaseException as error:  # handed to the test
            result["error"] = error
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run, name="bounded-call", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident or -1)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "?"
        return Outcome(time.monotonic() - start, hung=True, stack=stack, thread=thread)
    return Outcome(result.get("elapsed", time.monotonic() - start), result.get("error"))


def report(record: Record, name: str, **measured: object) -> None:
    """Print ``measured: ...`` and attach each value to the test's report."""
    text = " ".join(
        f"{key}={value:.2f}s" if isinstance(value, float) else f"{key}={value}"
        for key, value in measured.items()
    )
    print(f"\n[{name}] measured: {text}")
    for key, value in measured.items():
        record(key, value)


def select_one(component: PostgresConnection, timeout: float | None = None) -> int:
    """Check a connection out and run a query on it; return the backend's pid."""
    with component.connection(timeout=timeout) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(row[0])


def wait_until(condition: Callable[[], bool], limit: float) -> bool:
    """Poll ``condition`` every 50 ms for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    for _ in range(int(limit / 0.05) + 1):
        if condition():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return condition()


@pytest.fixture
def proxy(pg: Server) -> Iterator[FaultProxy]:
    with FaultProxy(pg.host, pg.port) as running:
        yield running


@pytest.fixture
def opened(pg: Server, proxy: FaultProxy) -> Iterator[Callable[..., PostgresConnection]]:
    """``opened(**options)``: a component opened through the proxy, closed after the test.

    It is closed with the proxy forwarding again, so that a test that failed midway does not
    leave close() to fight a blackholed network.
    """
    components: list[PostgresConnection] = []

    def open_(**extra: Any) -> PostgresConnection:
        component = PostgresConnection()
        component.configure(base_config(pg, connection__port=proxy.port, **extra))
        components.append(component)
        component.open(None)
        return component

    try:
        yield open_
    finally:
        proxy.restore()
        for component in components:
            component.close(None)


@pytest.mark.timeout(60)
def test_proxy_modes(pg: Server, proxy: FaultProxy) -> None:
    """The proxy itself: forwards, refuses on the same port, blackholes, cuts, restores."""
    conninfo = pg.conninfo(host=proxy.host, port=proxy.port, connect_timeout=2)
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert proxy.connections == 1
        proxy.cut()
        assert proxy.connections == 0
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    port = proxy.port
    proxy.refuse()
    assert "refused" in connect_error(conninfo).lower()
    proxy.blackhole()
    assert proxy.port == port
    start = time.monotonic()
    assert "timeout" in connect_error(conninfo).lower()
    assert time.monotonic() - start < 2 + MARGIN
    # The blackholed client gave up and closed; the proxy noticed and dropped it.
    assert wait_until(lambda: proxy.connections == 0, 2.0)
    proxy.restore()
    assert proxy.port == port
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
        proxy.stall()  # this connection goes silent, new ones work
        with psycopg.connect(conninfo) as other:
            assert other.execute("SELECT 3").fetchone() == (3,)
        # libpq's blocking calls hold the GIL (the proxy's threads could not run): poll.
        pgconn = conn.pgconn
        pgconn.send_query(b"SELECT 4")
        pgconn.flush()
        time.sleep(0.3)
        pgconn.consume_input()
        assert pgconn.is_busy()  # no answer while stalled
        proxy.restore()

        def answered() -> bool:
            pgconn.consume_input()
            return not pgconn.is_busy()

        assert wait_until(answered, 2.0)
        results = []
        for _ in range(5):  # the answer, then None
            if (result := pgconn.get_result()) is None:
                break
            results.append(result.get_value(0, 0))
        assert results == [b"4"]  # the answer flowed again
    assert wait_until(lambda: proxy.connections == 0, 2.0)


@pytest.mark.timeout(60)
def test_delaying_proxy_forwards_everything_in_order(pg: Server, record_property: Record) -> None:
    """With a delay (the benchmark's latency mode), data still flows whole and in order.

    A pipeline puts many messages in flight in both directions at once, and a large result
    arrives in many chunks: every chunk waits in the proxy's queue, none is lost or reordered.
    """
    with FaultProxy(pg.host, pg.port, delay=0.002) as delayed:
        conninfo = pg.conninfo(host=delayed.host, port=delayed.port, connect_timeout=5)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            start = time.monotonic()
            assert conn.execute("SELECT 1").fetchone() == (1,)
            round_trip = time.monotonic() - start
            with conn.pipeline():
                cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(50)]
            assert [cursor.fetchone() for cursor in cursors] == [(i,) for i in range(50)]
            rows = conn.execute("SELECT repeat('x', 100) || i FROM generate_series(1, 20000) i")
            assert [row[0] for row in rows] == [f"{'x' * 100}{i}" for i in range(1, 20001)]
    record_property("round_trip_ms", round(round_trip * 1000, 2))
    print(f"measured: one round trip through a 2 ms-each-way proxy took {round_trip * 1e3:.1f} ms")


def connect_error(conninfo: str) -> str:
    """The error of a connection attempt ("" if it connected), its socket closed.

    psycopg keeps a timed-out attempt's socket open until the garbage collector frees it (its
    exception's traceback and the frame that raised it refer to each other): collect, so that
    the socket is closed when this returns.
    """
    message = ""
    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError as error:
        message = str(error)
    gc.collect()
    return message


@pytest.mark.timeout(60)
def test_server_away_checkouts_fail_clearly_then_pool_recovers_by_itself(
    proxy: FaultProxy, opened: Callable[..., PostgresConnection], record_property: Record
) -> None:
    """While the server is down, checkouts fail with a clear error within the configured
    timeout, never hang; when it is back, the pool recovers by itself, without close()/open().
    """
    connect_timeout = 1.0
    component = opened(**SERVER_AWAY)
    for _ in range(5):
        select_one(component)

    proxy.refuse()
    down: list[Outcome] = []
    for _ in range(3):
        outcome = bounded(lambda: select_one(component), connect_timeout + MARGIN + 3)
        if outcome.hung:
            proxy.restore()
            assert outcome.thread is not None
            outcome.thread.join(10)
            pytest.fail(
                f"a checkout with the server away blocked for {outcome.elapsed:.1f} s "
                f"(connect_timeout {connect_timeout} s):\n{outcome.stack}"
            )
        down.append(outcome)
    errors = [outcome.error for outcome in down]
    assert all(isinstance(error, CheckoutTimeout) for error in errors), errors
    slowest = max(outcome.elapsed for outcome in down)
    assert slowest <= connect_timeout + MARGIN
    message = str(errors[-1])
    assert "max_pool_size=2" in message
    assert "after waiting 1.00 s" in message
    assert "the last connection attempt failed" in message
    assert "refused" in message.lower()

    pool = component.get_connection()
    assert pool is not None
    open_when_restored = pool.get_stats().get("pool_size", 0)
    proxy.restore()
    restored = time.monotonic()
    failures = 0
    recovery: float | None = None
    for _ in range(40):  # at most ~40 checkouts of 1 s, and 15 s in all
        if time.monotonic() - restored > 15:
            break
        try:
            select_one(component, timeout=1.0)
        except CheckoutTimeout:
            failures += 1
            continue
        recovery = time.monotonic() - restored
        break
    report(
        record_property,
        "server away",
        checkouts_down=len(down),
        slowest_failed_checkout=slowest,
        pool_size_when_restored=open_when_restored,
        failed_after_restore=failures,
        recovery=recovery if recovery is not None else "none",
        error=message,
    )
    assert recovery is not None, "the pool did not recover within 15 s of the server's return"
    assert recovery <= 10.0
    # Back in shape: every checkout works, with no close()/open() in between.
    assert component.is_open()
    for _ in range(10):
        select_one(component)


@pytest.mark.timeout(60)
def test_blackholed_network_open_fails_within_connect_timeout(
    pg: Server, proxy: FaultProxy, record_property: Record
) -> None:
    """New connections time out per connect_timeout: open() fails, it does not hang.

    libpq counts connect_timeout in whole seconds, at least 2 (the component rounds up), and
    psycopg applies it to each address it tries. open() makes one probe connection, to one
    address, so it should fail after about 2 s; the bound allows twice connect_timeout (for
    the rounding, or a second address) plus the margin.
    """
    proxy.blackhole()
    component = PostgresConnection()
    component.configure(base_config(pg, connection__port=proxy.port, options__connect_timeout=2000))
    outcome = bounded(lambda: component.open(None), 2 * 2.0 + MARGIN + 5)
    try:
        if outcome.hung:
            proxy.cut()
            assert outcome.thread is not None
            outcome.thread.join(10)
            pytest.fail(f"open() blocked for {outcome.elapsed:.1f} s:\n{outcome.stack}")
        report(
            record_property,
            "blackhole open",
            open_failed_after=outcome.elapsed,
            error=f"{type(outcome.error).__name__}: {outcome.error}",
        )
        assert isinstance(outcome.error, ConnectionException), outcome.error
        assert "timeout" in str(outcome.error).lower()
        assert outcome.elapsed <= 2 * 2.0 + MARGIN
        assert not component.is_open()
    finally:
        proxy.restore()
        component.close(None)


@pytest.mark.timeout(60)
def test_blackholed_network_checkouts_time_out_never_hang(
    proxy: FaultProxy, opened: Callable[..., PostgresConnection], record_property: Record
) -> None:
    """On an open component, once the network swallows everything, no checkout waits past its
    timeout: connections idle past validation_bypass are validated, the validation cannot
    succeed, and the checkout ends with CheckoutTimeout.
    """
    connect_timeout = 2.0
    component = opened(**BLACKHOLED)
    for _ in range(3):
        select_one(component)
    proxy.blackhole()
    time.sleep(0.4)  # idle past validation_bypass: the next checkout validates

    outcomes: list[Outcome] = []
    for _ in range(2):
        outcome = bounded(lambda: select_one(component), connect_timeout + MARGIN + 3)
        outcomes.append(outcome)
        if outcome.hung:
            break
    hung = [outcome for outcome in outcomes if outcome.hung]
    if hung:
        # Unblock the stuck checkout: resetting its connection gives libpq an error.
        proxy.cut()
        assert hung[0].thread is not None
        hung[0].thread.join(10)
        unblocked = not hung[0].thread.is_alive()
        report(
            record_property,
            "blackhole checkout",
            checkout_hung_for=hung[0].elapsed,
            unblocked_by_cut=unblocked,
        )
        pytest.fail(
            f"a checkout on a blackholed network was still blocked after "
            f"{hung[0].elapsed:.1f} s, past its timeout of {connect_timeout} s "
            f"(unblocked only by resetting the connection: {unblocked}). "
            f"Where it blocked:\n{hung[0].stack}"
        )
    errors = [outcome.error for outcome in outcomes]
    slowest = max(outcome.elapsed for outcome in outcomes)
    pool = component.get_connection()
    assert pool is not None
    stats = pool.get_stats()
    # close() too returns in bounded time with the network still blackholed.
    closing = bounded(lambda: component.close(None), 2.0 + 2.0 + MARGIN + 5)
    if closing.hung:
        proxy.cut()
        assert closing.thread is not None
        closing.thread.join(10)
    report(
        record_property,
        "blackhole checkout",
        checkouts=len(outcomes),
        slowest_failed_checkout=slowest,
        validated=stats.get("connections_validated", "?"),
        broken=stats.get("connections_broken", "?"),
        close_while_blackholed=closing.elapsed,
        errors=[f"{type(error).__name__}: {error}" for error in errors],
    )
    assert all(isinstance(error, CheckoutTimeout) for error in errors), errors
    assert slowest <= connect_timeout + MARGIN
    assert not closing.hung, f"close() blocked on a blackholed network:\n{closing.stack}"
    assert closing.error is None
    assert closing.elapsed <= 2.0 + 2.0 + MARGIN


@pytest.mark.timeout(60)
def test_silently_dropped_idle_connections_cost_no_checkout_past_its_timeout(
    proxy: FaultProxy, opened: Callable[..., PostgresConnection], record_property: Record
) -> None:
    """A NAT gateway or firewall forgot the pool's idle connections: their packets go nowhere
    and nothing tells either end, while new connections work. No checkout waits past its
    timeout, and the pool replaces the silent connections by itself. A validation round trip
    gets only part of the checkout's timeout, so a checkout that meets a silent connection
    still has time to get a new one: callers see no error.
    """
    connect_timeout = 2.0
    size = 2
    component = opened(
        options__connect_timeout=2000,
        options__reconnect_timeout=2000,
        options__validation_bypass=200,
        options__min_pool_size=size,
        options__max_pool_size=size,
        options__shutdown_timeout=2000,
    )
    assert wait_until(lambda: proxy.connections == size, 5.0), proxy.connections
    proxy.stall()
    time.sleep(0.4)  # idle past validation_bypass: the next checkouts validate

    outcomes: list[Outcome] = []
    for _ in range(size + 3):
        outcome = bounded(lambda: select_one(component), connect_timeout + MARGIN + 3)
        if outcome.hung:
            proxy.cut()
            assert outcome.thread is not None
            outcome.thread.join(10)
            pytest.fail(
                f"a checkout blocked for {outcome.elapsed:.1f} s on a silent connection, past "
                f"its timeout of {connect_timeout} s. Where it blocked:\n{outcome.stack}"
            )
        outcomes.append(outcome)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    pool = component.get_connection()
    assert pool is not None
    stats = pool.get_stats()
    report(
        record_property,
        "stalled idle connections",
        checkouts=len(outcomes),
        errors=len(failed),
        slowest_checkout=max(outcome.elapsed for outcome in outcomes),
        failed_checkout_took=[round(outcome.elapsed, 2) for outcome in failed],
        validated=stats.get("connections_validated", "?"),
        broken=stats.get("connections_broken", "?"),
        first_error=f"{type(failed[0].error).__name__}: {failed[0].error}" if failed else "-",
    )
    assert all(isinstance(outcome.error, CheckoutTimeout) for outcome in failed), failed
    assert max(outcome.elapsed for outcome in outcomes) <= connect_timeout + MARGIN
    # The pool recovered by itself, and no caller saw the silent connections.
    assert failed == []
    assert stats["connections_broken"] == size


@pytest.mark.timeout(60)
def test_cut_connections_are_replaced_at_checkout_with_no_error(
    pg: Server,
    proxy: FaultProxy,
    opened: Callable[..., PostgresConnection],
    record_property: Record,
) -> None:
    """After the network cuts every connection of an idle pool, the next checkouts succeed:
    the broken connections are caught by validation at checkout and replaced.
    """
    application = f"faults-cut-{uuid.uuid4().hex[:8]}"
    size = 3
    component = opened(
        options__connect_timeout=5000,
        options__validation_bypass=100,
        options__min_pool_size=size,
        options__max_pool_size=size,
        options__application_name=application,
        options__shutdown_timeout=2000,
    )
    # The pool's connections are open (the probe connection of open() is gone).
    assert wait_until(lambda: proxy.connections == size, 5.0), proxy.connections
    before = {pid for pid, _ in backends(pg, application)}
    assert len(before) == size

    proxy.cut()
    assert proxy.connections == 0
    # The server saw the cut too: the old sessions end.
    assert wait_until(lambda: not before & {pid for pid, _ in backends(pg, application)}, 5.0)
    time.sleep(0.3)  # idle past validation_bypass

    errors: list[BaseException] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def work(count: int) -> None:
        for _ in range(count):
            try:
                pid = select_one(component)
            except Exception as error:  # counted, then asserted on
                with lock:
                    errors.append(error)
            else:
                with lock:
                    pids.add(pid)

    start = time.monotonic()
    first = bounded(lambda: work(1), 5.0 + MARGIN)
    first_checkout = time.monotonic() - start
    assert not first.hung, first.stack
    # Then concurrent checkouts, each thread bounded.
    threads = [threading.Thread(target=work, args=(10,), daemon=True) for _ in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "checkouts blocked after a cut"
    pool = component.get_connection()
    assert pool is not None
    stats = pool.get_stats()
    report(
        record_property,
        "cut",
        errors=len(errors),
        checkouts=1 + 10 * size,
        first_checkout_after_cut=first_checkout,
        validated=stats.get("connections_validated", "?"),
        broken=stats.get("connections_broken", "?"),
        new_backends=len(pids),
        old_backends_reused=len(pids & before),
    )
    assert errors == [], errors
    assert not pids & before
    assert proxy.connections <= size
