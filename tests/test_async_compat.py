"""The async pool under psycopg2-era habits: no closed or signalled connection handed out,
bypass window or not, and ``async with await pool.getconn() as conn:`` that never closes a
pooled connection. The async mirror of ``tests/test_pool_compat.py``; each test runs on asyncio
and on uvloop, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import pq

from pip_postgres import AsyncPooledConnection, AsyncPostgresConnection, AsyncPostgresPool
from pip_postgres.checkout import BLOCK_ENDS, block_end
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


# `async with await pool.getconn() as conn:` ---------------------------------------------------


async def test_putconn_inside_the_async_with_block_repeatedly(
    component: AsyncPostgresConnection,
) -> None:
    pool = pool_of(component)
    pids = set()
    for _ in range(3 * pool.max_size + 5):
        async with await pool.getconn() as conn:
            await conn.execute("SELECT 1")
            pids.add(conn.info.backend_pid)
            await conn.commit()
            await pool.putconn(conn)
        assert not conn.closed  # psycopg's __aexit__ would have closed it
    assert len(pids) == 1  # the same connection each time: none was closed and replaced
    assert pool.get_stats()["connections_broken"] == 0
    assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"]


async def test_exit_after_putconn_leaves_the_next_task_alone(
    component: AsyncPostgresConnection, table: str
) -> None:
    # Task A's block gives the connection back; task B checks it out and opens a block of its
    # own on it; A's block ends while B's transaction is open: it must neither commit nor
    # close it (the blocks are kept per task: a shared stack would commit B's work here).
    pool = pool_of(component)
    given_back, b_inside, a_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def task_a() -> None:
        async with await pool.getconn() as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            await conn.commit()
            await pool.putconn(conn)
            given_back.set()
            await b_inside.wait()
        a_done.set()

    async def task_b() -> tuple[bool, pq.TransactionStatus]:
        await given_back.wait()
        conn = await pool.getconn()
        try:
            async with conn:
                await conn.execute(f"INSERT INTO {table} VALUES (2)")
                b_inside.set()
                await a_done.wait()
                seen = (conn.closed, conn.info.transaction_status)
            return seen
        finally:
            await pool.putconn(conn)

    _, (closed, status) = await asyncio.wait_for(asyncio.gather(task_a(), task_b()), 30)
    assert not closed
    assert status == pq.TransactionStatus.INTRANS  # A's block left B's transaction open
    assert await count(component, table) == 2  # B's own block committed its insert


async def test_exit_after_putconn_leaves_a_plain_holder_alone(
    component: AsyncPostgresConnection, table: str
) -> None:
    pool = pool_of(component)
    block = await pool.getconn()
    await block.__aenter__()
    await block.execute(f"INSERT INTO {table} VALUES (1)")
    await block.commit()
    await pool.putconn(block)
    other = await pool.getconn()
    assert other is block  # last in, first out: the same connection, another checkout
    await other.execute(f"INSERT INTO {table} VALUES (2)")  # the new holder's transaction
    await block.__aexit__(None, None, None)  # the first block ends: no commit, no close
    assert not other.closed
    assert other.info.transaction_status == pq.TransactionStatus.INTRANS
    await other.rollback()
    await pool.putconn(other)
    assert await count(component, table) == 1  # the second insert was not committed


@pytest.mark.parametrize("failed", [False, True], ids=["commits", "rolls-back-on-error"])
async def test_exit_while_still_held(
    component: AsyncPostgresConnection, table: str, failed: bool
) -> None:
    pool = pool_of(component)
    conn = await pool.getconn()
    try:
        with pytest.raises(ZeroDivisionError) if failed else contextlib.nullcontext():
            async with conn:
                await conn.execute(f"INSERT INTO {table} VALUES (1)")
                if failed:
                    _ = 1 / 0
        assert not conn.closed  # still checked out, usable, its transaction ended
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        await conn.commit()
    finally:
        await pool.putconn(conn)  # would roll back anything left open
    assert await count(component, table) == (0 if failed else 1)


async def test_a_connection_of_no_pool_closes_as_psycopg_does(pg: Server) -> None:
    async with await AsyncPooledConnection.connect(pg.superuser_conninfo()) as conn:
        await conn.execute("SELECT 1")
    assert conn.closed


def test_block_end_decisions() -> None:
    # (pooled, block's checkout, current checkout, held, closed, failed): what the end does.
    assert block_end(False, None, 0, False, False, False) == "close"  # psycopg's own
    assert block_end(True, 3, 3, True, False, False) == "commit"
    assert block_end(True, 3, 3, True, False, True) == "rollback"
    assert block_end(True, 3, 4, False, False, False) == "nothing"  # given back inside
    assert block_end(True, 3, 5, True, False, False) == "nothing"  # another holder's now
    assert block_end(True, 3, 3, True, True, False) == "nothing"  # closed by its holder
    assert block_end(True, None, 3, True, False, False) == "nothing"  # no block of this task
    assert set(BLOCK_ENDS) == {"close", "nothing", "commit", "rollback"}
