"""The embedded server (``pip_postgres.embedded``): interrupted while it initialises; its
watchdog, when its owner dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

_CHILD = """\
import signal
import sys
from pathlib import Path

from pip_postgres.embedded import EmbeddedPostgres

# Ctrl-C raises KeyboardInterrupt even where the tests run with SIGINT ignored (a background job)
signal.signal(signal.SIGINT, signal.default_int_handler)
# the data directory given, or a new temporary one (under TMPDIR)
with EmbeddedPostgres(data_dir=Path(sys.argv[1]) if sys.argv[1:] else None):
    pass
"""


def _processes_of(directory: Path) -> list[psutil.Process]:
    """The live processes working in ``directory``: on their command line, or as their cwd.

    ``initdb`` names the data directory on its command line; the ``postgres --boot`` and
    ``postgres --single`` it runs get it from the environment, and work in it.
    """
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = process.cwd()
            command = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cwd.startswith(str(directory)) or str(directory) in command:
            found.append(process)
    return found


def _cmdline(process: psutil.Process) -> list[str]:
    """Its command line; empty if it is gone meanwhile (found a moment ago, it may have ended)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _alive(process: psutil.Process) -> bool:
    """Whether ``process`` still runs (a zombie, which its new parent has not reaped, does not)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cleaned(directory: Path) -> bool:
    """Whether ``directory`` is removed or empty."""
    try:
        return not any(directory.iterdir())
    except OSError:  # removed (or being removed)
        return not directory.exists()


def _describe(processes: list[psutil.Process]) -> list[str]:
    described = []
    for process in processes:
        try:
            described.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
        except psutil.Error:
            described.append(f"{process.pid}: gone")
    return described


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and process groups")
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("held", "given"),
    [
        pytest.param(False, False, id="as-is"),
        # postgres --boot/--single stopped (SIGSTOP) as on a busy machine where it has not run
        # yet: left alone, it would still be there after the clean-up, whatever the timing.
        pytest.param(True, False, id="bootstrap-held"),
        # a data directory given: kept, but emptied, so that the next start initialises it
        pytest.param(True, True, id="data-dir-given"),
    ],
)
def test_sigint_to_python_only_during_initdb_leaves_no_process_and_no_directory(
    held: bool, given: bool, tmp_path: Path
) -> None:
    # SIGINT sent to the Python process alone (not to its process group, as a terminal's Ctrl-C
    # is) while initdb's own child runs: the whole command must be killed, not initdb alone.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *([str(tmp / "data")] if given else [])],
        env={**os.environ, "TMPDIR": str(tmp)},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        bootstrapping: list[psutil.Process] = []
        while not bootstrapping:
            assert child.poll() is None, f"the child exited first: {child.communicate()[0]!r}"
            assert time.monotonic() < deadline, "initdb never ran postgres --boot or --single"
            bootstrapping = [
                process
                for process in _processes_of(tmp)
                if {"--boot", "--single"} & set(_cmdline(process))
            ]
            time.sleep(0.005)
        if held:
            for process in bootstrapping:
                process.suspend()
        data_dirs = list(tmp.iterdir())
        assert [path.name.startswith("pip_postgres-") for path in data_dirs] == [not given]
        os.kill(child.pid, signal.SIGINT)  # the Python process only
        # Until the child exits: once its data directory is cleaned, none of them may be alive.
        # (Sampled in this order, so that a process killed before the clean-up never counts.)
        deadline = time.monotonic() + 30
        while child.poll() is None:
            assert time.monotonic() < deadline, "the child did not exit after SIGINT"
            cleaned = _cleaned(data_dirs[0])
            alive = [process for process in bootstrapping if _alive(process)]
            assert not (cleaned and alive), f"still running: {_describe(alive)}"
            time.sleep(0.001)
        output = child.communicate(timeout=10)[0].decode(errors="replace")
        # none left once the child has exited: they were killed before its clean-up ran
        survivors = _processes_of(tmp)
        assert survivors == [], f"still running: {_describe(survivors)}"
        assert [process for process in bootstrapping if _alive(process)] == []
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
        for process in _processes_of(tmp):  # what a failure left behind
            with contextlib.suppress(psutil.Error):
                process.kill()

    assert child.returncode != 0, output
    assert "KeyboardInterrupt" in output, output  # interrupted, not finished
    # nothing wrote to the directory after the child removed what it made there
    time.sleep(0.5)
    assert list(tmp.iterdir()) == ([tmp / "data"] if given else [])
    assert _cleaned(tmp / "data")


# -- the watchdog: a server whose owner dies is stopped all the same ---------------------------

_OWNER = """\
import sys, time
from pathlib import Path

from pip_postgres.embedded import EmbeddedPostgres

