"""The PostgreSQL server the benchmark runs against, and how each contender reaches it."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import psycopg
from pip_services4_components.config import ConfigParams
from psycopg.conninfo import make_conninfo

from pip_postgres.embedded import ENV_VAR, EmbeddedPostgres, ExternalPostgres, server_for_tests

Server = EmbeddedPostgres | ExternalPostgres

#: Environment variable that hands the target to child processes (it holds the password).
TARGET_ENV = "PIP_POSTGRES_BENCH_TARGET"


@dataclass(frozen=True)
class Target:
    """Where the server is and who to connect as: the same for every contender."""

    host: str
    port: int
    user: str
    password: str | None
    database: str
    conninfo: str

    @classmethod
    def of(cls, server: Server) -> Target:
        """The target for ``server``."""
        return cls(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            database=server.database,
            conninfo=server.conninfo(),
        )

    def pip_config(self, **options: Any) -> ConfigParams:
        """A Pip.Services configuration (``connection.*``, ``credential.*``, ``options.*``).

        :param options: ``options.`` keys without the prefix, e.g. ``max_pool_size=8``.
        """
        values: dict[str, Any] = {
            "connection.host": self.host,
            "connection.port": self.port,
            "connection.database": self.database,
            "credential.username": self.user,
        }
        if self.password is not None:
            values["credential.password"] = self.password
        values.update({f"options.{key}": value for key, value in options.items()})
        return ConfigParams.from_value(values)

    def via(self, port: int) -> Target:
        """The same target, reached through a proxy on ``127.0.0.1:port``."""
        return replace(
            self, host="127.0.0.1", port=port, conninfo=make_conninfo(self.conninfo, port=port)
        )

    def to_env(self) -> dict[str, str]:
        """The environment for a child process that must reach the server."""
        return {**os.environ, TARGET_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> Target:
        """The target handed over by :meth:`to_env`."""
        return cls(**json.loads(os.environ[TARGET_ENV]))


def start_server() -> Server:
    """The server named by ``PIP_POSTGRES_TEST_URI``, or a new embedded one.

    The caller stops an embedded server.
    """
    return server_for_tests()


def describe_server(server: Server) -> str:
    """E.g. ``embedded PostgreSQL 18.1 on 127.0.0.1`` (no port, no password)."""
    with psycopg.connect(server.conninfo(connect_timeout=10)) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    kind = "embedded" if server.is_embedded else f"external ({ENV_VAR})"
    return f"{kind} PostgreSQL {version[0] if version else '?'} on {server.host}"


#: The CPUs this process could run on when it started: the unpinned placement's.
ALL_CPUS: frozenset[int] = frozenset(
    os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
)


@dataclass(frozen=True)
class Placement:
    """Where the benchmark's processes run, and how far the server is."""

    #: ``unpinned``, ``apart``, ``pinned`` or ``latency``.
    key: str
    #: Its name in the report.
    title: str
    #: Which CPUs the processes may use: ``any`` (the scheduler chooses among all of them),
    #: ``apart`` (the benchmark one CPU, the server's processes the others) or ``one`` (the
    #: benchmark and the server one CPU, the same).
    cpus: str = "any"
    #: The delay the latency proxy adds in each direction, in seconds; 0 for no proxy.
    delay: float = 0.0


def placements(delay: float) -> dict[str, Placement]:
    """The placements, by key; ``delay`` is the latency mode's, in seconds each way."""
    return {
        placement.key: placement
        for placement in (
            Placement("unpinned", "not pinned"),
            Placement("apart", "server on other CPUs", cpus="apart"),
            Placement("pinned", "pinned to one CPU", cpus="one"),
            Placement("latency", f"latency mode, {delay * 1e6:.0f} µs each way", delay=delay),
        )
    }


def unavailable(placement: Placement) -> str | None:
    """Why this machine cannot run ``placement``, or ``None`` if it can."""
    if placement.cpus != "any" and not ALL_CPUS:
        return "this system does not let a process choose its CPUs"
    if placement.cpus == "apart" and len(ALL_CPUS) < 2:
        return "it needs two CPUs, this process may use one"
    return None


def place(server: Server, placement: Placement) -> str:
    """Run this process and the embedded server's processes as ``placement`` says.

    Call it again after a restart (a new postmaster). Threads started later inherit the
    setting; so do the server's new processes.

    :return: a description of what was done, for the report.
    :raises ValueError: the placement is :func:`unavailable` here.
    """
    reason = unavailable(placement)
    if reason:
        raise ValueError(f"placement {placement.key}: {reason}")
    if placement.cpus == "one":
        return pin(server, default_cpu())
    if placement.cpus == "any":
        return pin(server, None)
    own = default_cpu()
    assert own is not None  # (not unavailable(): this process may choose its CPUs)
    others = set(ALL_CPUS) - {own}
    _affinity(server, {own}, others)
    listed = ", ".join(map(str, sorted(others)))
    if not server.is_embedded:
        return f"the benchmark pinned to CPU {own}; the existing server not pinned"
    return f"the benchmark pinned to CPU {own}, every server process to CPU {listed}"


def pin(server: Server, cpu: int | None) -> str:
    """Run this process and the embedded server's processes on CPU ``cpu`` only.

    Then a round trip costs CPU time and two context switches, always. With ``None``, let
    them run on every CPU this process could use when it started (:data:`ALL_CPUS`), which
    undoes an earlier pin. Call it again after a restart (a new postmaster). Threads started
    later inherit the setting; so do the server's new processes.

    :param cpu: the CPU, or ``None`` not to pin.
    :return: a description of what was done, for the report.
    """
    if not ALL_CPUS:
        return "not pinned: this system does not let a process choose its CPUs"
    cpus = set(ALL_CPUS) if cpu is None else {cpu}
    _affinity(server, cpus, cpus)
    if cpu is None:
        return "not pinned: the scheduler placed the client and the server processes"
    if not server.is_embedded:
        return f"the benchmark pinned to CPU {cpu}; the existing server not pinned"
    return f"the benchmark and every server process pinned to CPU {cpu}"


def _affinity(server: Server, own: set[int], theirs: set[int]) -> None:
    """This process on the CPUs ``own``; the embedded server's processes on ``theirs``."""
    os.sched_setaffinity(0, own)
    if server.is_embedded:
        import psutil

        pid_file = server.data_dir / "postmaster.pid"  # type: ignore[union-attr]
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        for process in [postmaster, *postmaster.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a process that just exited
                process.cpu_affinity(sorted(theirs))


def default_cpu() -> int | None:
    """The last CPU this process may run on (``None`` where affinity is not supported)."""
    return max(ALL_CPUS) if ALL_CPUS else None
