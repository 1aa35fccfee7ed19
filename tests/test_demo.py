"""The demo (``python -m pip_postgres.demo``): arguments, server-side work, statistics, Ctrl-C."""

from __future__ import annotations

import argparse
import io
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pip_postgres import PostgresConnection
from pip_postgres.demo import (
    INTERRUPTED_EXIT,
    STAT_MEANINGS,
    _arguments,
    _Progress,
    checkout_statements,
    derived_stats,
    format_stats,
    main,
    run_demo,
    stats_between,
)

from .conftest import Server, admin_query, base_config

# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "named", "problem"),
    [
        (["--threads", "0"], "--threads", "must be between 1 and 1000, got 0"),
        (["--threads", "-3"], "--threads", "must be between 1 and 1000, got -3"),
        (["--threads", "2000"], "--threads", "must be between 1 and 1000, got 2000"),
        (["--checkouts", "0"], "--checkouts", "must be between 1 and 10000000, got 0"),
        (["--pool-size", "0"], "--pool-size", "must be between 1 and 150, got 0"),
        (["--work-ms", "-1"], "--work-ms", "must be a number of milliseconds, 0 or more, got -1"),
        (["--work-ms", "nan"], "--work-ms", "must be a number of milliseconds, 0 or more"),
        (["--threads", "many"], "--threads", "not a whole number: 'many'"),
        (["--checkouts", "1.5"], "--checkouts", "not a whole number: '1.5'"),
        (["--work-ms", "fast"], "--work-ms", "not a number: 'fast'"),
    ],
)
def test_bad_argument_exits_2_with_one_line_naming_it(
    argv: list[str], named: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)  # fails before any server is started
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"python -m pip_postgres.demo: error: argument {named}: {problem}")
    assert "Traceback" not in err


def test_good_arguments_are_parsed() -> None:
    args = _arguments(["--threads", "3", "--checkouts", "7", "--pool-size", "2", "--work-ms", "0"])
    assert (args.threads, args.checkouts, args.pool_size, args.work_ms) == (3, 7, 2, 0.0)
    defaults = _arguments([])
    assert (defaults.threads, defaults.checkouts, defaults.pool_size, defaults.work_ms) == (
        16,
        200,
        4,
        2.0,
    )


# -- the work of a checkout --------------------------------------------------------------------


def test_checkout_statements_sleep_only_when_work_is_asked() -> None:
    assert checkout_statements(2, 5, 0.0) == [
        ("INSERT INTO demo_events VALUES (%s, %s, now())", (2, 5))
    ]
    with_work = checkout_statements(2, 5, 0.05)
    assert with_work[0] == ("SELECT pg_sleep(%s)", (0.05,))
    assert with_work[1:] == checkout_statements(2, 5, 0.0)


@pytest.fixture
def demo_table(pg: Server) -> Iterator[None]:
    yield
    admin_query(pg, "DROP TABLE IF EXISTS demo_events")


def _demo_args(**values: float) -> argparse.Namespace:
    """The demo's arguments, parsed from a command line: ``pool_size=2`` is ``--pool-size 2``."""
    argv: list[str] = []
    for key, value in values.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return _arguments(argv)


