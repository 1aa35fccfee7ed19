"""AsyncPostgresConnection through network faults: the real server behind
:class:`tests.proxy.FaultProxy` (a thread-based proxy, usable from async tests), which takes
the network away. Every wait is bounded with ``asyncio.wait_for``: a checkout or a close that
does not return is a failure, not a hung suite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pip_services4_commons.errors import ConnectionException

from pip_postgres import AsyncPostgresConnection, CheckoutTimeout

from .conftest import Server, backends, base_config
from .proxy import FaultProxy
from .test_faults_network import BLACKHOLED, SERVER_AWAY

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Slack on top of a configured timeout before a wait counts as hung (a busy machine).
MARGIN = 2.0

Opener = Callable[..., Any]


@pytest.fixture
def proxy(pg: Server) -> Iterator[FaultProxy]:
    with FaultProxy(pg.host, pg.port) as running:
        yield running


@pytest.fixture
async def opened(pg: Server, proxy: FaultProxy) -> AsyncIterator[Opener]:
    """``await opened(**options)``: a component opened through the proxy, closed after."""
    components: list[AsyncPostgresConnection] = []

    async def open_(**extra: Any) -> AsyncPostgresConnection:
        component = AsyncPostgresConnection()
        component.configure(base_config(pg, connection__port=proxy.port, **extra))
        components.append(component)
        await asyncio.wait_for(component.open(None), 30)
        return component

    try:
        yield open_
    finally:
        proxy.restore()
        for component in components:
            await asyncio.wait_for(component.close(None), 30)


async def select_one(component: AsyncPostgresConnection, timeout: float | None = None) -> int:
    async with component.connection(timeout=timeout) as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        return int(row[0])


async def wait_until(condition: Callable[[], bool], limit: float) -> bool:
    for _ in range(int(limit / 0.05) + 1):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


@pytest.mark.timeout(60)
async def test_blackholed_network_open_fails_within_connect_timeout(
    pg: Server, proxy: FaultProxy
) -> None:
    proxy.blackhole()
    component = AsyncPostgresConnection()
    component.configure(base_config(pg, connection__port=proxy.port, options__connect_timeout=2000))
    try:
        with pytest.raises(ConnectionException) as caught:
            await asyncio.wait_for(component.open(None), 2 * 2.0 + MARGIN + 5)
        assert "timeout" in str(caught.value).lower()
        assert not component.is_open()
    finally:
        proxy.restore()
        await component.close(None)


@pytest.mark.timeout(60)
async def test_blackholed_network_checkouts_time_out_never_hang(
    proxy: FaultProxy, opened: Opener
) -> None:
    component = await opened(**BLACKHOLED)
    for _ in range(3):
        await select_one(component)
    proxy.blackhole()
    await asyncio.sleep(0.4)  # idle past validation_bypass: the next checkout validates
    for _ in range(2):
        with pytest.raises(CheckoutTimeout):
            await asyncio.wait_for(select_one(component), 2.0 + MARGIN + 3)
    pool = component.get_connection()
    assert pool is not None
    assert pool.get_stats()["connections_validated"] >= 1
    # close() returns with the network still blackholed.
    await asyncio.wait_for(component.close(None), 2.0 + 2.0 + MARGIN + 5)


@pytest.mark.timeout(60)
async def test_cut_connections_are_replaced_at_checkout_with_no_error(
    pg: Server, proxy: FaultProxy, opened: Opener
) -> None:
    application = f"afaults-cut-{uuid.uuid4().hex[:8]}"
    size = 3
    component = await opened(
        options__connect_timeout=5000,
        options__validation_bypass=100,
        options__min_pool_size=size,
        options__max_pool_size=size,
        options__application_name=application,
        options__shutdown_timeout=2000,
    )
    assert await wait_until(lambda: proxy.connections == size, 5.0), proxy.connections
    before = {pid for pid, _ in backends(pg, application)}
    assert len(before) == size
    proxy.cut()
    assert await wait_until(lambda: not before & {pid for pid, _ in backends(pg, application)}, 5.0)
    await asyncio.sleep(0.3)  # idle past validation_bypass

    async def work(count: int) -> set[int]:
        return {await select_one(component) for _ in range(count)}

    results = await asyncio.wait_for(asyncio.gather(*(work(10) for _ in range(size))), 30)
    pids = set().union(*results)
    assert not pids & before
    assert proxy.connections <= size
    pool = component.get_connection()
    assert pool is not None
    assert pool.get_stats()["connections_broken"] >= 1


@pytest.mark.timeout(60)
async def test_task_cancelled_while_validating_loses_no_connection(
    proxy: FaultProxy, opened: Opener
) -> None:
    """A checkout cancelled during its validation round trip (the network swallows it)
    discards that connection; once the network is back, the pool is whole and serves."""
    component = await opened(
        options__connect_timeout=4000,
        options__validation_bypass=100,
        options__min_pool_size=2,
        options__max_pool_size=2,
        options__shutdown_timeout=2000,
    )
    await select_one(component)
    proxy.blackhole()
    await asyncio.sleep(0.3)  # idle past validation_bypass: the checkout validates
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(select_one(component), 0.3)  # within the 1 s ping budget
    pool = component.get_connection()
    assert pool is not None
    assert pool.get_stats()["connections_validated"] >= 1
    assert not pool._in_use
    proxy.restore()
    proxy.cut()  # the connections that crossed the blackhole are unusable
    for _ in range(5):
        await asyncio.wait_for(select_one(component, timeout=10), 15)
    # Both connections of the pool are there to be had at once: none was lost.
    async with component.connection(timeout=10), component.connection(timeout=10):
        pass
    assert not pool._in_use


@pytest.mark.timeout(60)
async def test_server_away_checkouts_fail_clearly_then_pool_recovers_by_itself(
    proxy: FaultProxy, opened: Opener
) -> None:
    """While nothing listens, checkouts fail with a clear error within their timeout, never
    hang; when the server is back, the pool recovers by itself, without close()/open()."""
    component = await opened(**SERVER_AWAY)
    for _ in range(5):
        await select_one(component)
    proxy.refuse()
    errors: list[CheckoutTimeout] = []
    for _ in range(3):
        with pytest.raises(CheckoutTimeout) as caught:
            await asyncio.wait_for(select_one(component), 1.0 + MARGIN + 3)
        errors.append(caught.value)
    message = str(errors[-1])
    assert "max_pool_size=2" in message
    assert "after waiting 1.00 s" in message
    assert "the last connection attempt failed" in message
    assert "refused" in message.lower()
    proxy.restore()
    recovered = False
    for _ in range(15):  # at most 15 checkouts of 1 s
        try:
            await asyncio.wait_for(select_one(component, timeout=1.0), 1.0 + MARGIN + 3)
        except CheckoutTimeout:
            continue
        recovered = True
        break
    assert recovered, "the pool did not recover within 15 checkouts of the server's return"
    # Back in shape: every checkout works, with no close()/open() in between.
    assert component.is_open()
    for _ in range(10):
        await asyncio.wait_for(select_one(component, timeout=10), 15)
