"""Write the small intersphinx inventories the documentation links through.

The documentation builds without network, so Sphinx cannot download ``objects.inv`` from
docs.python.org or psycopg.org. These hand-made inventories list only the objects our pages
and docstrings refer to, each mapped to its real public URL, and are committed beside this
script. After adding a reference to a Python or psycopg object, add it below and run::

    python docs/_inventories/make_inventories.py

The files use Sphinx's inventory format version 2: four header lines, then zlib-compressed
lines ``name domain:role priority uri display-name``, where a URI ending in ``$`` stands for
the name itself and a display name ``-`` for the name. Sphinx writes inventories only from a
build environment (``sphinx.util.inventory.InventoryFile.dump``), so this script writes the
format itself, then reads each file back with Sphinx's own parser to check it.
"""

from __future__ import annotations

import io
import posixpath
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (name, domain:role, page below the project's base URL). The anchor is the object's name
#: (``module-<name>`` for a module) unless the page gives one after ``#``.
Entry = tuple[str, str, str]

PYTHON: list[Entry] = [
    # built-in types, functions and constants
    ("str", "py:class", "library/stdtypes.html"),
    ("bytes", "py:class", "library/stdtypes.html"),
    ("bytearray", "py:class", "library/stdtypes.html"),
    ("dict", "py:class", "library/stdtypes.html"),
    ("list", "py:class", "library/stdtypes.html"),
    ("tuple", "py:class", "library/stdtypes.html"),
    ("int", "py:class", "library/functions.html"),
    ("float", "py:class", "library/functions.html"),
    ("bool", "py:class", "library/functions.html"),
    ("object", "py:class", "library/functions.html"),
    ("type", "py:class", "library/functions.html"),
    ("repr", "py:function", "library/functions.html"),
    ("None", "py:data", "library/constants.html"),
    ("True", "py:data", "library/constants.html"),
    ("False", "py:data", "library/constants.html"),
    ("BaseException", "py:exception", "library/exceptions.html"),
    ("Exception", "py:exception", "library/exceptions.html"),
    ("ValueError", "py:exception", "library/exceptions.html"),
    ("RuntimeError", "py:exception", "library/exceptions.html"),
    ("TimeoutError", "py:exception", "library/exceptions.html"),
    # standard library
    ("threading", "py:module", "library/threading.html"),
    ("threading.Lock", "py:class", "library/threading.html"),
    ("threading.Thread", "py:class", "library/threading.html"),
    ("contextlib", "py:module", "library/contextlib.html"),
    ("contextlib.AbstractContextManager", "py:class", "library/contextlib.html"),
    ("contextlib.AbstractAsyncContextManager", "py:class", "library/contextlib.html"),
    ("dataclasses", "py:module", "library/dataclasses.html"),
    ("dataclasses.dataclass", "py:function", "library/dataclasses.html"),
    ("dataclasses.field", "py:function", "library/dataclasses.html"),
    ("collections.abc", "py:module", "library/collections.abc.html"),
    ("collections.deque", "py:class", "library/collections.html"),
    ("collections.abc.Mapping", "py:class", "library/collections.abc.html"),
    ("collections.abc.Sequence", "py:class", "library/collections.abc.html"),
    ("collections.abc.Iterator", "py:class", "library/collections.abc.html"),
    ("collections.abc.Iterable", "py:class", "library/collections.abc.html"),
    ("collections.abc.Hashable", "py:class", "library/collections.abc.html"),
    ("collections.abc.Callable", "py:class", "library/collections.abc.html"),
    ("select", "py:module", "library/select.html"),
    ("select.select", "py:function", "library/select.html"),
    ("typing", "py:module", "library/typing.html"),
    ("typing.Any", "py:data", "library/typing.html"),
    ("typing.ClassVar", "py:data", "library/typing.html"),
    ("typing.Protocol", "py:class", "library/typing.html"),
    ("typing.runtime_checkable", "py:function", "library/typing.html"),
    ("pathlib.Path", "py:class", "library/pathlib.html"),
    ("types.TracebackType", "py:class", "library/types.html"),
    ("os.environ", "py:data", "library/os.html"),
    ("os.register_at_fork", "py:function", "library/os.html"),
    ("math.ceil", "py:function", "library/math.html"),
    ("context manager", "std:term", "glossary.html#term-context-manager"),
]

PSYCOPG: list[Entry] = [
    ("psycopg", "py:module", "api/module.html"),
    ("psycopg.connect", "py:function", "api/module.html"),
    ("psycopg.Connection", "py:class", "api/connections.html"),
    ("psycopg.Connection.connect", "py:method", "api/connections.html"),
    ("psycopg.Connection.close", "py:method", "api/connections.html"),
    ("psycopg.Connection.execute", "py:method", "api/connections.html"),
    ("psycopg.Connection.commit", "py:method", "api/connections.html"),
    ("psycopg.Connection.rollback", "py:method", "api/connections.html"),
    ("psycopg.Connection.transaction", "py:method", "api/connections.html"),
    ("psycopg.Connection.autocommit", "py:property", "api/connections.html"),
    ("psycopg.Cursor", "py:class", "api/cursors.html"),
    ("psycopg.ClientCursor", "py:class", "api/cursors.html"),
    ("psycopg.types.json.Json", "py:class", "api/types.html"),
    ("psycopg.AsyncConnection", "py:class", "api/connections.html"),
    ("psycopg.AsyncConnection.execute", "py:method", "api/connections.html"),
    ("psycopg.AsyncConnection.cancel_safe", "py:method", "api/connections.html"),
    ("psycopg.AsyncCursor", "py:class", "api/cursors.html"),
    ("psycopg.AsyncCursor.execute", "py:method", "api/cursors.html"),
    ("psycopg.AsyncCursor.executemany", "py:method", "api/cursors.html"),
    ("psycopg.Cursor.execute", "py:method", "api/cursors.html"),
    ("psycopg.Cursor.executemany", "py:method", "api/cursors.html"),
    ("psycopg.sql", "py:module", "api/sql.html"),
    ("psycopg.sql.Composable", "py:class", "api/sql.html"),
    ("psycopg.sql.Composed", "py:class", "api/sql.html"),
    ("psycopg.sql.SQL", "py:class", "api/sql.html"),
    ("psycopg.sql.Identifier", "py:class", "api/sql.html"),
    ("psycopg.errors", "py:module", "api/errors.html"),
    ("psycopg.Error", "py:exception", "api/errors.html"),
    ("psycopg.OperationalError", "py:exception", "api/errors.html"),
    ("psycopg.ProgrammingError", "py:exception", "api/errors.html"),
    ("psycopg.conninfo", "py:module", "api/conninfo.html"),
    ("psycopg.conninfo.conninfo_to_dict", "py:function", "api/conninfo.html"),
    ("psycopg.conninfo.make_conninfo", "py:function", "api/conninfo.html"),
    ("psycopg_pool", "py:module", "api/pool.html"),
    ("psycopg_pool.ConnectionPool", "py:class", "api/pool.html"),
    # The module that defines the class, as type hints name it; psycopg's own inventory lists
    # it too, as the canonical name of the same object.
    ("psycopg_pool.pool.ConnectionPool", "py:class", "api/pool.html#psycopg_pool.ConnectionPool"),
    ("psycopg_pool.ConnectionPool.connection", "py:method", "api/pool.html"),
    ("psycopg_pool.ConnectionPool.getconn", "py:method", "api/pool.html"),
    ("psycopg_pool.ConnectionPool.putconn", "py:method", "api/pool.html"),
    ("psycopg_pool.ConnectionPool.open", "py:method", "api/pool.html"),
    ("psycopg_pool.ConnectionPool.close", "py:method", "api/pool.html"),
    ("psycopg_pool.ConnectionPool.get_stats", "py:method", "api/pool.html"),
    ("psycopg_pool.PoolTimeout", "py:class", "api/pool.html"),
    ("psycopg_pool.AsyncConnectionPool", "py:class", "api/pool.html"),
    (
        "psycopg_pool.pool_async.AsyncConnectionPool",
        "py:class",
        "api/pool.html#psycopg_pool.AsyncConnectionPool",
    ),
    ("psycopg_pool.AsyncConnectionPool.open", "py:method", "api/pool.html"),
    ("psycopg_pool.AsyncConnectionPool.close", "py:method", "api/pool.html"),
    ("psycopg_pool.AsyncConnectionPool.get_stats", "py:method", "api/pool.html"),
    ("psycopg_pool.PoolClosed", "py:class", "api/pool.html"),
    ("psycopg_pool.TooManyRequests", "py:class", "api/pool.html"),
    # labels, for :ref:
    ("connection-pools", "std:label", "advanced/pool.html#connection-pools"),
    ("transactions", "std:label", "basic/transactions.html#transactions"),
]

#: Display names of labels (objects show their own name).
TITLES = {
    "connection-pools": "Connection pools",
    "transactions": "Transactions management",
}

INVENTORIES = {
    "python.inv": ("Python", "3", PYTHON),
    "psycopg.inv": ("psycopg", "3", PSYCOPG),
}


def uri_of(name: str, role: str, page: str) -> str:
    """The URI of an entry, relative to the project's base URL."""
    if "#" in page:
        return page
    return f"{page}#module-{name}" if role == "py:module" else f"{page}#{name}"


def encode(project: str, version: str, entries: list[Entry]) -> bytes:
    """Return an inventory (format version 2) listing ``entries``, sorted as Sphinx sorts."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = []
    seen: set[tuple[str, str]] = set()
    for name, role, page in sorted(entries, key=lambda entry: (entry[1], entry[0])):
        uri = uri_of(name, role, page)
        if name != name.strip() or " " in role or " " in uri or (name, role) in seen:
            raise ValueError(f"bad or duplicate entry: {name!r} {role!r} {uri!r}")
        seen.add((name, role))
        if uri.endswith("#" + name):
            uri = uri[: -len(name)] + "$"
        lines.append(f"{name} {role} 1 {uri} {TITLES.get(name, '-')}\n")
    return header.encode() + zlib.compress("".join(lines).encode(), 9)


def check(data: bytes, base_uri: str, entries: list[Entry]) -> None:
    """Read ``data`` back with Sphinx's own parser and compare it with ``entries``."""
    from sphinx.util.inventory import InventoryFile

    if hasattr(InventoryFile, "loads"):  # Sphinx 8.2 and later
        inventory = InventoryFile.loads(data, uri=base_uri)
    else:  # Sphinx 7.2 to 8.1
        inventory = InventoryFile.load(io.BytesIO(data), base_uri, posixpath.join)
    table = getattr(inventory, "data", inventory)  # role -> name -> item
    for name, role, page in entries:
        item = table[role][name]
        found = getattr(item, "uri", None) or item[2]  # an object since Sphinx 8.2, else a tuple
        expected = f"{base_uri}/{uri_of(name, role, page)}"
        if found != expected:
            raise AssertionError(f"{role} {name}: {found} != {expected}")


def main() -> None:
    """Write every inventory next to this script, and check it."""
    for filename, (project, version, entries) in INVENTORIES.items():
        data = encode(project, version, entries)
        check(data, "https://example.invalid/base", entries)
        (HERE / filename).write_bytes(data)
        print(f"wrote {HERE / filename} ({len(entries)} objects)")


if __name__ == "__main__":
    main()
