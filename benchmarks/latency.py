"""The latency mode's network: a delaying TCP proxy in a process of its own.

Over loopback a round trip costs a few tens of µs; between two hosts it costs hundreds. To
show what the contenders cost where round trips cost what they do over a network, the latency
mode connects every contender through one proxy that holds each chunk of data ``delay``
seconds, in each direction, before it forwards it.

The proxy is the test suite's :class:`tests.proxy.FaultProxy` (one home for the proxy: the
tests use it to inject faults, the benchmark only with its ``delay``). It runs in a child
process (``python -m benchmarks.latency DELAY``), so that its threads do not compete for the
benchmark's interpreter lock: a contender with many threads would otherwise slow the proxy
down, and the proxy the contender. It still takes CPU time on the same machine; the report
states what it adds per round trip beyond the delay.
"""

from __future__ import annotations

import contextlib
import ctypes
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

#: The repository's root, where ``python -m benchmarks.latency`` finds both packages.
ROOT = Path(__file__).resolve().parent.parent
#: Linux's ``prctl`` option that sets the timer slack (how late a sleep may end).
_PR_SET_TIMERSLACK = 29


@contextlib.contextmanager
def delaying_proxy(host: str, port: int, delay: float) -> Iterator[int]:
    """Run a proxy to ``host:port`` that delays each direction by ``delay`` seconds.

    :return: (as a context manager) the proxy's port on ``127.0.0.1``.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.latency", host, str(port), repr(delay)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the latency proxy did not start (it said {line!r})")
        yield int(line)
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the child stops when its stdin closes
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(host: str, port: int, delay: float) -> None:
    """In the child: forward until stdin closes."""
    from tests.proxy import FaultProxy

    with contextlib.suppress(OSError, AttributeError):  # 1 µs slack: sleeps end on time
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    with FaultProxy(host, port, max_connections=1000, max_lifetime=7200.0, delay=delay) as proxy:
        print(proxy.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
