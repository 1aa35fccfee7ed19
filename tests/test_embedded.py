"""The embedded server (``pip_postgres.embedded``): interrupted while it initialises."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

_CHILD = """\
import sys
from pathlib import Path

from pip_postgres.embedded import EmbeddedPostgres

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
