"""Benchmarks of ``pip_postgres.PostgresConnection`` against its alternatives.

Run them with ``nox -s bench`` (or ``python -m benchmarks``, ``--quick`` for a smoke run).
They need a real PostgreSQL server: the embedded one by default, or the existing server named
by ``PIP_POSTGRES_TEST_URI``, as for the tests. A full run writes ``docs/benchmarks.rst``.

Modules: :mod:`.server` (the server, its connection parameters and the placements),
:mod:`.latency` (the latency mode's delaying proxy, in a child process), :mod:`.contenders`
(what each contender does per request), :mod:`.workloads` (W1 to W6, interleaved rounds),
:mod:`.memory` (client memory per pooled connection, in child processes), :mod:`.report`
(tables, targets and the docs page) and :mod:`.cli` (the command).
"""
