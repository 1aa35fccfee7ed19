"""Forking: a child process never uses, nor ends, the sessions of its parent.

After ``os.fork()`` the child holds copies of the parent's sockets, and each one is the same
server session as the parent's. Were the child to use one, the two processes would interleave
their messages on one session; were it to close one, libpq would send the server a
Terminate message and end the *parent's* session (the same happens when the child's
garbage collector finalizes the connection object).

So, through :func:`os.register_at_fork`, every open :class:`~pip_postgres.PostgresConnection`
is told in the child, right after the fork, to let go of its pool: each inherited socket is
first replaced, in the child only, by ``/dev/null`` (:func:`release`), so that nothing the
child's libpq writes reaches the server, and the parent's sessions are untouched. The
component then opens a pool of its own at its first use in the child.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import psycopg

__all__ = ["ForkAware", "release", "watch"]


class ForkAware(Protocol):
    """An object told, in a child process, that it was forked."""

    def after_fork_in_child(self) -> None:
        """Let go of what the parent process owns; called in the child, right after the fork."""
        ...


_watched: weakref.WeakSet[Any] = weakref.WeakSet()


def watch(obj: ForkAware) -> None:
    """Call ``obj.after_fork_in_child()`` in every child process forked from now on.

    Only a weak reference is kept: a component that is garbage-collected is forgotten.

    :param obj: the object to tell.
    """
    _watched.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_watched):
        obj.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def release(connections: Iterable[psycopg.Connection[Any]]) -> int:
    """Close connections inherited from the parent process without touching their sessions.

    Each connection's socket is first replaced, in this process only, by ``/dev/null``
    (``os.dup2``), so that the Terminate message libpq sends when it closes goes nowhere; the
    parent's socket, and its session, stay as they were. A connection whose socket cannot be
    replaced is left open rather than risk ending the parent's session.

    :param connections: connections inherited through ``os.fork()``.
    :return: how many were closed.
    """
    closed = 0
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in connections:
            pgconn = conn.pgconn
            try:
                fd = pgconn.socket
            except psycopg.Error:
                fd = -1  # no socket: closing sends nothing
            if fd >= 0:
                try:
                    os.dup2(devnull, fd)
                except OSError:
                    continue
            pgconn.finish()
            closed += 1
    finally:
        os.close(devnull)
    return closed
