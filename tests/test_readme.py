"""The README's example runs as written, against the test server."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, admin_query

ROOT = Path(__file__).resolve().parent.parent


def readme_example() -> str:
    """The first ```python block of README.md."""
    found = re.search(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)
    assert found, "README.md has no ```python block"
    return found[1]


def quickstart_example() -> str:
    """The code block of the "Configure it in code" section of docs/quickstart.rst."""
    text = (ROOT / "docs" / "quickstart.rst").read_text()
    section = text.split("Configure it in code\n", 1)[1]
    found = re.search(r"^\.\. code-block:: python\n\n(.*?)(?=^\S)", section, re.S | re.M)
    assert found, "no python code block under 'Configure it in code' in docs/quickstart.rst"
    return textwrap.dedent(found[1]).strip("\n") + "\n"


def for_server(example: str, pg: Server) -> str:
    """The example with the test server's address and credentials in place of its own.

    Each ``"key", <literal>`` pair of its ``ConfigParams.from_tuples(...)`` gets the test
    server's value; a key missing from the example fails the test.
    """
    values = {
        "connection.host": pg.host,
        "connection.port": pg.port,
        "connection.database": pg.database,
        "credential.username": pg.user,
        "credential.password": pg.password or "",
    }
    for key, value in values.items():
        example, count = re.subn(
            rf'("{re.escape(key)}", )[^,\n]+(,)', rf"\g<1>{value!r}\g<2>", example
        )
        assert count == 1, f"the example should set {key} once, it does {count} times"
    return example


@pytest.fixture
def no_events_table(pg: Server) -> Iterator[None]:
    admin_query(pg, "DROP TABLE IF EXISTS events")
    yield
    admin_query(pg, "DROP TABLE IF EXISTS events")


def test_quickstart_shows_the_readme_example() -> None:
    assert quickstart_example() == readme_example()


def test_readme_example_runs_as_written(
    pg: Server, no_events_table: None, capsys: pytest.CaptureFixture[str]
) -> None:
    example = for_server(readme_example(), pg)
    assert "localhost" not in example and '"secret"' not in example
    exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "1 events\n" in out, out
    assert "'requests_num': " in out, out
    # the example created the table itself, and its insert was committed
    assert admin_query(pg, "SELECT name FROM events") == [("signup",)]
    # a second run adds a row: CREATE TABLE IF NOT EXISTS leaves the table as it is
    exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})
    assert "2 events\n" in capsys.readouterr().out
