"""AsyncPostgresConnection on the real server: the sync suite's behaviours, asynchronously,
and the cancellation of a task inside a checkout. Each test runs on asyncio, and on asyncio
with uvloop where it is installed; every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from pip_services4_commons.errors import ConnectionException, InvalidStateException
from pip_services4_components.config import ConfigParams
from pip_services4_components.refer import Descriptor
from psycopg import pq
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, TooManyRequests

from pip_postgres import (
    AsyncPostgresConnection,
    AsyncPostgresPool,
    CheckoutTimeout,
    DefaultPostgresFactory,
    PostgresConfig,
)
from pip_postgres.checkout import socket_has_news
from pip_postgres.embedded import EmbeddedPostgres

from .conftest import LogCapture, Server, admin_query, backends, base_config

pytestmark = pytest.mark.anyio


def app_name() -> str:
    return f"aio-{uuid.uuid4().hex[:8]}"


async def opened(
    pg: Server, references: Any = None, config: ConfigParams | None = None, **options: Any
) -> AsyncPostgresConnection:
    component = AsyncPostgresConnection()
    component.configure(
        config or base_config(pg, **{f"options__{k}": v for k, v in options.items()})
    )
    if references is not None:
        component.set_references(references)
    await asyncio.wait_for(component.open(None), 30)
    return component


def pool_of(component: AsyncPostgresConnection) -> AsyncPostgresPool:
    pool = component.get_connection()
    assert pool is not None
    return pool


async def fill(component: AsyncPostgresConnection, count: int) -> set[int]:
    """Check ``count`` connections out at once; their pids."""
    held = [component.connection(timeout=10) for _ in range(count)]
    pids = {(await checkout.__aenter__()).info.backend_pid for checkout in held}
    for checkout in held:
        await checkout.__aexit__(None, None, None)
    return pids


async def run_checkouts(component: AsyncPostgresConnection, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    for _ in range(count):
        try:
            async with component.connection(timeout=10) as conn:
                await conn.execute("SELECT 1")
        except Exception as error:
            errors.append(error)
    return errors


async def scalar(component: AsyncPostgresConnection, sql: str) -> Any:
    async with component.connection(timeout=10) as conn:
        row = await (await conn.execute(sql)).fetchone()
        assert row is not None
        return row[0]


# Open, close, checkout ------------------------------------------------------------------


async def test_open_checkout_and_close(pg: Server) -> None:
    component = await opened(pg)
    try:
        assert component.is_open()
        assert component.get_database_name() == pg.database
        pool = component.get_connection()
        assert isinstance(pool, AsyncConnectionPool)
        assert await scalar(component, "SELECT current_user") == pg.user
        conn = await pool.getconn()
        try:
            assert (await (await conn.execute("SELECT 41 + 1")).fetchone()) == (42,)
        finally:
            await pool.putconn(conn)
        assert pg.password not in repr(component)
        assert "AsyncPostgresConnection open" in repr(component)
    finally:
        await component.close(None)
    assert not component.is_open()
    assert "closed" in repr(component)


async def test_commit_on_success_rollback_on_error(pg: Server) -> None:
    component = await opened(pg)
    table = f"t_{uuid.uuid4().hex[:8]}"
    try:
        async with component.connection() as conn:
            await conn.execute(f"CREATE TABLE {table} (v int)")
        async with component.connection() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(ZeroDivisionError):
            async with component.connection() as conn:
                await conn.execute(f"INSERT INTO {table} VALUES (2)")
                raise ZeroDivisionError
        assert await scalar(component, f"SELECT array_agg(v) FROM {table}") == [1]
        async with component.connection() as conn:
            await conn.execute(f"DROP TABLE {table}")
    finally:
        await component.close(None)


async def test_open_twice_close_twice_reopen_and_closed_checkout(pg: Server) -> None:
    component = await opened(pg)
    await component.open(None)
    await component.close(None)
    await component.close(None)
    with pytest.raises(InvalidStateException, match="not open"):
        component.connection()
    await component.open(None)
    try:
        assert await scalar(component, "SELECT 1") == 1
    finally:
        await component.close(None)


async def test_wrong_password_fails_with_the_servers_reason(pg: Server) -> None:
    component = AsyncPostgresConnection()
    component.configure(base_config(pg, credential__password="wrong-Secret-77"))
    with pytest.raises(ConnectionException) as caught:
        await asyncio.wait_for(component.open(None), 30)
    assert "password authentication failed" in caught.value.message
    assert "wrong-Secret-77" not in str(caught.value.to_json())
    assert not component.is_open()


async def test_password_never_leaks(pg: Server, logs: LogCapture) -> None:
    secret = "Wrong-Pass-4711"
    component = AsyncPostgresConnection()
    component.configure(base_config(pg, credential__password=secret))
    component.set_references(logs.references)
    with pytest.raises(ConnectionException) as caught:
        await asyncio.wait_for(component.open(None), 30)
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__ or error.__context__
    texts = [str(e) for e in chain] + [str(caught.value.to_json()), logs.text(), repr(component)]
    assert all(secret not in text for text in texts)
    assert "password authentication failed" in logs.text()


async def test_nothing_listening_fails_fast_and_leaves_nothing(pg: Server) -> None:
    name = app_name()
    component = AsyncPostgresConnection()
    component.configure(base_config(pg, connection__port=1, options__connect_timeout=3000))
    with pytest.raises(ConnectionException, match="Could not connect"):
        await asyncio.wait_for(component.open(None), 20)
    missing = AsyncPostgresConnection()
    missing.configure(
        base_config(pg, connection__database="no_such_db", options__application_name=name)
    )
    with pytest.raises(ConnectionException, match="no_such_db"):
        await asyncio.wait_for(missing.open(None), 20)
    assert backends(pg, name) == []


async def test_many_tasks_on_a_small_pool(pg: Server) -> None:
    component = await opened(pg, max_pool_size=4, min_pool_size=1)
    try:

        async def work(i: int) -> int:
            async with component.connection(timeout=30) as conn:
                row = await (await conn.execute("SELECT %s::int", (i,))).fetchone()
                assert row is not None
                return int(row[0])

        results = await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(64))), 60)
        assert results == list(range(64))
        stats = pool_of(component).get_stats()
        assert stats["pool_size"] <= 4
    finally:
        await component.close(None)


async def test_exhaustion_with_short_timeout_losers_get_a_clear_error(pg: Server) -> None:
    component = await opened(pg, max_pool_size=4, min_pool_size=4)
    try:
        await fill(component, 4)  # four connections idle: the first four tasks get one at once

        async def work() -> BaseException | None:
            try:
                async with component.connection(timeout=0.1) as conn:
                    await conn.execute("SELECT pg_sleep(0.3)")  # held past the others' wait
            except Exception as error:
                return error
            return None

        outcomes = await asyncio.wait_for(asyncio.gather(*(work() for _ in range(64))), 60)
        errors = [outcome for outcome in outcomes if outcome is not None]
        assert len(outcomes) - len(errors) >= 4 and errors
        assert all(isinstance(error, CheckoutTimeout) for error in errors), errors
        message = str(errors[0])
        assert "max_pool_size=4" in message and "after waiting 0.10 s" in message
        # Afterwards every connection is back in the pool and the pool still works.
        stats = pool_of(component).get_stats()
        assert stats["pool_available"] == stats["pool_size"]
        assert await run_checkouts(component, 4) == []
    finally:
        await component.close(None)


async def test_max_waiting_refuses_the_queue_overflow(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1, max_waiting=1)
    try:
        pool = pool_of(component)
        async with component.connection():
            waiter = asyncio.create_task(scalar(component, "SELECT 1"))
            for _ in range(250):  # at most 5 s for the waiter to queue
                if pool.get_stats().get("requests_waiting", 0) >= 1:
                    break
                await asyncio.sleep(0.02)
            with pytest.raises(TooManyRequests):
                async with component.connection(timeout=5):
                    pass
        assert await asyncio.wait_for(waiter, 10) == 1  # the one queued got its turn
    finally:
        await component.close(None)


async def test_checkout_timeout_names_pool_size_and_wait(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1)
    try:
        async with component.connection():
            with pytest.raises(CheckoutTimeout, match=r"max_pool_size=1.*0\.20 s|0\.20 s.*max_"):
                async with component.connection(timeout=0.2):
                    pass
    finally:
        await component.close(None)


# Validation, lifetime, LIFO --------------------------------------------------------------


async def test_terminated_backends_are_replaced_at_checkout(pg: Server) -> None:
    name = app_name()
    component = await opened(
        pg, max_pool_size=4, min_pool_size=4, validation_bypass=100, application_name=name
    )
    try:
        old = await fill(component, 4)
        admin_query(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        await asyncio.sleep(0.3)  # idle past the 100 ms bypass window
        errors = await run_checkouts(component, 20)
        stats = pool_of(component).get_stats()
        assert errors == []
        assert stats["connections_broken"] >= 1
        assert not old & {pid for pid, _ in backends(pg, name)}
    finally:
        await component.close(None)


async def test_bypass_window_skips_validation_and_zero_validates_each(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1, validation_bypass=60_000)
    try:
        await run_checkouts(component, 20)
        assert pool_of(component).get_stats()["connections_validated"] == 0
    finally:
        await component.close(None)
    component = await opened(pg, max_pool_size=1, validation_bypass=0)
    try:
        await run_checkouts(component, 5)
        assert pool_of(component).get_stats()["connections_validated"] == 5
    finally:
        await component.close(None)


@pytest.mark.slow
async def test_the_news_check_counts_the_time_idle_until_the_take(pg: Server) -> None:
    """As the threaded pool's: a checkout that waited for the pool's lock counts a connection's
    time idle up to when it took it, so its news send it to validation."""
    component = await opened(pg, max_pool_size=1, min_pool_size=1, validation_bypass=60_000)
    try:
        pool = pool_of(component)
        conn = await pool.getconn()
        await conn.set_autocommit(True)
        await conn.execute("LISTEN lock_news")
        await asyncio.to_thread(admin_query, pg, "NOTIFY lock_news")
        await pool.putconn(conn)
        for _ in range(200):  # at most 10 s for the notification to reach the socket
            if socket_has_news(conn.pgconn.socket):
                break
            await asyncio.sleep(0.05)
        assert socket_has_news(conn.pgconn.socket)
        validated = pool.get_stats()["connections_validated"]
        async with pool._lock:
            conn.returned_at = time.monotonic()  # given back just before the checkout starts
            taker = asyncio.create_task(pool.getconn(timeout=10))
            await asyncio.sleep(0.05)  # the checkout waits for the lock
        assert await asyncio.wait_for(taker, 10) is conn
        await pool.putconn(conn)
        assert pool.get_stats()["connections_validated"] == validated + 1
    finally:
        await component.close(None)


async def test_connections_past_max_lifetime_are_replaced_unnoticed(pg: Server) -> None:
    component = await opened(pg, max_pool_size=2, max_lifetime=300, validation_bypass=0)
    try:
        pids: set[int] = set()
        for _ in range(8):
            async with component.connection(timeout=10) as conn:
                pids.add(conn.info.backend_pid)
            await asyncio.sleep(0.1)
        assert len(pids) >= 2
        assert pool_of(component).get_stats()["connections_expired"] >= 1
    finally:
        await component.close(None)


async def test_idle_connections_are_served_last_in_first_out(pg: Server) -> None:
    component = await opened(pg, max_pool_size=3, min_pool_size=3)
    try:
        first, second = component.connection(), component.connection()
        pid_first = (await first.__aenter__()).info.backend_pid
        pid_second = (await second.__aenter__()).info.backend_pid
        await first.__aexit__(None, None, None)
        await second.__aexit__(None, None, None)
        for _ in range(5):
            async with component.connection() as conn:
                assert conn.info.backend_pid == pid_second
        assert pid_first != pid_second
    finally:
        await component.close(None)


async def test_idle_order_fifo_serves_the_longest_idle_and_a_bad_order_is_refused(
    pg: Server,
) -> None:
    base = base_config(pg)
    config = PostgresConfig.from_config(base)
    pool = AsyncPostgresPool(
        config.conninfo(),
        kwargs=config.connect_kwargs(),
        validation_bypass=60.0,
        idle_order="fifo",
        min_size=2,
        max_size=2,
    )
    await pool.open(wait=True, timeout=30)
    try:
        first, second = await pool.getconn(), await pool.getconn()
        await pool.putconn(first)
        await pool.putconn(second)
        conn = await pool.getconn()
        assert conn is first  # idle longest
        await pool.putconn(conn)
    finally:
        await pool.close()
    with pytest.raises(ValueError, match="idle_order must be lifo or fifo"):
        AsyncPostgresPool("", kwargs={}, validation_bypass=1.0, idle_order="random")


@pytest.mark.slow
async def test_server_restart_while_idle(pg: Server) -> None:
    if not isinstance(pg, EmbeddedPostgres):
        pytest.skip("restarting needs the embedded server")
    component = await opened(pg, max_pool_size=4, min_pool_size=2, validation_bypass=100)
    try:
        await fill(component, 4)
        await asyncio.to_thread(pg.restart)
        errors = await asyncio.wait_for(run_checkouts(component, 20), 60)
        assert errors == []
    finally:
        await component.close(None)


# Session reset and attribute restore ----------------------------------------------------


async def test_session_settings_are_reset(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1)
    try:
        async with component.connection() as conn:
            await conn.execute("SET search_path TO pg_catalog")
            await conn.execute("SELECT set_config('work_mem', '7MB', false)")
        assert await scalar(component, "SHOW search_path") != "pg_catalog"
        assert await scalar(component, "SHOW work_mem") != "7MB"
    finally:
        await component.close(None)


@pytest.mark.parametrize("mode", ["always", "never"])
async def test_reset_modes(pg: Server, mode: str) -> None:
    component = await opened(pg, max_pool_size=1, reset_session=mode)
    try:
        async with component.connection() as conn:
            # A change inside a function: only "always" catches it.
            await conn.execute("DO $$ BEGIN PERFORM set_config('work_mem', '9MB', false); END $$")
        kept = await scalar(component, "SHOW work_mem")
        assert (kept == "9MB") is (mode == "never")
    finally:
        await component.close(None)


async def test_reset_in_autocommit_mode_and_through_putconn(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1, autocommit="true")
    try:
        async with component.connection() as conn:
            await conn.execute("SET work_mem = '5MB'")
        pool = pool_of(component)
        conn = await pool.getconn()
        await conn.execute("SET statement_timeout = 4321")
        await pool.putconn(conn)
        async with component.connection() as conn:
            assert conn.autocommit is True
            assert (await (await conn.execute("SHOW work_mem")).fetchone()) != ("5MB",)
            assert (await (await conn.execute("SHOW statement_timeout")).fetchone()) == ("0",)
    finally:
        await component.close(None)


async def test_connection_attributes_are_restored(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1)
    try:
        async with component.connection() as conn:
            await conn.set_autocommit(True)
            await conn.set_read_only(True)
            await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
            await conn.set_deferrable(True)
            conn.row_factory = dict_row  # type: ignore[assignment]
        async with component.connection() as conn:
            assert conn.autocommit is False
            assert conn.read_only is None
            assert conn.isolation_level is None
            assert conn.deferrable is None
            row = await (await conn.execute("SHOW transaction_read_only")).fetchone()
            assert row == ("off",)
    finally:
        await component.close(None)


async def test_getconn_putconn_with_open_transaction_is_cleaned(pg: Server) -> None:
    name = app_name()
    component = await opened(pg, max_pool_size=1, application_name=name)
    try:
        pool = pool_of(component)
        conn = await pool.getconn()
        await conn.execute("SET statement_timeout = 1234")
        await pool.putconn(conn)
        assert [state for _, state in backends(pg, name)] == ["idle"]
        assert await scalar(component, "SHOW statement_timeout") == "0"
    finally:
        await component.close(None)


# Leaks and shutdown ---------------------------------------------------------------------


async def test_leak_is_reported_once_with_the_checkout_stack(pg: Server, logs: LogCapture) -> None:
    component = await opened(pg, logs.references, max_pool_size=2, leak_detection_threshold=200)
    try:
        async with component.connection():
            await asyncio.sleep(0.8)
        async with component.connection():
            pass
        await asyncio.sleep(0.3)
        text = logs.text()
        assert text.count("Connection leak suspected") == 1
        assert "test_leak_is_reported_once_with_the_checkout_stack" in text
        assert pool_of(component).get_stats()["leaks_reported"] == 1
    finally:
        await component.close(None)


@pytest.mark.slow
async def test_close_under_load_is_bounded_and_leaves_nothing(pg: Server) -> None:
    name = app_name()
    component = await opened(pg, max_pool_size=2, shutdown_timeout=500, application_name=name)
    holding = asyncio.Event()
    inside = 0

    async def hold() -> str:
        nonlocal inside
        async with component.connection() as conn:
            inside += 1
            if inside == 2:
                holding.set()
            await conn.execute("SELECT pg_sleep(30)")
        return "finished"

    async def wait_for_one() -> str:
        async with component.connection(timeout=30):
            return "got one"

    holders = [asyncio.ensure_future(hold()) for _ in range(2)]
    await asyncio.wait_for(holding.wait(), 10)
    waiters = [asyncio.ensure_future(wait_for_one()) for _ in range(3)]
    await asyncio.sleep(0.3)
    await asyncio.wait_for(component.close(None), 10)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*holders, *waiters, return_exceptions=True), 15
    )
    names = [o if isinstance(o, str) else type(o).__name__ for o in outcomes]
    assert names[2:] == [PoolClosed.__name__] * 3
    assert "finished" not in names
    for _ in range(100):
        if not backends(pg, name):
            break
        await asyncio.sleep(0.05)
    assert backends(pg, name) == []


# Cancellation ---------------------------------------------------------------------------


def sleeping(pg: Server, name: str) -> list[tuple[Any, ...]]:
    return admin_query(
        pg,
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
        "AND query LIKE %s",
        (name, "%pg_sleep%"),
    )


async def assert_clean_after_cancel(
    pg: Server, component: AsyncPostgresConnection, name: str, table: str
) -> None:
    """No query left running, the pool whole, the next checkout clean, nothing committed."""
    assert sleeping(pg, name) == []
    async with component.connection(timeout=10) as conn:
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        assert (await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()) == (0,)
    stats = pool_of(component).get_stats()
    assert stats["pool_size"] >= 1
    assert not pool_of(component)._in_use
    assert {state for _, state in backends(pg, name)} <= {"idle"}


@pytest.mark.parametrize("autocommit", [False, True])
async def test_cancelled_task_returns_the_connection_clean(pg: Server, autocommit: bool) -> None:
    name = app_name()
    table = f"c_{uuid.uuid4().hex[:8]}"
    admin_query(pg, f"CREATE TABLE {table} (v int)")
    admin_query(pg, f"GRANT ALL ON {table} TO {pg.user}")
    component = await opened(
        pg, max_pool_size=1, application_name=name, autocommit=str(autocommit).lower()
    )
    try:
        started = asyncio.Event()

        async def slow() -> None:
            async with component.connection() as conn:
                if not autocommit:
                    await conn.execute(f"INSERT INTO {table} VALUES (1)")
                started.set()
                await conn.execute("SELECT pg_sleep(10)")

        task = asyncio.ensure_future(slow())
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.2)  # inside pg_sleep
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
        await assert_clean_after_cancel(pg, component, name, table)
    finally:
        await component.close(None)
        admin_query(pg, f"DROP TABLE {table}")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+")
async def test_timeout_inside_a_checkout_returns_the_connection_clean(pg: Server) -> None:
    name = app_name()
    table = f"c_{uuid.uuid4().hex[:8]}"
    admin_query(pg, f"CREATE TABLE {table} (v int)")
    admin_query(pg, f"GRANT ALL ON {table} TO {pg.user}")
    component = await opened(pg, max_pool_size=1, application_name=name)
    try:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):  # type: ignore[attr-defined,unused-ignore]
                    async with component.connection() as conn:
                        await conn.execute(f"INSERT INTO {table} VALUES (1)")
                        await conn.execute("SELECT pg_sleep(10)")
            await assert_clean_after_cancel(pg, component, name, table)
    finally:
        await component.close(None)
        admin_query(pg, f"DROP TABLE {table}")


async def test_wait_for_timeout_inside_a_checkout_returns_the_connection_clean(
    pg: Server,
) -> None:
    name = app_name()
    component = await opened(pg, max_pool_size=1, application_name=name)
    try:

        async def slow() -> None:
            async with component.connection() as conn:
                await conn.execute("SELECT pg_sleep(10)")

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow(), 0.3)
        assert sleeping(pg, name) == []
        assert await scalar(component, "SELECT 1") == 1
    finally:
        await component.close(None)


async def test_cancelled_waiter_loses_no_connection(pg: Server) -> None:
    component = await opened(pg, max_pool_size=1, validation_bypass=0)
    try:
        async with component.connection():
            waiter = asyncio.ensure_future(scalar(component, "SELECT 1"))
            await asyncio.sleep(0.1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        for _ in range(3):
            assert await scalar(component, "SELECT 2") == 2
        assert not pool_of(component)._in_use
    finally:
        await component.close(None)


# Factory ---------------------------------------------------------------------------------


async def test_factory_creates_the_async_component(pg: Server) -> None:
    factory = DefaultPostgresFactory()
    descriptor = Descriptor("pip-services", "connection", "postgres-async", "default", "1.0")
    component = factory.create(descriptor)
    assert isinstance(component, AsyncPostgresConnection)
    component.configure(base_config(pg))
    await component.open(None)
    try:
        assert await scalar(component, "SELECT 7") == 7
    finally:
        await component.close(None)


async def test_container_creates_configures_and_references_it(
    pg: Server, tmp_path: Any, logs: LogCapture
) -> None:
    from pip_services4_container.container import Container

    name = app_name()
    config_file = tmp_path / "config.yml"
    config_file.write_text(
        "---\n"
        '- descriptor: "pip-services:logger:console:default:1.0"\n'
        '  level: "info"\n'
        '- descriptor: "pip-services:connection:postgres-async:default:1.0"\n'
        "  connection:\n"
        f'    host: "{pg.host}"\n'
        f'    port: "{pg.port}"\n'
        f'    database: "{pg.database}"\n'
        "  credential:\n"
        f'    username: "{pg.user}"\n'
        '    password: "{{PG_PASSWORD}}"\n'
        "  options:\n"
        "    max_pool_size: 3\n"
        f'    application_name: "{name}"\n'
    )
    container = Container("test", "async container test")
    container.add_factory(DefaultPostgresFactory())
    container.read_config_from_file(
        None, str(config_file), ConfigParams.from_tuples("PG_PASSWORD", pg.password)
    )
    container.open(None)
    try:
        component = container._references.get_one_required(
            Descriptor("pip-services", "connection", "postgres-async", "*", "1.0")
        )
        assert isinstance(component, AsyncPostgresConnection)
        assert not component.is_open()  # IOpenable is synchronous: the application opens it
        await component.open(None)
        assert await scalar(component, "SELECT current_setting('application_name')") == name
        assert pool_of(component).max_size == 3
        await component.close(None)
        text = logs.text()
        assert "Connected to PostgreSQL" in text  # through the container's console logger
        assert pg.password not in text
    finally:
        container.close(None)
    assert backends(pg, name) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX-only")
async def test_forked_child_opens_its_own_sessions_and_the_parent_keeps_its_own(
    pg: Server,
) -> None:
    from .test_fork import in_child

    name = app_name()
    component = await opened(pg, max_pool_size=2, min_pool_size=2, application_name=name)
    try:
        parent_pids = await fill(component, 2)

        def child() -> dict[str, Any]:
            # The parent's pool is let go of; the child opens its own, in a loop of its own
            # (a thread: the parent's loop is still marked running in this one).
            closed = not component.is_open() and component.get_connection() is None
            pids: set[int] = set()

            async def own() -> None:
                await component.open(None)
                try:
                    pids.update(await fill(component, 2))
                finally:
                    await component.close(None)

            worker = threading.Thread(target=lambda: asyncio.run(own()))
            worker.start()
            worker.join(20)
            return {"closed": closed, "pids": sorted(pids)}

        report = in_child(child)
        assert report["closed"] is True
        assert report["pids"] and not set(report["pids"]) & parent_pids
        # The very same sessions still answer in the parent.
        assert await fill(component, 2) == parent_pids
        assert await scalar(component, "SELECT 1") == 1
    finally:
        await component.close(None)
    assert backends(pg, name) == []