server = EmbeddedPostgres(data_dir=Path(sys.argv[1]) if sys.argv[1:] else None)
server.start()
print(server.port, server.data_dir, server._postmaster_pid(), server.socket_dir, flush=True)
time.sleep(60)  # killed long before; bounded all the same
"""


def _watchdogs_of(pid: int, data_dir: Path | str) -> list[psutil.Process]:
    """The watchdogs that process ``pid`` started for ``data_dir`` (alive, zombies left out).

    (The test session's own server, in the same process, has one too.)
    """
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        command = _cmdline(child)
        watchdog = command[1:2] and command[1].endswith("_watchdog.py")
        if watchdog and str(data_dir) in command and _alive(child):
            found.append(child)
    return found


def _port_refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("sig", "given"),
    [
        pytest.param(signal.SIGTERM, False, id="sigterm"),
        pytest.param(signal.SIGKILL, False, id="sigkill"),
        # a data directory given: the server is stopped, the directory kept as it is
        pytest.param(signal.SIGKILL, True, id="sigkill-data-dir-given"),
    ],
)
def test_a_server_whose_owner_dies_is_stopped_and_its_directories_removed(
    sig: signal.Signals, given: bool, tmp_path: Path
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, *([str(tmp / "data")] if given else [])],
        env={**os.environ, "TMPDIR": str(tmp)},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    postmaster: psutil.Process | None = None
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().decode()  # the owner's start is bounded (60 s)
        assert line, owner.communicate(timeout=10)[1].decode(errors="replace")
        port, data_dir, pid, socket_dir = line.split()
        postmaster = psutil.Process(int(pid))
        watchdogs = _watchdogs_of(owner.pid, data_dir)
        assert len(watchdogs) == 1, _describe(watchdogs)
        assert _alive(postmaster) and not _port_refuses(int(port))
        owner.send_signal(sig)
        owner.wait(10)
        deadline = time.monotonic() + 45
        while _alive(postmaster) or Path(socket_dir).exists() or _alive(watchdogs[0]):
            assert time.monotonic() < deadline, "the server outlived its owner"
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        if postmaster is not None and _alive(postmaster):  # what a failure left behind
            with contextlib.suppress(psutil.Error):
                postmaster.kill()
    assert _port_refuses(int(port))
    if given:
        assert (Path(data_dir) / "PG_VERSION").exists()  # kept: the caller's directory
        assert not (Path(data_dir) / "postmaster.pid").exists()  # stopped cleanly (fast)
    else:
        assert not Path(data_dir).exists()
    assert list(tmp.iterdir()) == ([tmp / "data"] if given else [])


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")
@pytest.mark.timeout(120)
def test_stop_releases_the_watchdog_and_restart_keeps_it(tmp_path: Path) -> None:
    from pip_postgres.embedded import EmbeddedPostgres

    data_dir = tmp_path / "data"
    server = EmbeddedPostgres(data_dir=data_dir)
    try:
        server.start()
        watchdogs = _watchdogs_of(os.getpid(), data_dir)
        assert len(watchdogs) == 1, _describe(watchdogs)
        server.restart()
        assert _watchdogs_of(os.getpid(), data_dir) == watchdogs  # the same one, still watching
    finally:
        server.stop()
    deadline = time.monotonic() + 10
    while _alive(watchdogs[0]):
        assert time.monotonic() < deadline, "stop() did not release the watchdog"
        time.sleep(0.05)
    # released, it did nothing: the data directory given is kept
    assert (tmp_path / "data" / "PG_VERSION").exists()
    # restarted from a stopped server, it watches again
    server.start()
    try:
        assert len(_watchdogs_of(os.getpid(), data_dir)) == 1
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.timeout(120)
@pytest.mark.parametrize("held_s", [0.0, 0.3], ids=["pg_ctl-just-started", "postmaster-forked"])
def test_an_owner_killed_while_its_server_starts_leaves_nothing(
    held_s: float, tmp_path: Path
) -> None:
    # pg_ctl start runs in a session of its own and outlives the owner: it is stopped
    # (SIGSTOP) while the owner is killed and resumed after, so that the server comes up, if
    # at all, after the watchdog has seen its owner go.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER],
        env={**os.environ, "TMPDIR": str(tmp)},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pg_ctl: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while not pg_ctl:
            assert owner.poll() is None, "the owner exited before pg_ctl start ran"
            assert time.monotonic() < deadline, "pg_ctl start never ran"
            pg_ctl = [
                process
                for process in _processes_of(tmp)
                if _cmdline(process)[:1] and _cmdline(process)[0].endswith("pg_ctl")
            ]
            time.sleep(0.002)
        for process in pg_ctl:
            process.suspend()
        time.sleep(held_s)  # (with 0.3 s, the postmaster pg_ctl forked is on its way)
        owner.kill()
        owner.wait(10)
        time.sleep(0.5)  # the watchdog sees the pipe close meanwhile
        for process in pg_ctl:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        deadline = time.monotonic() + 45
        while _processes_of(tmp) or any(tmp.iterdir()):
            assert time.monotonic() < deadline, (
                f"left: {_describe(_processes_of(tmp))}, {list(tmp.iterdir())}"
            )
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
        for process in _processes_of(tmp):  # what a failure left behind
            with contextlib.suppress(psutil.Error):
                process.kill()
