"""PostgresConnection against the real test server: lifecycle, errors, checkouts."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from pip_services4_commons.errors import ConfigException, ConnectionException, InvalidStateException
from pip_services4_components.config import ConfigParams
from psycopg_pool import ConnectionPool, PoolTimeout, TooManyRequests

from pip_postgres import CheckoutTimeout, PostgresConnection

from .conftest import LogCapture, Server, admin_query, backends, base_config


def open_component(config: ConfigParams, references: Any = None) -> PostgresConnection:
    component = PostgresConnection()
    component.configure(config)
    if references is not None:
        component.set_references(references)
    component.open(None)
    return component


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_open_from_host_port_database_credential(component: PostgresConnection, pg: Server) -> None:
    assert component.is_open()
    pool = component.get_connection()
    assert isinstance(pool, ConnectionPool)
    assert component.get_database_name() == pg.database
    with component.connection() as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            pg.user,
            pg.database,
        )


def test_get_connection_pool_works_with_getconn_putconn(component: PostgresConnection) -> None:
    pool = component.get_connection()
    assert pool is not None
    conn = pool.getconn()
    try:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    finally:
        pool.putconn(conn)


def test_open_from_uri_only(pg: Server) -> None:
    uri = f"postgresql://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{pg.database}"
    component = open_component(ConfigParams.from_tuples("connection.uri", uri))
    try:
        with component.connection() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (pg.user,)
    finally:
        component.close(None)


def test_uri_parameters_are_honoured(pg: Server) -> None:
    uri = (
        f"postgresql://{pg.user}:{pg.password}@{pg.host}:{pg.port}/{pg.database}"
        "?application_name=from-uri&options=-c%20statement_timeout%3D1234"
    )
    component = open_component(ConfigParams.from_tuples("connection.uri", uri))
    try:
        with component.connection() as conn:
            assert conn.execute("SHOW application_name").fetchone() == ("from-uri",)
            assert conn.execute("SHOW statement_timeout").fetchone() == ("1234ms",)
    finally:
        component.close(None)


def test_options_reach_pool_and_session(pg: Server) -> None:
    component = open_component(
        base_config(
            pg,
            options__max_pool_size="3",
            options__min_pool_size="2",
            options__idle_timeout="20000",
            options__connect_timeout="1500",
            options__max_lifetime="120000",
            options__application_name="opts-test",
        )
    )
    try:
        pool = component.get_connection()
        assert pool is not None
        assert (pool.min_size, pool.max_size) == (2, 3)
        assert pool.max_idle == 20.0
        assert pool.timeout == 1.5
        assert pool.max_lifetime == 120.0
        with component.connection() as conn:
            assert conn.execute("SHOW application_name").fetchone() == ("opts-test",)
        # min_pool_size connections were opened before open() returned.
        assert len(backends(pg, "opts-test")) == 2
    finally:
        component.close(None)


def test_autocommit_option(pg: Server) -> None:
    component = open_component(base_config(pg, options__autocommit="true"))
    try:
        with component.connection() as conn:
            assert conn.autocommit is True
            conn.execute("SELECT 1")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        component.close(None)


def test_failover_to_second_host(pg: Server) -> None:
    dead = free_port()
    config = ConfigParams.from_value(
        {
            "connections.dead.host": "127.0.0.1",
            "connections.dead.port": dead,
            "connections.dead.database": pg.database,
            "connections.live.host": pg.host,
            "connections.live.port": pg.port,
            "connections.live.database": pg.database,
            "credential.username": pg.user,
            "credential.password": pg.password,
        }
    )
    component = open_component(config)
    try:
        with component.connection() as conn:
            assert conn.info.port == pg.port
    finally:
        component.close(None)


def test_commit_on_success_rollback_on_error(component: PostgresConnection) -> None:
    table = f"t_{uuid.uuid4().hex[:8]}"
    with component.connection() as conn:
        conn.execute(f"CREATE TABLE {table} (v int)")
    with component.connection() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (1)")
    with pytest.raises(RuntimeError), component.connection() as conn:
        conn.execute(f"INSERT INTO {table} VALUES (2)")
        raise RuntimeError("boom")
    with component.connection() as conn:
        assert conn.execute(f"SELECT v FROM {table}").fetchall() == [(1,)]
        conn.execute(f"DROP TABLE {table}")
    pool = component.get_connection()
    assert pool is not None
    assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"]


def test_connection_is_returned_after_error(pg: Server) -> None:
    component = open_component(
        base_config(pg, options__max_pool_size="1", options__min_pool_size="1")
    )
    try:
        for _ in range(3):
            with pytest.raises(psycopg.errors.DivisionByZero), component.connection() as conn:
                conn.execute("SELECT 1 / 0")
        with component.connection(timeout=2) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        component.close(None)


def test_sixteen_threads_on_a_pool_of_four(pg: Server) -> None:
    name = f"threads-{uuid.uuid4().hex[:6]}"
    component = open_component(
        base_config(pg, options__max_pool_size="4", options__application_name=name)
    )
    errors: list[BaseException] = []
    peak = [0]
    stop_at = time.monotonic() + 30

    def work() -> None:
        try:
            for _ in range(20):
                if time.monotonic() > stop_at:
                    return
                with component.connection(timeout=20) as conn:
                    conn.execute("SELECT pg_sleep(0.002)")
                    count = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                        (name,),
                    ).fetchone()
                    assert count is not None
                    peak[0] = max(peak[0], count[0])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert 1 <= peak[0] <= 4
        assert len(backends(pg, name)) <= 4
        pool = component.get_connection()
        assert pool is not None
        assert pool.get_stats()["requests_num"] >= 16 * 20
    finally:
        component.close(None)


def test_checkout_timeout_names_pool_size_and_wait(pg: Server) -> None:
    component = open_component(base_config(pg, options__max_pool_size="1"))
    try:
        with component.connection():
            started = time.monotonic()
            with pytest.raises(CheckoutTimeout) as info, component.connection(timeout=0.3):
                pass
            assert time.monotonic() - started < 5
        message = str(info.value)
        assert "max_pool_size=1" in message
        assert "0.30 s" in message
        assert isinstance(info.value, PoolTimeout)
    finally:
        component.close(None)


def test_open_twice_is_a_no_op_and_close_is_idempotent(pg: Server) -> None:
    component = open_component(base_config(pg))
    pool = component.get_connection()
    component.open(None)
    assert component.get_connection() is pool
    component.close(None)
    component.close(None)
    assert component.get_connection() is None
    assert not component.is_open()
    assert pool is not None and pool.closed


def test_reopen_after_close(pg: Server) -> None:
    component = open_component(base_config(pg))
    component.close(None)
    component.open(None)
    try:
        with component.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        component.close(None)


def test_checkout_when_closed_is_a_clear_error(pg: Server) -> None:
    component = PostgresConnection()
    component.configure(base_config(pg))
    with pytest.raises(InvalidStateException, match="not open"):
        component.connection()
    assert component.get_connection() is None


def _open_error(config: ConfigParams, references: Any = None) -> ConnectionException:
    component = PostgresConnection()
    component.configure(config)
    if references is not None:
        component.set_references(references)
    threads_before = threading.active_count()
    with pytest.raises(ConnectionException) as info:
        component.open(None)
    assert not component.is_open()
    assert component.get_connection() is None
    assert threading.active_count() <= threads_before
    return info.value


def test_wrong_password_fails_with_the_servers_reason(pg: Server) -> None:
    error = _open_error(base_config(pg, credential__password="wrong-password"))
    assert f'password authentication failed for user "{pg.user}"' in str(error)
    assert error.code == "CONNECT_FAILED"
    assert isinstance(error.__cause__, psycopg.OperationalError)


def test_missing_database_fails_with_the_servers_reason(pg: Server) -> None:
    error = _open_error(base_config(pg, connection__database="no_such_db"))
    assert 'database "no_such_db" does not exist' in str(error)


def test_nothing_listening_fails_fast(pg: Server) -> None:
    started = time.monotonic()
    error = _open_error(base_config(pg, connection__port=free_port()))
    assert time.monotonic() - started < 10
    assert "Connection refused" in str(error) or "connection refused" in str(error).lower()


def test_failed_open_leaves_no_server_connection(pg: Server) -> None:
    name = f"failed-{uuid.uuid4().hex[:6]}"
    _open_error(base_config(pg, connection__database="no_such_db", options__application_name=name))
    assert backends(pg, name) == []


def test_no_database_defaults_to_the_user_name(pg: Server) -> None:
    # libpq's rule: without a database, the user name is used. This role has no database of
    # its name, so the server's own reason says which one was tried.
    role = f"nodb_{uuid.uuid4().hex[:8]}"
    admin_query(pg, f"CREATE ROLE {role} LOGIN PASSWORD 'nodb-pw'")
    try:
        error = _open_error(
            base_config(
                pg,
                connection__database=None,
                credential__username=role,
                credential__password="nodb-pw",
            )
        )
        assert f'database "{role}" does not exist' in str(error)
    finally:
        admin_query(pg, f"DROP ROLE {role}")


def test_configure_rejects_bad_values_early() -> None:
    component = PostgresConnection()
    with pytest.raises(ConfigException, match=r"^options\.max_pool_size: .*whole number"):
        component.configure(
            ConfigParams.from_tuples("connection.host", "h", "options.max_pool_size", "abc")
        )
    with pytest.raises(ConfigException, match=r"^connection\.port: "):
        component.configure(
            ConfigParams.from_tuples("connection.host", "h", "connection.port", "x")
        )
    with pytest.raises(ConfigException, match="connection: is not set"):
        component.configure(ConfigParams())


def test_logs_open_close_and_failures(pg: Server, logs: LogCapture) -> None:
    component = PostgresConnection()
    component.configure(base_config(pg))
    component.set_references(logs.references)
    component.open(None)
    component.close(None)
    text = logs.text()
    assert f"Connected to PostgreSQL {pg.host}:{pg.port}/{pg.database}" in text
    assert f"Disconnected from PostgreSQL {pg.host}:{pg.port}/{pg.database}" in text
    component.configure(base_config(pg, credential__password="wrong-password"))
    with pytest.raises(ConnectionException):
        component.open(None)
    text = logs.text()
    assert "[ERROR]" in text or "ERROR" in text
    assert "password authentication failed" in text


def test_password_never_leaks(pg: Server, logs: LogCapture) -> None:
    secret = "Xyzzy-Plugh-9137-Secret"
    admin_query(pg, f"ALTER ROLE {pg.user} PASSWORD '{secret}'")
    try:
        component = PostgresConnection()
        component.set_references(logs.references)
        component.configure(base_config(pg, credential__password=secret))
        component.open(None)
        with component.connection() as conn:
            seen = [repr(conn), str(conn)]
        seen += [repr(component), str(component), repr(component.get_connection())]
        component.close(None)
        # Failures: wrong password (the secret is right, the user is wrong), and a bad URI.
        component.configure(
            base_config(pg, credential__username="nobody_here", credential__password=secret)
        )
        with pytest.raises(ConnectionException) as refused:
            component.open(None)
        with pytest.raises(ConfigException) as bad_uri:
            component.configure(
                ConfigParams.from_tuples("connection.uri", f"postgresql://u:{secret}@h/db?x=1")
            )
        for error in (refused.value, bad_uri.value):
            seen += [str(error), repr(error), str(error.cause), str(error.stack_trace)]
            seen.append(str(error.to_json()))
        seen.append(logs.text())
        assert "Connected to PostgreSQL" in seen[-1]
        for text in seen:
            assert secret not in text
    finally:
        admin_query(pg, f"ALTER ROLE {pg.user} PASSWORD '{pg.password}'")


def test_ssl_mode_reaches_libpq(pg: Server) -> None:
    # The test server has no certificate: "require" must be refused by libpq itself.
    error = _open_error(base_config(pg, options__ssl_mode="require"))
    assert "SSL" in str(error)
    component = open_component(base_config(pg, options__ssl_mode="disable"))
    component.close(None)


def _check_out_once(component: PostgresConnection) -> None:
    with component.connection(timeout=5):
        pass


def test_max_waiting_refuses_the_queue_overflow(pg: Server) -> None:
    component = open_component(
        base_config(pg, options__max_pool_size="1", options__max_waiting="1")
    )
    refused: list[BaseException] = []
    try:
        with component.connection():
            waiter = threading.Thread(target=_check_out_once, args=(component,))
            waiter.start()
            deadline = time.monotonic() + 5
            pool = component.get_connection()
            assert pool is not None
            while pool.get_stats().get("requests_waiting", 0) < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                with component.connection(timeout=5):
                    pass
            except TooManyRequests as error:
                refused.append(error)
        waiter.join(timeout=10)
        assert len(refused) == 1
    finally:
        component.close(None)


def test_idle_connections_above_the_minimum_are_closed(pg: Server) -> None:
    name = f"idle-{uuid.uuid4().hex[:6]}"
    component = open_component(
        base_config(
            pg,
            options__max_pool_size="4",
            options__min_pool_size="1",
            options__idle_timeout="200",
            options__application_name=name,
        )
    )
    try:
        held = [component.connection(timeout=5) for _ in range(4)]
        for checkout in held:
            checkout.__enter__()
        for checkout in held:
            checkout.__exit__(None, None, None)
        assert len(backends(pg, name)) == 4
        deadline = time.monotonic() + 5
        while len(backends(pg, name)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(backends(pg, name)) == 1
    finally:
        component.close(None)
