"""Faults on the server side, exhaustion, dirty connections, leaks, closing under load,
lifetime, and generated bad input. Every loop is bounded in count and time; each test
prints what it measured (run with -s to see it)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pip_services4_commons.errors import ConfigException, ConnectionException
from pip_services4_components.config import ConfigParams
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import PoolClosed

from pip_postgres import CheckoutTimeout, PostgresConnection, PostgresPool
from pip_postgres.checkout import (
    SCREEN_NO,
    CheckoutMarks,
    cannot_change_session,
    changes_session,
    screen_statement,
    transaction_attributes_changed,
)
from pip_postgres.embedded import EmbeddedPostgres

from .conftest import LogCapture, Server, admin_query, backends, base_config


def report(**measured: Any) -> None:
    print("measured:", ", ".join(f"{key}={value}" for key, value in measured.items()))


def opened(pg: Server, references: Any = None, **options: Any) -> PostgresConnection:
    component = PostgresConnection()
    component.configure(base_config(pg, **{f"options__{k}": v for k, v in options.items()}))
    if references is not None:
        component.set_references(references)
    component.open(None)
    return component


def pool_of(component: PostgresConnection) -> PostgresPool:
    pool = component.get_connection()
    assert pool is not None
    return pool


def app_name() -> str:
    return f"rel-{uuid.uuid4().hex[:8]}"


def fill(component: PostgresConnection, count: int) -> set[int]:
    """Check ``count`` connections out at once, so that the pool holds that many; their pids."""
    held = [component.connection(timeout=10) for _ in range(count)]
    pids = {checkout.__enter__().info.backend_pid for checkout in held}
    for checkout in held:
        checkout.__exit__(None, None, None)
    return pids


def run_checkouts(component: PostgresConnection, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    for _ in range(count):
        try:
            with component.connection(timeout=10) as conn:
                conn.execute("SELECT 1")
        except Exception as error:
            errors.append(error)
    return errors


# 1. Stale connections -------------------------------------------------------------------


def test_terminated_backends_are_replaced_at_checkout(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=4, min_pool_size=4, validation_bypass=100,
                       application_name=name)  # fmt: skip
    try:
        old = fill(component, 4)
        admin_query(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = %s", (name,))  # fmt: skip
        time.sleep(0.3)  # idle past the 100 ms bypass window
        errors = run_checkouts(component, 20)
        stats = pool_of(component).get_stats()
        report(errors=len(errors), broken=stats["connections_broken"])
        assert errors == []
        assert stats["connections_broken"] >= 1
        assert not old & {pid for pid, _ in backends(pg, name)}
    finally:
        component.close(None)


@pytest.mark.slow
def test_server_restart_while_idle(pg: Server) -> None:
    if not isinstance(pg, EmbeddedPostgres):
        pytest.skip("restarting needs the embedded server")
    component = opened(pg, max_pool_size=4, min_pool_size=2, validation_bypass=100)
    try:
        fill(component, 4)
        started = time.monotonic()
        pg.restart()
        errors = run_checkouts(component, 20)
        report(errors=len(errors), restart_to_done_s=round(time.monotonic() - started, 2))
        assert errors == []
    finally:
        component.close(None)


def test_recently_returned_connection_skips_validation(pg: Server) -> None:
    component = opened(pg, max_pool_size=1, validation_bypass=60_000)
    try:
        pool = pool_of(component)
        for _ in range(50):
            with component.connection() as conn:
                conn.execute("SELECT 1")
        # Within the bypass window: no validation round trip at all.
        assert pool.get_stats()["connections_validated"] == 0
    finally:
        component.close(None)


def test_bypass_window_zero_validates_every_checkout(pg: Server) -> None:
    component = opened(pg, max_pool_size=1, validation_bypass=0)
    try:
        for _ in range(5):
            with component.connection() as conn:
                conn.execute("SELECT 1")
        assert pool_of(component).get_stats()["connections_validated"] == 5
    finally:
        component.close(None)


# 4. Exhaustion ---------------------------------------------------------------------------


def _hammer(
    component: PostgresConnection, threads: int, timeout: float
) -> tuple[int, list[BaseException]]:
    ok = [0]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            with component.connection(timeout=timeout) as conn:
                conn.execute("SELECT pg_sleep(0.05)")
            with lock:
                ok[0] += 1
        except BaseException as error:
            with lock:
                errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout + 30)
    assert not any(worker.is_alive() for worker in workers), "a checkout hung"
    return ok[0], errors


def test_exhaustion_with_enough_timeout_all_succeed(pg: Server) -> None:
    component = opened(pg, max_pool_size=4)
    try:
        started = time.monotonic()
        ok, errors = _hammer(component, 64, timeout=30)
        report(ok=ok, errors=len(errors), seconds=round(time.monotonic() - started, 2))
        assert (ok, errors) == (64, [])
        stats = pool_of(component).get_stats()
        assert stats["pool_available"] == stats["pool_size"] <= 4
    finally:
        component.close(None)


def test_exhaustion_with_short_timeout_losers_get_a_clear_error(pg: Server) -> None:
    component = opened(pg, max_pool_size=4)
    try:
        ok, errors = _hammer(component, 64, timeout=0.1)
        report(ok=ok, timeouts=len(errors))
        assert ok >= 4 and errors
        assert all(isinstance(error, CheckoutTimeout) for error in errors)
        message = str(errors[0])
        assert "max_pool_size=4" in message and "after waiting 0.10 s" in message
        # Afterwards every connection is back in the pool and the pool still works.
        stats = pool_of(component).get_stats()
        assert stats["pool_available"] == stats["pool_size"]
        assert run_checkouts(component, 4) == []
    finally:
        component.close(None)


# 5. Dirty connections ------------------------------------------------------------------


@pytest.fixture
def single(pg: Server) -> Iterator[PostgresConnection]:
    """A pool of exactly one connection, so that every checkout gets the same one."""
    component = opened(pg, max_pool_size=1, min_pool_size=1, application_name=app_name())
    try:
        yield component
    finally:
        component.close(None)


def test_exception_inside_checkout_is_rolled_back(single: PostgresConnection) -> None:
    with pytest.raises(ZeroDivisionError), single.connection() as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS probe (v int)")
        1 / 0  # noqa: B018
    with single.connection() as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT to_regclass('pg_temp.probe')").fetchone() == (None,)


def test_failed_transaction_does_not_leak(single: PostgresConnection) -> None:
    with single.connection() as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    with single.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_session_settings_are_reset(single: PostgresConnection) -> None:
    with single.connection() as conn:
        default = conn.execute("SHOW statement_timeout").fetchone()
        conn.execute("SET statement_timeout = '4321ms'")
        conn.execute("SET search_path = pg_catalog")
        pid = conn.info.backend_pid
    with single.connection() as conn:
        assert conn.info.backend_pid == pid  # the same connection, cleaned
        assert conn.execute("SHOW statement_timeout").fetchone() == default
        assert conn.execute("SHOW search_path").fetchone() != ("pg_catalog",)


def test_settings_set_in_a_committed_transaction_block_are_reset(
    single: PostgresConnection,
) -> None:
    with single.connection() as conn:
        with conn.transaction():
            conn.execute("SET statement_timeout = '4321ms'")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with single.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() != ("4321ms",)


def test_application_name_survives_reset(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=1, application_name=name)
    try:
        for _ in range(2):
            with component.connection() as conn:
                conn.execute("SET work_mem = '7MB'")
                assert conn.execute("SHOW application_name").fetchone() == (name,)
    finally:
        component.close(None)


@pytest.mark.parametrize(
    "statement",
    [
        "SET statement_timeout = '4321ms'",
        "select 1; set statement_timeout = '4321ms'",
        "-- a comment\nSET statement_timeout TO 4321",
        "SELECT set_config('statement_timeout', '4321', false)",
    ],
)
@pytest.mark.parametrize("autocommit", ["false", "true"])
def test_auto_reset_catches_the_ways_to_change_a_setting(
    pg: Server, statement: str, autocommit: str
) -> None:
    component = opened(pg, max_pool_size=1, autocommit=autocommit)
    try:
        with component.connection() as conn:
            conn.execute(statement)
            assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
        with component.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() != ("4321ms",)
    finally:
        component.close(None)


def test_composed_set_is_caught_by_its_command_status(single: PostgresConnection) -> None:
    with single.connection() as conn:
        conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier("work_mem"), "7MB"))
    with single.connection() as conn:
        assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)


def test_reset_always_catches_changes_inside_functions(pg: Server) -> None:
    change = "DO $$ BEGIN PERFORM set_config('work_mem', '7MB', false); END $$"
    component = opened(pg, max_pool_size=1, reset_session="always")
    try:
        with component.connection() as conn:
            conn.execute(change)
        with component.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)
    finally:
        component.close(None)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "UPDATE probe\n   SET v = v + 1\n WHERE v > 0",  # SET on a line of its own
        "SELECT 'set' AS reset, 1 AS offset_set",
    ],
)
def test_reads_and_writes_cost_no_reset(pg: Server, statement: str) -> None:
    # A statement that changes no setting does not trigger RESET ALL: the setting made behind
    # the tracker's back (straight through libpq) survives, which shows that no reset was sent.
    component = opened(pg, max_pool_size=1)
    try:
        with component.connection() as conn:
            conn.pgconn.exec_(b"SET work_mem = '7MB'")
            conn.pgconn.exec_(b"CREATE TEMP TABLE IF NOT EXISTS probe (v int)")
            conn.execute(statement)
        with component.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
    finally:
        component.close(None)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SET work_mem = '7MB'", True),
        ("  set\twork_mem TO 7000", True),
        ("RESET work_mem", True),
        ("Reset All", True),
        (b"SET work_mem = '7MB'", True),
        ("SELECT 1;\n  SET work_mem = '7MB'", True),
        ("SELECT pg_catalog.SET_CONFIG('work_mem', '7MB', false)", True),
        ("SELECT 1", False),
        ("UPDATE t\nSET v = 1", False),
        ("UPDATE t SET v = 1; SELECT v FROM t", False),
        ("SELECT settings, offset_set FROM t", False),
        ("SELECT 1; settings", False),
        (b"INSERT INTO t VALUES (1)", False),
        (sql.SQL("SET work_mem = '7MB'"), False),  # composed: its command status tells
    ],
)
def test_what_looks_like_a_session_change(query: object, expected: bool) -> None:
    assert changes_session(query) is expected


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="sSeEtT ;_\n", max_size=12),  # near misses of the keywords
        st.binary(),
    )
)
def test_the_cursors_first_screen_agrees_with_the_full_one(query: str | bytes) -> None:
    """The cursors ask :func:`cannot_change_session` first, and skip the full screen when it
    says so: it may say so only of a statement the full screen finds harmless."""
    marks = CheckoutMarks()
    if cannot_change_session(marks, query):
        assert screen_statement(query) == SCREEN_NO
    for statement in ("SET work_mem = '7MB'", "reset all", "SELECT set_config('a.b', '1', 0)"):
        assert not cannot_change_session(marks, statement)
    marks.session_changed = True  # known changed: nothing more to learn
    assert cannot_change_session(marks, query)


def test_pool_refuses_an_unknown_reset_mode() -> None:
    with pytest.raises(ValueError, match="reset_session must be auto, always or never"):
        PostgresPool("host=127.0.0.1", kwargs={}, validation_bypass=1.0, reset_session="often")


def test_a_long_statement_that_changes_nothing_costs_no_reset(
    single: PostgresConnection,
) -> None:
    # Its text contains "set" (in "offset"), so the whole screen runs over it.
    values = ", ".join(f"({i}, 'offset {i}')" for i in range(10_000))
    with single.connection() as conn:
        conn.pgconn.exec_(b"SET work_mem = '7MB'")
        rows = conn.execute(f"SELECT count(*) FROM (VALUES {values}) AS v(a, b)").fetchone()
    assert rows == (10_000,)
    with single.connection() as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
        conn.execute("RESET work_mem")


def test_reset_never_leaves_settings(pg: Server) -> None:
    component = opened(pg, max_pool_size=1, reset_session="never")
    try:
        with component.connection() as conn:
            conn.execute("SET work_mem = '7MB'")
        with component.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
    finally:
        component.close(None)


@pytest.mark.parametrize("autocommit", ["false", "true"])
def test_putconn_resets_the_session_too(pg: Server, autocommit: str) -> None:
    # Code that uses the pool directly, as pip-services persistence does, gets the same
    # cleaning as a connection() block: getconn()/putconn() and psycopg_pool's connection().
    component = opened(pg, max_pool_size=1, autocommit=autocommit)
    pool = pool_of(component)
    try:
        conn = pool.getconn()
        conn.execute("SET work_mem = '7MB'")
        conn.commit()
        pool.putconn(conn)
        with pool.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)
            conn.execute("SET statement_timeout = '4321ms'")
        conn = pool.getconn()
        try:
            assert conn.execute("SHOW statement_timeout").fetchone() != ("4321ms",)
        finally:
            pool.putconn(conn)
    finally:
        component.close(None)


def test_putconn_in_a_transaction_rolls_back_and_resets(pg: Server) -> None:
    component = opened(pg, max_pool_size=1, reset_session="always")
    pool = pool_of(component)
    try:
        conn = pool.getconn()
        conn.execute("SELECT set_config('work_mem', '7MB', false)")
        conn.commit()
        conn.execute("CREATE TEMP TABLE probe_rollback (v int)")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        pool.putconn(conn)
        with component.connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)
            found = conn.execute("SELECT to_regclass('pg_temp.probe_rollback')").fetchone()
            assert found == (None,)
    finally:
        component.close(None)


def test_connection_attributes_are_restored(single: PostgresConnection) -> None:
    with single.connection() as conn:
        tracking = conn.cursor_factory
        conn.autocommit = True
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        conn.row_factory = dict_row  # type: ignore[assignment]
        conn.cursor_factory = psycopg.ClientCursor
    with single.connection() as conn:
        assert conn.autocommit is False
        assert conn.read_only is None
        assert conn.isolation_level is None
        assert conn.execute("SELECT 1 AS one").fetchone() == (1,)
        assert conn.cursor_factory is tracking
        conn.execute("SET work_mem = '7MB'")  # still tracked: reset at the end
    with single.connection() as conn:
        assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("autocommit", True),
        ("read_only", False),
        ("isolation_level", psycopg.IsolationLevel.READ_COMMITTED),
        ("deferrable", False),
    ],
)
def test_each_transaction_attribute_alone_is_restored(
    single: PostgresConnection, name: str, value: object
) -> None:
    """Each one alone, set to a value a server would not tell from the default."""
    with single.connection() as conn:
        pid = conn.info.backend_pid
        setattr(conn, name, value)
    with single.connection() as conn:
        assert conn.info.backend_pid == pid  # the same connection, not a new one
        assert getattr(conn, name) == (False if name == "autocommit" else None)


def test_attribute_check_falls_back_to_the_public_properties() -> None:
    """A connection class that keeps the four attributes elsewhere is asked by property."""

    class Elsewhere:
        autocommit = False
        isolation_level: object = None
        read_only: object = None
        deferrable: object = None

    conn = Elsewhere()
    assert not transaction_attributes_changed(conn, False)
    assert transaction_attributes_changed(conn, True)
    conn.deferrable = True
    assert transaction_attributes_changed(conn, False)


def test_getconn_putconn_with_open_transaction_is_cleaned(single: PostgresConnection) -> None:
    pool = pool_of(single)
    conn = pool.getconn()
    conn.execute("SELECT 1")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    pool.putconn(conn)
    with single.connection() as again:
        assert again.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_no_idle_in_transaction_left_on_the_server(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=3, application_name=name)
    try:
        for index in range(30):
            with pytest.raises((ValueError, psycopg.Error)), component.connection() as conn:
                conn.execute("SELECT 1")
                if index % 2:
                    conn.execute("SELECT 1 / 0")
                raise ValueError("caller failure")
        states = [state for _, state in backends(pg, name)]
        report(backends=len(states), states=sorted(set(states)))
        assert "idle in transaction" not in states
        assert "idle in transaction (aborted)" not in states
    finally:
        component.close(None)


# 6. Leak detection -----------------------------------------------------------------------


def test_leak_is_reported_once_with_the_checkout_stack(pg: Server, logs: LogCapture) -> None:
    component = opened(pg, logs.references, max_pool_size=2, leak_detection_threshold=200)
    try:
        with component.connection():
            time.sleep(0.8)
        with component.connection():  # returned in time: not a leak
            pass
        time.sleep(0.3)
        text = logs.text()
        report(leaks=text.count("Connection leak suspected"))
        assert text.count("Connection leak suspected") == 1
        assert "test_leak_is_reported_once_with_the_checkout_stack" in text
        assert pool_of(component).get_stats()["leaks_reported"] == 1
    finally:
        component.close(None)


def test_no_leak_detection_by_default(component: PostgresConnection) -> None:
    with component.connection() as conn:
        assert conn.checkout_stack is None  # type: ignore[attr-defined]


# 7. Closing under load -----------------------------------------------------------------


@pytest.mark.slow
def test_close_under_load_is_bounded_and_leaves_nothing(pg: Server) -> None:
    name = app_name()
    component = opened(pg, max_pool_size=2, shutdown_timeout=500, application_name=name)
    holders_in = threading.Barrier(3, timeout=10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def hold() -> None:
        try:
            with component.connection() as conn:
                holders_in.wait()
                conn.execute("SELECT pg_sleep(30)")
            outcome = "finished"
        except BaseException as error:
            outcome = type(error).__name__
        with lock:
            outcomes.append(outcome)

    def wait_for_one() -> None:
        try:
            with component.connection(timeout=30):
                outcome = "got one"
        except BaseException as error:
            outcome = type(error).__name__
        with lock:
            outcomes.append(outcome)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    waiters = [threading.Thread(target=wait_for_one) for _ in range(3)]
    for thread in holders:
        thread.start()
    holders_in.wait()
    for thread in waiters:
        thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    component.close(None)
    took = time.monotonic() - started
    for thread in holders + waiters:
        thread.join(timeout=15)
    report(close_s=round(took, 2), outcomes=sorted(outcomes))
    assert took < 10
    assert not any(thread.is_alive() for thread in holders + waiters)
    assert outcomes.count(PoolClosed.__name__) == 3
    assert all(outcome != "finished" for outcome in outcomes)
    deadline = time.monotonic() + 5
    while backends(pg, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends(pg, name) == []


# 8. Lifetime ---------------------------------------------------------------------------


@pytest.mark.slow
def test_connections_past_max_lifetime_are_replaced_unnoticed(pg: Server) -> None:
    component = opened(pg, max_pool_size=2, max_lifetime=300, validation_bypass=0)
    try:
        pids: set[int] = set()
        errors: list[BaseException] = []
        deadline = time.monotonic() + 2.0
        for _ in range(2000):
            if time.monotonic() > deadline:
                break
            try:
                with component.connection(timeout=10) as conn:
                    pids.add(conn.info.backend_pid)
            except Exception as error:
                errors.append(error)
            time.sleep(0.01)
        stats = pool_of(component).get_stats()
        report(errors=len(errors), backends_seen=len(pids), expired=stats["connections_expired"])
        assert errors == []
        assert len(pids) >= 4
    finally:
        component.close(None)


# 9. Bad input, generated -----------------------------------------------------------------

_junk = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(
        ["", " ", "0", "-1", "1e309", "nan", "10", "٣", "true", "5432", "\uff11\uff10"]
    ),
)
_option_keys = [
    "max_pool_size", "min_pool_size", "connect_timeout", "idle_timeout", "max_lifetime",
    "max_waiting", "autocommit", "reset_session", "validation_bypass",
    "leak_detection_threshold", "reconnect_timeout", "shutdown_timeout", "application_name",
    "ssl_mode",
]  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    options=st.dictionaries(st.sampled_from(_option_keys), _junk, max_size=6),
    port=st.one_of(st.just("SERVER"), _junk),
    database=st.one_of(st.just("SERVER"), st.none(), st.text(max_size=8)),
    drop=st.sets(st.sampled_from(["connection", "credential", "options"])),
)
def test_generated_configurations(
    pg: Server, options: dict[str, Any], port: Any, database: Any, drop: set[str]
) -> None:
    values: dict[str, Any] = {
        # Only loopback hosts: a generated host name would be looked up in the DNS.
        "connection.host": pg.host,
        "connection.port": pg.port if port == "SERVER" else port,
        "connection.database": pg.database if database == "SERVER" else database,
        "credential.username": pg.user,
        "credential.password": pg.password,
    }
    values.update({f"options.{key}": value for key, value in options.items()})
    values = {k: v for k, v in values.items() if k.split(".")[0] not in drop}
    # Bound every wait, so that a valid but unreachable configuration fails fast.
    if "options" not in drop:
        values.setdefault("options.connect_timeout", 2000)
    # Pointed at the test server with its credentials, a configuration either works or is
    # refused by configure()/open() as invalid; only one that points elsewhere (another port,
    # database or user), or demands SSL, may also be refused by the server.
    reaches_server = (
        port == "SERVER"
        and database == "SERVER"
        and not drop
        & {
            "connection",
            "credential",
        }
    )
    demands_ssl = str(options.get("ssl_mode")).strip() in ("require", "verify-ca", "verify-full")
    if reaches_server and not demands_ssl:
        expected: tuple[type[Exception], ...] = (ConfigException,)
    else:
        expected = (ConfigException, ConnectionException)
    component = PostgresConnection()
    started = time.monotonic()
    try:
        component.configure(ConfigParams.from_value(values))
        component.open(None)
    except expected:
        assert not component.is_open()
    else:
        try:
            with component.connection(timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            component.close(None)
    assert time.monotonic() - started < 30


def test_idle_connections_are_served_last_in_first_out(pg: Server) -> None:
    # Relies on psycopg_pool's idle queue; this fails if a psycopg_pool release changes it.
    component = opened(pg, max_pool_size=3, min_pool_size=3, idle_order="lifo")
    try:
        first, second = component.connection(), component.connection()
        pid_first = first.__enter__().info.backend_pid
        pid_second = second.__enter__().info.backend_pid
        first.__exit__(None, None, None)
        second.__exit__(None, None, None)
        for _ in range(5):
            with component.connection() as conn:
                assert conn.info.backend_pid == pid_second
        assert pid_first != pid_second
    finally:
        component.close(None)


def test_idle_connections_are_served_first_in_first_out_when_asked(pg: Server) -> None:
    # psycopg_pool's own order: every checkout gets the connection idle longest, so that
    # successive checkouts go round all the connections of the pool.
    component = opened(pg, max_pool_size=3, min_pool_size=3, idle_order="fifo")
    try:
        assert pool_of(component).idle_order == "fifo"
        pids = []
        for _ in range(6):
            with component.connection() as conn:
                pids.append(conn.info.backend_pid)
        assert len(set(pids[:3])) == 3
        assert pids[3:] == pids[:3]
    finally:
        component.close(None)


@pytest.mark.parametrize("order", ["lifo", "fifo"])
def test_idle_order_decides_how_often_a_steady_load_pays_validation(pg: Server, order: str) -> None:
    # One checkout every 0.1 s on a pool of 8, a bypass window of 0.6 s: LIFO reuses the
    # connection returned 0.1 s ago, FIFO the one returned 8 checkouts (at least 0.8 s) ago.
    component = opened(
        pg, max_pool_size=8, min_pool_size=8, validation_bypass=600, idle_order=order
    )
    try:

        def steady(checkouts: int) -> int:
            before = pool_of(component).get_stats()["connections_validated"]
            for _ in range(checkouts):
                time.sleep(0.1)
                with component.connection() as conn:
                    conn.execute("SELECT 1")
            return pool_of(component).get_stats()["connections_validated"] - before

        fill(component, 8)
        steady(8)  # FIFO: now the 8 connections were returned 0.1 s apart, in turn
        validated = steady(8)
        report(order=order, validated=validated)
        if order == "fifo":
            assert validated == 8
        else:
            assert validated <= 1  # one stall of the machine over 0.5 s is forgiven
    finally:
        component.close(None)


def test_pool_refuses_an_unknown_idle_order() -> None:
    with pytest.raises(ValueError, match="idle_order"):
        PostgresPool("", kwargs={}, validation_bypass=1.0, idle_order="random")


@pytest.mark.slow
def test_restart_within_the_bypass_window_costs_no_error(pg: Server) -> None:
    # Within the window no round trip validates a connection, but the server's termination
    # notice makes each idle socket readable: a zero-timeout poll at checkout sees it, and the
    # connection is validated (and replaced) instead of handed out. Its failure also makes
    # every other idle connection suspect.
    if not isinstance(pg, EmbeddedPostgres):
        pytest.skip("restarting needs the embedded server")
    component = opened(pg, max_pool_size=4, min_pool_size=4, validation_bypass=600_000)
    try:
        fill(component, 4)
        pg.restart()
        errors = run_checkouts(component, 20)
        stats = pool_of(component).get_stats()
        report(errors=len(errors), broken=stats["connections_broken"])
        assert errors == []
        assert stats["connections_broken"] >= 2
    finally:
        component.close(None)