@pytest.mark.parametrize(
    ("work_ms", "work"),
    [
        # each of the 6 checkouts ran the sleep (counted after the server answered it)
        (20, "Server-side work: 6 x SELECT pg_sleep(0.02)\n"),
        (0, "Server-side work: none (--work-ms 0)\n"),
    ],
)
def test_work_ms_sets_the_server_side_work(
    work_ms: float, work: str, pg: Server, demo_table: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_demo(pg, _demo_args(threads=2, checkouts=3, pool_size=2, work_ms=work_ms))
    out = capsys.readouterr().out
    assert status == 0
    assert "6 rows written by 2 threads" in out
    assert work in out
    assert ("pg_sleep" in out) is (work_ms > 0)
    assert admin_query(pg, "SELECT count(*) FROM demo_events") == [(6,)]
    # the statistics are those of the run: its 6 checkouts, not the ones before or after it
    assert re.search(r"^  requests_num +6  checkouts asked for$", out, re.M), out


# -- statistics --------------------------------------------------------------------------------


def _checkouts_with_one_wait(pg: Server) -> tuple[dict[str, int], dict[str, int]]:
    """Stats before and after 3 checkouts on a pool of 1, the last of which had to wait."""
    component = PostgresConnection()
    component.configure(base_config(pg, options__max_pool_size=1))
    component.open(None)
    try:
        pool = component.get_connection()
        assert pool is not None
        before = pool.get_stats()
        with component.connection() as conn:
            conn.execute("SELECT 1")
        waited = threading.Event()

        def second() -> None:
            with component.connection() as conn:
                conn.execute("SELECT 1")
            waited.set()

        with component.connection():
            thread = threading.Thread(target=second)
            thread.start()
            deadline = time.monotonic() + 10
            while pool.get_stats().get("requests_waiting", 0) < 1:
                assert time.monotonic() < deadline, "the second checkout never waited"
                time.sleep(0.01)
            time.sleep(0.05)
        thread.join(10)
        assert waited.is_set()
        return before, pool.get_stats()
    finally:
        component.close(None)


def test_derived_figures_come_from_the_counters_of_a_real_pool(pg: Server) -> None:
    before, after = _checkouts_with_one_wait(pg)
    stats = stats_between(before, after)
    assert stats["requests_num"] == 3
    assert stats["requests_queued"] == 1
    assert stats["pool_max"] == 1  # values of the moment are kept as they are
    assert stats["pool_size"] == after["pool_size"]
    figures = derived_stats(stats, elapsed_s=2.0)
    assert figures["checkouts_per_s"] == pytest.approx(3 / 2.0)
    assert figures["mean_wait_ms"] == pytest.approx(stats["requests_wait_ms"] / 3)
    assert figures["waited_share"] == pytest.approx(1 / 3)
    assert figures["mean_queued_wait_ms"] == pytest.approx(stats["requests_wait_ms"] / 1)

    text = format_stats(stats, elapsed_s=2.0)
    lines = text.splitlines()
    for key, meaning in STAT_MEANINGS.items():
        value = stats.get(key, 0)
        assert any(
            re.fullmatch(rf"  {key} +{value:,}  {re.escape(meaning)}", line) for line in lines
        ), (key, text)
    assert re.search(r"^  checkouts per second +2$", text, re.M), text
    mean_wait = f"{stats['requests_wait_ms'] / 3:,.2f} ms"
    assert re.search(rf"^  mean wait per checkout +{re.escape(mean_wait)}$", text, re.M), text
    assert re.search(r"^  checkouts that waited +33\.3 %$", text, re.M), text


def test_format_stats_with_nothing_counted_says_n_a() -> None:
    text = format_stats({"pool_max": 4, "something_new": 7}, elapsed_s=0.0)
    assert re.search(r"^  checkouts per second +n/a$", text, re.M), text
    assert re.search(r"^  mean wait per checkout +n/a$", text, re.M), text
    assert re.search(r"^  requests_num +0  checkouts asked for$", text, re.M), text
    assert re.search(r"^  something_new +7$", text, re.M), text  # unknown counters still shown


# -- Ctrl-C ------------------------------------------------------------------------------------


class _InterruptedTerminal(io.StringIO):
    """A terminal whose next flush is cut short by Ctrl-C, after the text was written."""

    interrupt = False

    def isatty(self) -> bool:
        return True

    def flush(self) -> None:
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt


def test_a_progress_line_cut_short_by_ctrl_c_is_still_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = _InterruptedTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    progress = _Progress(total=10, tty=True)
    progress.show(3, {"pool_size": 2})
    progress.end_line()  # as before a log message: the next show draws a new line
    terminal.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        progress.show(4, {"pool_size": 2})
    progress.end_line()
    print("next message")
    ended = r"\r\[#+\.+\] 4/10 checkouts, [\d,]+/s, pool 2 open, 0 waiting\nnext message\n"
    assert re.search(ended + r"\Z", terminal.getvalue()), terminal.getvalue()
    progress.end_line()  # already ended: nothing more
    assert re.search(ended + r"\Z", terminal.getvalue()), terminal.getvalue()


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except (OSError, IndexError):
        return False


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminal and signals")
def test_ctrl_c_stops_workers_pool_and_server_cleanly(tmp_path: Path) -> None:
    import pty

    # A terminal, so that the demo draws its progress line in place with \r, as for a user.
    master, slave = pty.openpty()
    demo = subprocess.Popen(
        [sys.executable, "-m", "pip_postgres.demo", "--threads", "4",
         "--checkouts", "1000000", "--work-ms", "1"],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    os.close(slave)
    chunks: queue.Queue[bytes] = queue.Queue()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the demo has exited
                chunk = b""
            chunks.put(chunk)
            if not chunk:
                return

    threading.Thread(target=read, daemon=True).start()
    output = b""

    def read_until(pattern: bytes, seconds: float) -> re.Match[bytes]:
        nonlocal output
        deadline = time.monotonic() + seconds
        while (match := re.search(pattern, output)) is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {pattern!r} in {seconds} s: {output!r}"
            try:
                output += chunks.get(timeout=remaining)
            except queue.Empty:
                continue
        return match

    try:
        started = read_until(rb"listening on 127\.0\.0\.1:(\d+) \(data directory (\S+)\)", 90)
        port, data_dir = int(started[1]), Path(started[2].decode())
        postmaster = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        read_until(rb"\r\[[#.]+\] [1-9]\d*/4000000 checkouts", 60)  # checkouts are running
        demo.send_signal(signal.SIGINT)
        status = demo.wait(timeout=90)
        read_until(rb"server stopped\.", 10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
        assert demo.stderr is not None
        stderr = demo.stderr.read().decode()
        os.close(master)

    assert status == INTERRUPTED_EXIT
    assert "Traceback" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr, stderr
    lines = output.decode().replace("\r\n", "\n").split("\n")
    interrupted = [line for line in lines if "Interrupted" in line]
    assert len(interrupted) == 1, lines
    # on a line of its own: not appended to the progress line drawn with \r
    assert re.fullmatch(
        r"Interrupted after \d+/4000000 checkouts: workers stopped, pool closed, server stopped\.",
        interrupted[0],
    ), interrupted
    # the component's log lines ("Connected to", "Disconnected from") each on a line of its own
    joined = [line for line in lines if "PostgreSQL 127.0.0.1" in line and line[:5] != "[---:"]
    assert not joined, joined
    # the server is stopped: its postmaster is gone, its port refuses, its files are removed
    deadline = time.monotonic() + 10
    while not _pid_gone(postmaster):
        assert time.monotonic() < deadline, f"postmaster {postmaster} still running"
        time.sleep(0.05)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass
    assert not data_dir.exists()
