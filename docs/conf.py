"""Sphinx configuration for the pip_postgres documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``nox -s docs`` adds
``-n``). The package must be importable; the nox session installs it.
"""

from __future__ import annotations

import sys
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.intersphinx import missing_reference
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.typing import stringify_annotation

import pip_postgres

project = "pip_postgres"
author = "pip_postgres contributors"
copyright = "pip_postgres contributors"
release = pip_postgres.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "_inventories"]

html_theme = "furo"
html_title = f"pip_postgres {release}"

# -- autodoc ---------------------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Types of documented parameters, and return types. Without this every class would also list
# its constructor's parameters untyped and undescribed (dataclass fields are documented as
# attributes instead) and CheckoutTimeout would list psycopg's internal exception arguments.
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"show-inheritance": True}

# -- intersphinx -----------------------------------------------------------------------------
# The builds run without network. Each inventory is a committed, hand-made file (made by
# _inventories/make_inventories.py); a local path as the second item means Sphinx reads that
# file and never tries to download one. The links point at the real public pages.

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", "_inventories/python.inv"),
    "psycopg": ("https://www.psycopg.org/psycopg3/docs", "_inventories/psycopg.inv"),
}

# -- nitpicky mode (``nox -s docs`` passes -n) -----------------------------------------------
# Pip.Services publishes no Sphinx inventory: its classes stay plain text, not links.

nitpick_ignore_regex = [
    (r"py:.*", r"pip_services4_\w+(\..+)?"),
    (
        r"py:(class|exc|obj)",
        r"ConfigParams|IContext|IReferences|ConfigException|ConnectionException"
        r"|InvalidStateException",
    ),
    # The private context manager that PostgresConnection.connection() returns.
    (r"py:class", r"pip_postgres\.connection\._Checkout"),
    # psycopg2's classes (a base of Psycopg2CompatError when psycopg2 is installed): their
    # documentation has no inventory we ship.
    (r"py:(class|exc)", r"psycopg2\..+"),
    (r"py:class", r"pip_postgres\.connection\._Held|pip_postgres\.connection\._PostgresComponent"),
    (r"py:class", r"pip_postgres\.connection\._[PC]|pip_postgres\.checkout\._M"),
    # The type variables of the persistence classes (the item and its id).
    (r"py:(class|obj)", r"pip_postgres\.persistence\.[TK]"),
]


def _reexported_constant_doc(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give a constant re-exported by a package the ``#:`` comment of its home module.

    For ``pip_postgres.DEFAULT_PORT`` autodoc reads ``#:`` comments in
    ``pip_postgres/__init__.py`` only, finds none and falls back to ``int``'s docstring.
    """
    package, _, attribute = name.rpartition(".")
    if what != "data" or package != "pip_postgres":
        return
    if ("", attribute) in ModuleAnalyzer.for_module(package).find_attr_docs():
        return
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith(package + ".") and getattr(module, attribute, None) is obj:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs().get(("", attribute))
            if docs:
                lines[:] = list(docs)
                return


def _imported_name_in_hint(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    """Link a bare imported name in a constructor's type hints through intersphinx.

    The modules use ``from __future__ import annotations`` and autodoc evaluates the hints of
    methods but not those of a class's constructor, so ``data_dir: Path | None`` arrives as
    the bare name ``Path``. Look it up in the documented module and retry with its full name.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.isidentifier():
        return None
    obj = getattr(sys.modules.get(node.get("py:module") or ""), target, None)
    if not isinstance(obj, type):
        return None
    retry = node.deepcopy()
    retry["reftarget"] = stringify_annotation(obj, "fully-qualified-except-typing")
    return missing_reference(app, env, retry, contnode)


def setup(app: Sphinx) -> None:
    """Connect the hooks above."""
    app.connect("autodoc-process-docstring", _reexported_constant_doc)
    app.connect("missing-reference", _imported_name_in_hint)
