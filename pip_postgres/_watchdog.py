"""The watchdog of an embedded server: stops it when the process that owns it dies.

:class:`pip_postgres.embedded.EmbeddedPostgres` runs this file as a process of its own (by
path, so that nothing but the standard library is imported), with a pipe as its standard input
whose other end only the owner holds. The owner releases it by writing to the pipe and closing
it (its :meth:`~pip_postgres.embedded.EmbeddedPostgres.stop`). If the pipe closes with nothing
written, the owner is gone without stopping its server (``SIGTERM``, ``SIGKILL``, a crash):
the watchdog then stops the postmaster named in the data directory's ``postmaster.pid`` (fast
shutdown, then ``SIGKILL`` after :data:`STOP_TIMEOUT_S`) and removes the directories it was
told to remove. Without it, a test run killed by a CI timeout would leave its server running,
its port taken and its data directory on disk.

Usage: ``python _watchdog.py DATA_DIR REMOVE_DATA(0|1) [SOCKET_DIR]``.

Being importable with the standard library alone, it is also the home of the process helpers
that :mod:`pip_postgres.embedded` uses (:func:`postmaster_pid`, :func:`signal_until_gone`,
:func:`pid_alive`, :func:`proc_stat`, :func:`exited`).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: The longest wait for the postmaster to stop after its fast-shutdown signal, in seconds;
#: then it is killed.
STOP_TIMEOUT_S = 30.0
#: The longest wait for a killed postmaster to be gone, in seconds.
KILL_WAIT_S = 5.0
_POLL_S = 0.05


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid in ``data_dir/postmaster.pid``, if that process exists and is a ``postgres``."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:  # a pid file left by a killed server may name a pid that is now someone else's
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc (macOS): trust the pid file
        return pid
    return pid if b"postgres" in command else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan nobody reaps yet).

    :param pid: the process id.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = proc_stat(pid)
    return fields is None or not exited(fields)


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (Linux): state, ppid, pgrp...

    :return: ``None`` where it cannot be read (no such process, or no ``/proc``).
    """
    try:  # "pid (comm) state ppid pgrp ..."
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields or None


def exited(fields: list[str]) -> bool:
    """Whether a process whose ``/proc`` stat fields are ``fields`` is a zombie (or dead)."""
    return fields[0] in ("Z", "X")


def signal_until_gone(pid: int, steps: Sequence[tuple[signal.Signals, float]]) -> None:
    """Send process ``pid`` each signal of ``steps`` in turn until it is gone.

    :param steps: (signal, the longest wait in seconds for the process to be gone after it).
    """
    for sig, wait in steps:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(_POLL_S)


def clean_up(data_dir: Path, remove_data: bool, socket_dir: Path | None) -> None:
    """Stop the server running on ``data_dir``, if any; remove what the owner would have.

    :param data_dir: the server's data directory.
    :param remove_data: remove ``data_dir`` too (a temporary one).
    :param socket_dir: the server's private socket directory, removed; ``None``: none.
    """
    pid = postmaster_pid(data_dir)
    if pid is not None:  # fast shutdown, then SIGKILL
        signal_until_gone(pid, ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGKILL, KILL_WAIT_S)))
    if remove_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    if socket_dir is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    """Wait for the owner; clean up if it went away without releasing the watchdog."""
    data_dir, remove_data = Path(argv[0]), argv[1] == "1"
    socket_dir = Path(argv[2]) if len(argv) > 2 and argv[2] else None
    # Ctrl-C in the owner's terminal is for the owner: its clean-up stops the server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    released = sys.stdin.buffer.read()  # returns when the pipe closes: released, or orphaned
    if not released:
        clean_up(data_dir, remove_data, socket_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
