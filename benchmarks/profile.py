"""Where a contender's time goes per request: ``python -m benchmarks.profile``.

Runs one contender's W1 request (or W3 checkout) in a loop on the benchmark's server, pinned as
in the benchmark, while ``py-spy`` samples this process from outside (wall-clock time, waits
included); then prints the call tree with each frame's time *per request*, in µs. Needs
``py-spy`` (``pip install py-spy``) and the right to trace a process (root, or
``ptrace_scope`` 0); not part of ``nox -s bench``.

Example: ``python -m benchmarks.profile --contender ours --mode transactional``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from time import perf_counter

from pip_postgres.embedded import EmbeddedPostgres

from .contenders import CONTENDERS, OURS
from .server import Target, default_cpu, pin, start_server

_LINE = re.compile(r":\d+\)$")


class _Node:
    def __init__(self) -> None:
        self.samples = 0
        self.children: dict[str, _Node] = {}


def _tree(collapsed: str, anchor: str) -> tuple[_Node, int]:
    """Merge py-spy's collapsed stacks below the frame ``anchor``; (tree, all samples)."""
    root, total = _Node(), 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        found = [i for i, frame in enumerate(frames) if frame.startswith(anchor + " ")]
        if not found:
            continue
        node = root
        node.samples += int(count)
        for frame in frames[found[0] + 1 :]:
            node = node.children.setdefault(frame, _Node())
            node.samples += int(count)
    return root, total


def _lines(node: _Node, scale: float, least: float, depth: int, out: list[str]) -> None:
    for name, child in sorted(node.children.items(), key=lambda kv: -kv[1].samples):
        micros = child.samples * scale
        if micros >= least:
            out.append(f"{micros:8.2f} µs  {'  ' * depth}{name}")
            own = (child.samples - sum(c.samples for c in child.children.values())) * scale
            if child.children and own >= least:
                out.append(f"{own:8.2f} µs  {'  ' * (depth + 1)}(in the function itself)")
            _lines(child, scale, least, depth + 1, out)


def _loop(op: object, seconds: float) -> tuple[int, float]:
    run = op  # the anchor frame of the profile
    assert callable(run)
    requests, start = 0, perf_counter()
    while perf_counter() - start < seconds:
        for _ in range(100):
            run()
        requests += 100
    return requests, perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    """Profile the loop; print the tree."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("--contender", default=OURS, choices=sorted(CONTENDERS))
    parser.add_argument("--mode", default="transactional", choices=["transactional", "autocommit"])
    parser.add_argument("--workload", default="W1", choices=["W1", "W3"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=int, default=200, help="samples/s (each one pauses the process)"
    )
    parser.add_argument("--least", type=float, default=0.5, help="hide frames below (µs)")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    server = start_server()
    output = Path(tempfile.mkdtemp(prefix="bench-profile-")) / "stacks.txt"
    try:
        pin(server, None if args.no_pin else default_cpu())
        autocommit = args.mode == "autocommit"
        session = CONTENDERS[args.contender].open(Target.of(server), 8, autocommit)
        try:
            op = session.request if args.workload == "W1" else session.checkout
            _loop(op, 1.0)  # warm-up
            spy = subprocess.Popen(
                [py_spy, "record", "--pid", str(os.getpid()), "--idle",
                 "--rate", str(args.rate), "--format", "raw", "--output", str(output),
                 "--duration", str(int(args.seconds) + 2)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            if hasattr(os, "sched_setaffinity"):  # not on the CPU it measures
                everywhere = set(range(os.cpu_count() or 1))
                others = everywhere - os.sched_getaffinity(0)
                os.sched_setaffinity(spy.pid, others or everywhere)
            _loop(op, 0.5)  # py-spy attaches
            requests, elapsed = _loop(op, args.seconds)
            _loop(op, 3.0)  # until py-spy's duration ends
            _, errors = spy.communicate(timeout=60)
        finally:
            session.close()
    finally:
        if isinstance(server, EmbeddedPostgres):
            server.stop()
    if not output.exists():
        print(f"py-spy wrote nothing:\n{errors}", file=sys.stderr)
        return 1
    root, _ = _tree(output.read_text(), "_loop")
    # a frame's share of the samples below _loop, times the time of one request
    scale = elapsed / requests * 1e6 / max(1, root.samples)
    label = CONTENDERS[args.contender].label
    print(
        f"{label}, {args.workload} {args.mode}: {requests / elapsed:,.0f} requests/s "
        f"({elapsed / requests * 1e6:.1f} µs each) while sampled; time per request by frame:"
    )
    lines: list[str] = []
    _lines(root, scale, args.least, 0, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
