"""The async pool under psycopg2-era habits: no closed or signalled connection handed out,
bypass window or not, and ``async with await pool.getconn() as conn:`` that never closes a
pooled connection. The async mirror of ``tests/test_pool_compat.py``; each test runs on asyncio
and on uvloop, every wait bounded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from pip_postgres import AsyncPostgresConnection, AsyncPostgresPool
from pip_postgres.embedded import EmbeddedPostgres

from .conftest import Server, admin_query, backends
from .test_async import app_name, opened, pool_of

pytestmark = pytest.mark.anyio


async def wait_until_gone(pg: Server, name: str, seconds: float = 10.0) -> bool:
    """Poll until the server has no backend named ``name``, at most ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        if not backends(pg, name):
            return True
        await asyncio.sleep(0.02)
    return False


async def fill(pool: AsyncPostgresPool, count: int) -> None:
    """Check ``count`` connections out at once and give them back: the pool holds that many."""
    held = [await pool.getconn(timeout=10) for _ in range(count)]
    for conn in held:
        await pool.putconn(conn)


async def checkout_errors(pool: AsyncPostgresPool, count: int) -> list[BaseException]:
    """``count`` checkouts through ``getconn()``/``putconn()``; the errors their use raised."""
    errors: list[BaseException] = []
    for _ in range(count):
        conn = await pool.getconn(timeout=10)
        try:
            await conn.execute("SELECT 1")
        except psycopg.Error as error:
            errors.append(error)
        finally:
            await pool.putconn(conn)
    return errors


@pytest.fixture
async def component(pg: Server) -> AsyncIterator[AsyncPostgresConnection]:
    opened_component = await opened(pg)
    try:
        yield opened_component
    finally:
        await opened_component.close(None)


@pytest.fixture
async def table(component: AsyncPostgresConnection) -> AsyncIterator[str]:
    name = f"awith_{uuid.uuid4().hex[:10]}"
    async with component.connection() as conn:
        await conn.execute(f"CREATE TABLE {name} (x int)")
    yield name
    async with component.connection() as conn:
        await conn.execute(f"DROP TABLE {name}")


async def count(component: AsyncPostgresConnection, table: str) -> int:
    async with component.connection() as conn:
        row = await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
    assert row is not None
    return int(row[0])


# Never hand out a closed or signalled connection ---------------------------------------------


async def test_closed_idle_connection_is_not_handed_out_in_the_bypass_window(pg: Server) -> None:
    component = await opened(pg, max_pool_size=2, min_pool_size=2, validation_bypass=60_000)
    try:
        pool = pool_of(component)
        conn = await pool.getconn()
        await pool.putconn(conn)
        await conn.close()  # what psycopg's own __aexit__ did after putconn()
        for _ in range(5):
            got = await pool.getconn(timeout=10)
            try:
                assert not got.closed
                assert await (await got.execute("SELECT 1")).fetchone() == (1,)
            finally:
                await pool.putconn(got)
        assert pool.get_stats()["connections_broken"] == 1
    finally:
        await component.close(None)


async def test_terminated_idle_backends_in_the_bypass_window_cost_no_error(pg: Server) -> None:
    name = app_name()
    component = await opened(
        pg, max_pool_size=4, min_pool_size=4, validation_bypass=60_000, application_name=name
    )
    try:
        pool = pool_of(component)
        await fill(pool, 4)
        pids = {pid for pid, _ in backends(pg, name)}
        assert len(pids) == 4
        admin_query(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        # The terminations reach the sockets a moment later: bounded wait until all are gone.
        await wait_until_gone(pg, name)
        errors = await asyncio.wait_for(checkout_errors(pool, 20), 60)
        assert errors == []
        assert pool.get_stats()["connections_broken"] >= 1
        assert not pids & {pid for pid, _ in backends(pg, name)}
    finally:
        await component.close(None)


@pytest.mark.slow
async def test_restart_within_the_bypass_window_costs_no_error(pg: Server) -> None:
    # No round trip validates a connection inside the window: the termination notice that
    # the restart leaves on each idle socket is what sends it to validation (and replacement).
    if not isinstance(pg, EmbeddedPostgres):
        pytest.skip("restarting needs the embedded server")
    component = await opened(pg, max_pool_size=4, min_pool_size=4, validation_bypass=600_000)
    try:
        pool = pool_of(component)
        await fill(pool, 4)
        await asyncio.to_thread(pg.restart)
        errors = await asyncio.wait_for(checkout_errors(pool, 20), 60)
        assert errors == []
        assert pool.get_stats()["connections_broken"] >= 2
    finally:
        await component.close(None)
