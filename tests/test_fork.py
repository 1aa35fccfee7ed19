"""A process that forks after open(): the child gets its own sessions, the parent keeps its own.

Real ``os.fork()`` against the real server. The child reports through a pipe and ends with
``os._exit``; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pip_postgres import PostgresConnection

from .conftest import Server, backends, base_config

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX-only")

#: The longest the parent waits for its child, in seconds.
CHILD_TIMEOUT = 30.0


def in_child(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in a forked child and return what it reported (or its error)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        signal.alarm(int(CHILD_TIMEOUT))  # a stuck child dies on its own
        try:
            report = work()
        except BaseException:
            report = {"error": traceback.format_exc()}
        with os.fdopen(write_end, "w") as out:
            out.write(json.dumps(report))
        os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + CHILD_TIMEOUT
    chunks: list[bytes] = []
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _reap(pid, deadline)
    assert chunks, "the child reported nothing"
    report: dict[str, Any] = json.loads(b"".join(chunks))
    assert "error" not in report, report.get("error")
    return report


def _reap(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline + 5:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def opened(pg: Server, name: str, size: int) -> PostgresConnection:
    component = PostgresConnection()
    component.configure(
        base_config(
            pg,
            options__application_name=name,
            options__min_pool_size=size,
            options__max_pool_size=size,
            # No validation at checkout: a session the child ended must show as an error in
            # the parent, not be replaced quietly by the pool.
            options__validation_bypass=600_000,
        )
    )
    component.open(None)
    return component


def pool_pids(component: PostgresConnection, size: int) -> set[int]:
    """Check out every connection of the pool at once and ask each for its backend pid."""
    pool = component.get_connection()
    assert pool is not None
    held = [pool.getconn(timeout=5) for _ in range(size)]
    try:
        return {conn.execute("SELECT pg_backend_pid()").fetchone()[0] for conn in held}  # type: ignore[index]
    finally:
        for conn in held:
            pool.putconn(conn)


def test_child_gets_its_own_sessions_and_the_parent_keeps_its_own(pg: Server) -> None:
    name = f"fork-{uuid.uuid4().hex[:8]}"
    component = opened(pg, name, 2)
    try:
        parent_pids = pool_pids(component, 2)
        assert len(parent_pids) == 2

        def child() -> dict[str, Any]:
            assert component.is_open()
            with component.connection() as conn:
                first = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            pool = component.get_connection()
            assert pool is not None
            conn = pool.getconn(timeout=5)
            try:
                second = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            finally:
                pool.putconn(conn)
            pids = pool_pids(component, 2)
            return {"pids": sorted({first, second} | pids), "self": os.getpid()}

        report = in_child(child)
        child_pids = set(report["pids"])
        assert child_pids and not child_pids & parent_pids
        # The very same sessions still answer in the parent, after the child is gone.
        assert pool_pids(component, 2) == parent_pids
        with component.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        server_pids = {pid for pid, _ in backends(pg, name)}
        assert parent_pids <= server_pids
    finally:
        component.close(None)
    assert backends(pg, name) == []


def test_fork_while_a_connection_is_checked_out(pg: Server) -> None:
    name = f"fork-held-{uuid.uuid4().hex[:8]}"
    component = opened(pg, name, 2)
    try:
        with component.connection() as held:
            held_pid = held.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            xid = held.execute("SELECT txid_current()").fetchone()[0]  # type: ignore[index]

            def child() -> dict[str, Any]:
                # The parent's checkout is not the child's: it cannot be used here...
                try:
                    held.execute("SELECT 1")
                    inherited = "usable"
                except psycopg.Error as error:
                    inherited = type(error).__name__
                # ...and the child's own checkouts work.
                with component.connection() as conn:
                    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
                return {"inherited": inherited, "pid": pid}

            report = in_child(child)
            assert report["inherited"] != "usable"
            assert report["pid"] != held_pid
            # Same session, same transaction, in the parent.
            assert held.execute("SELECT pg_backend_pid()").fetchone() == (held_pid,)
            assert held.execute("SELECT txid_current()").fetchone() == (xid,)
        assert len(pool_pids(component, 2)) == 2
        assert held_pid in pool_pids(component, 2)
    finally:
        component.close(None)


def test_child_may_close_without_using_and_a_closed_component_stays_closed(pg: Server) -> None:
    name = f"fork-close-{uuid.uuid4().hex[:8]}"
    component = opened(pg, name, 1)
    closed = PostgresConnection()
    closed.configure(base_config(pg))
    try:
        parent_pids = pool_pids(component, 1)

        def child() -> dict[str, Any]:
            was_open = component.is_open()
            component.close(None)
            return {
                "was_open": was_open,
                "open_after_close": component.is_open(),
                "pool_after_close": component.get_connection() is not None,
                "other": closed.is_open() or closed.get_connection() is not None,
            }

        report = in_child(child)
        assert report == {
            "was_open": True,
            "open_after_close": False,
            "pool_after_close": False,
            "other": False,
        }
        assert pool_pids(component, 1) == parent_pids
    finally:
        component.close(None)
