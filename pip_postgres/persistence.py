"""Pip.Services persistence components on :class:`~pip_postgres.PostgresConnection`.

:class:`PostgresPersistence` stores data items of any kind in one table;
:class:`IdentifiablePostgresPersistence` adds the operations on items with an ``id``;
:class:`IdentifiableJsonPostgresPersistence` keeps each item as a JSON document in a table of
two columns, ``id`` and ``data JSONB``. They have the public surface of the classes of the
published ``pip-services4-postgres`` package, so that a subclass written for those works here
after its imports change. What differs:

- every statement runs in a checkout of :meth:`PostgresConnection.connection` (committed, or
  rolled back when it fails, and the connection always returned);
- values are always sent as query parameters, and table, schema and column names are always
  quoted as identifiers (:mod:`psycopg.sql`), so that no value can change a statement;
- a filter is either the Pip.Services condition string, or the safe form: a
  :class:`psycopg.sql.Composable` with its parameters (``params=``);
- :meth:`~PostgresPersistence.open` fails with the server's own reason when the schema cannot
  be created, instead of logging it and opening anyway;
- items come back as plain ``dict`` rows (override
  :meth:`~PostgresPersistence._convert_to_public` to build objects of your own).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import json
import random
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, cast

import psycopg
from pip_services4_commons.errors import (
    ConfigException,
    ConnectionException,
    InvalidStateException,
)
from pip_services4_components.config import ConfigParams, IConfigurable
from pip_services4_components.context import ContextResolver, IContext
from pip_services4_components.refer import (
    DependencyResolver,
    IReferenceable,
    IReferences,
    IUnreferenceable,
)
from pip_services4_components.run import ICleanable, IOpenable
from pip_services4_data.keys import IdGenerator
from pip_services4_data.query import DataPage, PagingParams, SortParams
from pip_services4_observability.log import CompositeLogger
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .config import _Section, configured_secrets
from .connection import PostgresConnection
from .redaction import redact, shows_secret

__all__ = [
    "DEFAULT_MAX_PAGE_SIZE",
    "Filter",
    "IdentifiableJsonPostgresPersistence",
    "IdentifiablePostgresPersistence",
    "Params",
    "PostgresPersistence",
    "Query",
    "Select",
    "Sort",
    "Statement",
    "public_fields",
    "quote_identifier",
]

T = TypeVar("T")
K = TypeVar("K")

#: A row as it comes from the server: column name to value.
Row = dict[str, Any]
#: A piece of SQL built with :mod:`psycopg.sql`: ``sql.SQL("...")``, or what its
#: ``format()`` or ``+`` return (a ``sql.Composed``).
Query = sql.SQL | sql.Composed
#: A filter: the Pip.Services condition string (trusted SQL text, put after ``WHERE`` as it
#: is), or a :data:`Query` whose values are placeholders bound to ``params``, the safe form;
#: ``None`` or ``""`` selects every row.
Filter = str | Query | None
#: Values for the placeholders of a filter: a sequence for ``%s``, a mapping for
#: ``%(name)s``.
Params = Sequence[Any] | Mapping[str, Any] | None
#: An order: trusted SQL text put after ``ORDER BY`` (``"name DESC"``), a :data:`Query`,
#: or pip-services ``SortParams`` (column names quoted).
Sort = str | Query | SortParams | None
#: The columns to return: trusted SQL text (``"id, name"``), a :data:`Query`, or a sequence
#: of column names (quoted); default all.
Select = str | Query | Sequence[str] | None
#: A schema statement: trusted SQL text written by the developer, or a :data:`Query`.
Statement = str | Query

#: The most items a page holds by default (``options.max_page_size``).
DEFAULT_MAX_PAGE_SIZE = 100
_MAX_PAGE_SIZE_LIMIT = 1_000_000
#: The connection a persistence takes by reference.
_CONNECTION_DEPENDENCY = "*:connection:postgres:*:1.0"


def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier: ``a"b`` becomes ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


#: No SQL at all.
_NOTHING = sql.Composed([])
#: No id given to a log message.
_NO_ID = object()


def _text(value: str | Query) -> Query:
    return sql.SQL(value) if isinstance(value, str) else value


def _where(filter: Filter) -> sql.Composed:
    if filter is None or (isinstance(filter, str) and not filter.strip()):
        return _NOTHING
    return sql.SQL(" WHERE ") + _text(filter)


def _order_by(sort: Sort) -> sql.Composed:
    if isinstance(sort, SortParams):
        if not sort:
            return _NOTHING
        fields = [
            sql.Identifier(field.name) + sql.SQL(" ASC" if field.ascending else " DESC")
            for field in sort
        ]
        return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(fields)
    if sort is None or (isinstance(sort, str) and not sort.strip()):
        return _NOTHING
    return sql.SQL(" ORDER BY ") + _text(sort)


def _columns(select: Select) -> sql.Composable:
    if isinstance(select, (str, sql.SQL, sql.Composed)):
        return _text(select) if not isinstance(select, str) or select.strip() else sql.SQL("*")
    if not select:
        return sql.SQL("*")
    return sql.SQL(", ").join(sql.Identifier(name) for name in select)


def _index_key(key: str | sql.Composable) -> sql.Composable:
    """An index column: a name (quoted), or an expression (text in parentheses, or SQL)."""
    if not isinstance(key, str):
        return key
    stripped = key.strip()
    if stripped.startswith("(") and stripped.endswith(")"):
        return sql.SQL(stripped)
    return sql.Identifier(key)


def _json_default(value: object) -> object:
    """How the JSON variant stores what JSON has no type for."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored as JSON")


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def public_fields(item: object) -> Row:
    """The fields of a data item, as a new ``dict``.

    :param item: a mapping, a dataclass or an object with attributes; attributes whose name
        starts with ``_`` are left out.
    :raises TypeError: the item is none of those.
    """
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    try:
        attributes = vars(item)
    except TypeError:
        raise TypeError(
            f"a data item must be a mapping, a dataclass or an object with attributes, "
            f"not {type(item).__name__}"
        ) from None
    return {name: value for name, value in attributes.items() if not name.startswith("_")}


def _jsonb_dicts(row: Row) -> Row:
    """``row`` with its ``dict`` values wrapped for a ``JSON``/``JSONB`` column."""
    return {
        column: Jsonb(value, dumps=_dumps) if isinstance(value, dict) else value
        for column, value in row.items()
    }


def _item_id(item: object) -> Any:
    if isinstance(item, Mapping):
        return item.get("id")
    return getattr(item, "id", None)


def _with_id(item: T, id: Any) -> T:
    """A copy of ``item`` with its ``id`` set (the caller's item is left unchanged)."""
    if isinstance(item, Mapping):
        return cast(T, {**item, "id": id})
    public_fields(item)  # raises TypeError for an item that is not a data item
    changed = copy.copy(item)
    setattr(changed, "id", id)  # noqa: B010 - the attribute of any object
    return changed


class PostgresPersistence(
    Generic[T], IReferenceable, IUnreferenceable, IConfigurable, IOpenable, ICleanable
):
    """Abstract persistence component that stores data items in one PostgreSQL table.

    A subclass defines its table in :meth:`_define_schema` and adds the operations it needs,
    built on the protected ``*_by_filter`` methods and on :meth:`_cursor`. Items are plain
    ``dict`` rows on the way out (see :meth:`_convert_to_public`); on the way in, a mapping,
    a dataclass or an object with attributes (see :meth:`_convert_from_public`).

    Configuration parameters:
        - table (or collection): the table name (default: the constructor's ``table_name``)
        - schema: the schema name (default: the constructor's ``schema_name``; none means
          the connection's ``search_path``)
        - options:
            - max_page_size: the most items :meth:`get_page_by_filter` returns in a page
              (default: 100)
        - connection(s), credential(s), other options: the configuration of the private
          :class:`~pip_postgres.PostgresConnection` made when no connection is referenced

    References:
        - ``*:logger:*:*:1.0``: (optional) loggers
        - ``*:connection:postgres:*:1.0``: (optional) the shared
          :class:`~pip_postgres.PostgresConnection`; without it the component opens a private
          one from its own configuration (and from the discovery services and credential
          stores among the references)

    Example::

        class BeaconsPersistence(IdentifiablePostgresPersistence[dict, str]):
            def __init__(self):
                super().__init__("beacons")

            def _define_schema(self):
                self._ensure_schema(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, site_id TEXT, "
                    "label TEXT)").format(self._table_identifier()))

            def get_page_by_site(self, context, site_id, paging):
                return self.get_page_by_filter(
                    context, sql.SQL("site_id = %s"), paging, params=[site_id])
    """

    def __init__(self, table_name: str | None = None, schema_name: str | None = None) -> None:
        """Create the component.

        :param table_name: the table name; configuration key ``table`` overrides it.
        :param schema_name: the schema name; configuration key ``schema`` overrides it.
        """
        #: The table name.
        self._table_name: str | None = table_name
        #: The schema name, or ``None`` for the connection's ``search_path``.
        self._schema_name: str | None = schema_name
        #: The most items in a page (``options.max_page_size``).
        self._max_page_size: int = DEFAULT_MAX_PAGE_SIZE
        #: The logger.
        self._logger: CompositeLogger = CompositeLogger()
        #: Finds the connection among the references.
        self._dependency_resolver: DependencyResolver = DependencyResolver(
            ConfigParams.from_tuples("dependencies.connection", _CONNECTION_DEPENDENCY)
        )
        #: The connection, referenced or private; ``None`` until references are set or
        #: :meth:`open` makes a private one.
        self._connection: PostgresConnection | None = None
        #: The database name, as the connection reported it at :meth:`open`.
        self._database_name: str | None = None
        self._local_connection = False
        self._opened = False
        self._config: ConfigParams | None = None
        self._references: IReferences | None = None
        self._schema_statements: list[Statement] = []
        self._lock = threading.Lock()

    # -- configuration and references ---------------------------------------------------------

    def configure(self, config: ConfigParams) -> None:
        """Configure the component; the connection keys configure a private connection.

        :param config: configuration parameters, see the class description.
        :raises ConfigException: ``options.max_page_size`` is not a whole number from 1 to
            1000000; the message names the key.
        """
        options = _Section(config.get_section("options"), "options.")
        self._max_page_size = options.integer(
            "max_page_size", self._max_page_size, 1, _MAX_PAGE_SIZE_LIMIT
        )
        section = _Section(config, "")
        self._table_name = section.string("table", "collection") or self._table_name
        self._schema_name = section.string("schema") or self._schema_name
        self._config = config
        self._dependency_resolver.configure(config)

    def set_references(self, references: IReferences) -> None:
        """Take the shared connection from the references, or make a private one.

        :param references: references to locate the component dependencies.
        :raises ConfigException: the referenced connection is not a
            :class:`~pip_postgres.PostgresConnection` (the published psycopg2 connection,
            for instance); code ``WRONG_CONNECTION``.
        """
        self._references = references
        self._logger.set_references(references)
        self._dependency_resolver.set_references(references)
        found = self._dependency_resolver.get_one_optional("connection")
        if found is None:
            if self._connection is None or not self._local_connection:
                self._connection, self._local_connection = self._create_connection(), True
            return
        if not isinstance(found, PostgresConnection):
            raise ConfigException(
                None,
                "WRONG_CONNECTION",
                f"{_CONNECTION_DEPENDENCY} must be a pip_postgres.PostgresConnection, "
                f"not {type(found).__module__}.{type(found).__name__}",
            )
        self._connection, self._local_connection = found, False

    def unset_references(self) -> None:
        """Forget the referenced connection (a private one is kept until :meth:`close`)."""
        if not self._local_connection:
            self._connection = None

    def _create_connection(self) -> PostgresConnection:
        connection = PostgresConnection()
        if self._config is not None:
            connection.configure(self._config)
        if self._references is not None:
            connection.set_references(self._references)
        return connection

    # -- schema -------------------------------------------------------------------------------

    def _define_schema(self) -> None:
        """Define the schema with :meth:`_ensure_schema` and :meth:`_ensure_index`.

        Called by every :meth:`open`; what it adds is created by that open only when the
        table does not exist yet. Does nothing here: override it.
        """

    def _ensure_schema(self, schema_statement: Statement) -> None:
        """Add a statement to run when :meth:`open` finds that the table does not exist.

        :param schema_statement: trusted SQL text written by the developer, or a
            :class:`psycopg.sql.Composable` (use :meth:`_table_identifier` for the table).
        """
        self._schema_statements.append(schema_statement)

    def _auto_create_objects(self, schema_statement: Statement) -> None:
        """Add a statement to the schema; the old name of :meth:`_ensure_schema`."""
        self._ensure_schema(schema_statement)

    def _clear_schema(self) -> None:
        """Forget the statements added so far."""
        self._schema_statements = []

    def _ensure_index(
        self,
        name: str,
        keys: Mapping[str, Any] | Sequence[tuple[str | sql.Composable, Any]],
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a ``CREATE INDEX IF NOT EXISTS`` on the table to the schema.

        :param name: the index name (created in the table's schema, as PostgreSQL does).
        :param keys: the columns: a mapping of column name to direction, or (column,
            direction) pairs. A column name is quoted, except a name in parentheses, which is
            an expression (trusted text, as in the published classes:
            ``{"(data->>'name')": 1}``); a column may also be a
            :class:`psycopg.sql.Composable` expression such as ``sql.SQL("(data->>'name')")``.
            The direction is ascending when truthy, descending when falsy (``False``, ``0``;
            note that ``-1`` is truthy).
        :param options: ``unique`` (bool), ``type`` (the index method, e.g. ``"gin"``).
        """
        options = options or {}
        items = keys.items() if isinstance(keys, Mapping) else keys
        columns = [
            _index_key(key) + sql.SQL("" if ascending else " DESC") for key, ascending in items
        ]
        method = str(options.get("type") or "").strip()
        if method.lower().startswith("using "):
            method = method[6:].strip()
        using = sql.SQL(" USING ") + sql.Identifier(method.lower()) if method else _NOTHING
        statement = sql.SQL("CREATE {}INDEX IF NOT EXISTS {} ON {}{} ({})").format(
            sql.SQL("UNIQUE " if options.get("unique") else ""),
            sql.Identifier(name),
            self._table_identifier(),
            using,
            sql.SQL(", ").join(columns),
        )
        self._ensure_schema(statement)

    def _table_identifier(self) -> sql.Identifier:
        """The table, schema-qualified when a schema is set, as a quoted identifier.

        :raises ConfigException: no table name is set.
        """
        if not self._table_name:
            raise ConfigException(
                None,
                "NO_TABLE",
                "table: no table name: configure 'table' or pass it to the constructor",
            )
        if self._schema_name:
            return sql.Identifier(self._schema_name, self._table_name)
        return sql.Identifier(self._table_name)

    def _quote_identifier(self, value: str) -> str:
        """Quote ``value`` as an identifier, doubling the quotes it contains."""
        return quote_identifier(value)

    def _quoted_table_name(self) -> str:
        """The table, schema-qualified when a schema is set, as quoted SQL text.

        :raises ConfigException: no table name is set.
        """
        self._table_identifier()  # checks that there is a table name
        table = quote_identifier(cast(str, self._table_name))
        return f"{quote_identifier(self._schema_name)}.{table}" if self._schema_name else table

    # -- conversion hooks ---------------------------------------------------------------------

    def _convert_to_public(self, value: Row) -> T:
        """Convert a row to the item the component returns; the row itself here.

        :param value: the row, column name to value.
        """
        return cast(T, value)

    def _convert_from_public(self, value: Any) -> Row:
        """Convert an item to the row to store: its public fields.

        See :func:`~pip_postgres.persistence.public_fields`.

        A ``dict`` value is stored as JSON (for a ``JSON`` or ``JSONB`` column); other values
        as psycopg adapts them (a ``list`` becomes an array).

        :param value: a mapping, a dataclass or an object with attributes.
        """
        return _jsonb_dicts(public_fields(value))

    # -- lifecycle ----------------------------------------------------------------------------

    def is_open(self) -> bool:
        """Check whether the component is open."""
        return self._opened

    def open(self, context: IContext | None) -> None:
        """Open the component; does nothing if it is open.

        Opens a private connection (a referenced one must be open already), calls
        :meth:`_define_schema`, and, when the table does not exist, runs the schema statements
        in one transaction, under an advisory lock so that components opening at the same
        time do not race.

        :param context: (optional) context to trace execution through a call chain.
        :raises ConfigException: no table name is set, or the connection is misconfigured.
        :raises ConnectionException: the connection cannot be opened, or the referenced
            connection is not open.
        :raises InvalidStateException: a schema statement failed (code ``SCHEMA_FAILED``); the
            message has the server's reason and the statement. Nothing was created.
        """
        with self._lock:
            if self._opened:
                return
            table = self._table_identifier()
            connection = self._connection
            if connection is None:
                connection, self._local_connection = self._create_connection(), True
                self._connection = connection
            if self._local_connection:
                connection.open(context)
            elif not connection.is_open():
                raise ConnectionException(
                    ContextResolver.get_trace_id(context),
                    "CONNECT_FAILED",
                    f"The PostgreSQL connection of {self._describe()} is not open: open it "
                    "before the persistence (a container opens components in the order of "
                    "its configuration)",
                )
            before = list(self._schema_statements)
            try:
                self._define_schema()
                statements, self._schema_statements = self._schema_statements, before
                self._database_name = connection.get_database_name()
                self._create_schema(context, connection, table, statements)
            except BaseException:
                if self._local_connection:
                    connection.close(context)
                raise
            self._opened = True
        self._logger.debug(context, f"Opened {self._describe()} in database {self._database_name}")

    def _create_schema(
        self,
        context: IContext | None,
        connection: PostgresConnection,
        table: sql.Identifier,
        statements: Sequence[Statement],
    ) -> None:
        if not statements:
            return
        name = self._quoted_table_name()
        failed: tuple[int, str] | None = None  # the statement that failed, and its text
        try:
            with connection.connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
                if self._table_exists(conn):
                    return
                self._logger.debug(context, f"Table {name} does not exist: creating the schema")
                for number, statement in enumerate(statements, 1):
                    failed = (number, _text(statement).as_string(conn))
                    conn.execute(_text(statement))
                failed = None
        except psycopg.Error as error:
            if failed is None:
                raise
            cause = error
        else:
            return
        # Made and raised outside the except block, so that neither the pip-services stack
        # trace nor the hidden context carries the driver's error, which may quote a secret
        # from a statement; it is the cause only when it holds none.
        reason = str(cause).strip() or type(cause).__name__
        failure = self._schema_failed(context, failed, len(statements), reason)
        raise failure from (None if shows_secret(cause, self._secrets()) else cause)

    def _table_exists(self, conn: psycopg.Connection[Any]) -> bool:
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema())",
            (self._table_name, self._schema_name),
        ).fetchone()
        return found is not None

    def _schema_failed(
        self, context: IContext | None, failed: tuple[int, str], count: int, reason: str
    ) -> InvalidStateException:
        number, text = failed
        message = redact(
            f"Could not create the schema of {self._describe()}: statement {number} of "
            f"{count} failed: {reason} (statement: {' '.join(text.split())[:300]})",
            self._secrets(),
        )
        exception = InvalidStateException(
            ContextResolver.get_trace_id(context), "SCHEMA_FAILED", message
        )
        self._logger.error(context, exception, "Failed to create the schema")
        return exception

    def _secrets(self) -> list[str]:
        return [] if self._config is None else configured_secrets(self._config)

    def close(self, context: IContext | None) -> None:
        """Close the component; closes the connection only if it is a private one.

        :param context: (optional) context to trace execution through a call chain.
        """
        with self._lock:
            if not self._opened:
                return
            self._opened = False
            if self._local_connection and self._connection is not None:
                self._connection.close(context)
        self._logger.debug(context, f"Closed {self._describe()}")

    def _describe(self) -> str:
        return f"table {self._quoted_table_name()}" if self._table_name else "a persistence"

    def _trace(self, context: IContext | None, what: str, id: Any = _NO_ID) -> None:
        # Formatted here: pip-services loggers drop None arguments before formatting with %.
        where = self._quoted_table_name()
        message = f"{what} {where}" if id is _NO_ID else f"{what} {where} with id = {id!r}"
        self._logger.trace(context, message)

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"<{type(self).__name__} {self._describe()} {state}>"

    # -- statements ---------------------------------------------------------------------------

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Row]]:
        """A cursor returning ``dict`` rows, in one checkout of the connection.

        The checkout commits when the block ends, or rolls back if it raised; the connection
        always goes back to the pool. (With the connection's ``options.autocommit`` each
        statement commits on its own: group statements in
        ``with cursor.connection.transaction():``.) ::

            with self._cursor() as cursor:
                cursor.execute(
                    sql.SQL("UPDATE {} SET hits = hits + 1 WHERE id = %s").format(
                        self._table_identifier()),
                    [id])

        :raises InvalidStateException: the component is not open (code ``NOT_OPENED``).
        """
        connection = self._connection
        if not self._opened or connection is None:
            raise InvalidStateException(
                None, "NOT_OPENED", f"{type(self).__name__} is not open: call open() first"
            )
        with connection.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            yield cursor

    def _rows(self, query: Query, params: Params = None) -> list[Row]:
        """Run one statement in its own checkout; its rows (none if it returns none)."""
        with self._cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _select(self, select: Select = None) -> sql.Composed:
        return sql.SQL("SELECT {} FROM {}").format(_columns(select), self._table_identifier())

    def _count(self, filter: Filter) -> sql.Composed:
        return sql.SQL("SELECT count(*) AS count FROM {}{}").format(
            self._table_identifier(), _where(filter)
        )

    def _public(self, rows: Sequence[Row]) -> list[T]:
        return [self._convert_to_public(row) for row in rows]

    def _first(self, rows: Sequence[Row]) -> T | None:
        return self._convert_to_public(rows[0]) if rows else None

    # -- operations ---------------------------------------------------------------------------

    def clear(self, context: IContext | None) -> None:
        """Delete every row of the table.

        :param context: (optional) context to trace execution through a call chain.
        """
        self._rows(sql.SQL("DELETE FROM {}").format(self._table_identifier()))

    def get_page_by_filter(
        self,
        context: IContext | None,
        filter: Filter,
        paging: PagingParams | None,
        sort: Sort = None,
        select: Select = None,
        *,
        params: Params = None,
    ) -> DataPage[T]:
        """Get a page of the items that match a filter, in an order.

        The page holds at most ``options.max_page_size`` items. With ``paging.total`` the page
        also has the number of all matching items, counted in the same checkout.

        :param context: (optional) context to trace execution through a call chain.
        :param filter: (optional) a condition, see :data:`~pip_postgres.persistence.Filter`.
        :param paging: (optional) ``skip``, ``take`` and ``total``.
        :param sort: (optional) the order, see :data:`~pip_postgres.persistence.Sort`.
        :param select: (optional) the columns, see :data:`~pip_postgres.persistence.Select`.
        :param params: (keyword) values for the placeholders of ``filter``.
        :return: the page; ``total`` is ``None`` unless ``paging.total``.
        """
        paging = paging if paging is not None else PagingParams()
        skip, take = paging.get_skip(-1), paging.get_take(self._max_page_size)
        query = self._select(select) + _where(filter) + _order_by(sort)
        if skip >= 0:
            query += sql.SQL(" OFFSET {}").format(sql.Literal(skip))
        query += sql.SQL(" LIMIT {}").format(sql.Literal(take))
        with self._cursor() as cursor:
            rows = cursor.execute(query, params).fetchall()
            total = None
            if paging.total:
                counted = cursor.execute(self._count(filter), params).fetchone()
                total = int(counted["count"]) if counted else 0
        self._trace(context, f"Retrieved {len(rows)} from")
        return DataPage(self._public(rows), total)

    def get_count_by_filter(
        self, context: IContext | None, filter: Filter, *, params: Params = None
    ) -> int:
        """Count the items that match a filter.

        :param context: (optional) context to trace execution through a call chain.
        :param filter: (optional) a condition, see :data:`~pip_postgres.persistence.Filter`.
        :param params: (keyword) values for the placeholders of ``filter``.
        """
        rows = self._rows(self._count(filter), params)
        count = int(rows[0]["count"]) if rows else 0
        self._trace(context, f"Counted {count} items in")
        return count

    def get_list_by_filter(
        self,
        context: IContext | None,
        filter: Filter,
        sort: Sort = None,
        select: Select = None,
        *,
        params: Params = None,
    ) -> list[T]:
        """Get all the items that match a filter, in an order (no page limit).

        :param context: (optional) context to trace execution through a call chain.
        :param filter: (optional) a condition, see :data:`~pip_postgres.persistence.Filter`.
        :param sort: (optional) the order, see :data:`~pip_postgres.persistence.Sort`.
        :param select: (optional) the columns, see :data:`~pip_postgres.persistence.Select`.
        :param params: (keyword) values for the placeholders of ``filter``.
        """
        rows = self._rows(self._select(select) + _where(filter) + _order_by(sort), params)
        self._trace(context, f"Retrieved {len(rows)} from")
        return self._public(rows)

    def get_one_random(
        self, context: IContext | None, filter: Filter, *, params: Params = None
    ) -> T | None:
        """Get a random item among those that match a filter.

        :param context: (optional) context to trace execution through a call chain.
        :param filter: (optional) a condition, see :data:`~pip_postgres.persistence.Filter`.
        :param params: (keyword) values for the placeholders of ``filter``.
        :return: the item, or ``None`` when none matches.
        """
        with self._cursor() as cursor:
            counted = cursor.execute(self._count(filter), params).fetchone()
            count = int(counted["count"]) if counted else 0
            rows: list[Row] = []
            if count:
                query = (
                    self._select()
                    + _where(filter)
                    + sql.SQL(" OFFSET {} LIMIT 1").format(sql.Literal(random.randrange(count)))
                )
                rows = cursor.execute(query, params).fetchall()
        self._trace(context, "Retrieved a random item from")
        return self._first(rows)

    def create(self, context: IContext | None, item: T) -> T | None:
        """Insert an item; return it as stored (with the server's defaults).

        :param context: (optional) context to trace execution through a call chain.
        :param item: the item; ``None`` creates nothing.
        :return: the stored item, or ``None`` for ``None``.
        """
        if item is None:
            return None
        row = self._convert_from_public(item)
        rows = self._rows(self._insert(row), list(row.values()))
        self._trace(context, "Created in", row.get("id"))
        return self._first(rows)

    def _insert(self, row: Row, suffix: sql.Composable = _NOTHING) -> sql.Composed:
        if not row:
            return sql.SQL("INSERT INTO {} DEFAULT VALUES{} RETURNING *").format(
                self._table_identifier(), suffix
            )
        return sql.SQL("INSERT INTO {} ({}) VALUES ({}){} RETURNING *").format(
            self._table_identifier(),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
            suffix,
        )

    def delete_by_filter(
        self, context: IContext | None, filter: Filter, *, params: Params = None
    ) -> int:
        """Delete the items that match a filter.

        :param context: (optional) context to trace execution through a call chain.
        :param filter: (optional) a condition, see :data:`~pip_postgres.persistence.Filter`;
            none deletes every item.
        :param params: (keyword) values for the placeholders of ``filter``.
        :return: the number of items deleted.
        """
        query = sql.SQL("DELETE FROM {}{}").format(self._table_identifier(), _where(filter))
        with self._cursor() as cursor:
            count = cursor.execute(query, params).rowcount
        self._trace(context, f"Deleted {count} items from")
        return count


class IdentifiablePostgresPersistence(PostgresPersistence[T], Generic[T, K]):
    """Persistence of items with a unique ``id``, stored in an ``id`` column.

    Adds the operations by id to :class:`PostgresPersistence`. :meth:`create` and :meth:`set`
    give an item without an id a new one (``IdGenerator.next_long()``, 32 hexadecimal
    digits) unless ``_auto_generate_id`` is ``False``. Configuration and references: see
    :class:`PostgresPersistence`.

    Example::

        class BeaconsPersistence(IdentifiablePostgresPersistence[dict, str]):
            def __init__(self):
                super().__init__("beacons")

            def _define_schema(self):
                self._ensure_schema(
                    "CREATE TABLE IF NOT EXISTS " + self._quoted_table_name()
                    + " (id TEXT PRIMARY KEY, site_id TEXT, label TEXT)")
    """

    def __init__(self, table_name: str | None = None, schema_name: str | None = None) -> None:
        """Create the component; see :class:`PostgresPersistence`."""
        super().__init__(table_name, schema_name)
        #: Give an item without an id a new one in :meth:`create` and :meth:`set`.
        self._auto_generate_id: bool = True

    def _convert_from_public_partial(self, value: Mapping[str, Any]) -> Row:
        """Convert the fields of ``update_partially()`` to columns.

        Goes through ``_convert_from_public()``, as in the published classes, so that a
        conversion written there applies to partial updates too.
        """
        return self._convert_from_public(dict(value))

    def _by_id(self, head: sql.Composable) -> sql.Composed:
        return head + sql.SQL(' WHERE "id" = %s RETURNING *')

    def _with_new_id(self, item: T) -> T:
        if _item_id(item) is None and self._auto_generate_id:
            return _with_id(item, IdGenerator.next_long())
        return item

    def get_list_by_ids(self, context: IContext | None, ids: Sequence[K]) -> list[T]:
        """Get the items with these ids (in no particular order; missing ones left out).

        :param context: (optional) context to trace execution through a call chain.
        :param ids: the ids.
        """
        if not ids:
            return []
        rows = self._rows(self._select() + self._in_ids(ids), list(ids))
        self._trace(context, f"Retrieved {len(rows)} from")
        return self._public(rows)

    @staticmethod
    def _in_ids(ids: Sequence[Any]) -> sql.Composed:
        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(ids))
        return sql.SQL(' WHERE "id" IN ({})').format(placeholders)

    def get_one_by_id(self, context: IContext | None, id: K) -> T | None:
        """Get the item with this id.

        :param context: (optional) context to trace execution through a call chain.
        :param id: the id.
        :return: the item, or ``None`` if there is none.
        """
        rows = self._rows(self._select() + sql.SQL(' WHERE "id" = %s'), [id])
        self._trace(context, "Retrieved from", id)
        return self._first(rows)

    def create(self, context: IContext | None, item: T) -> T | None:
        """Insert an item, with a new id if it has none; see :meth:`PostgresPersistence.create`.

        :raises psycopg.Error: ``psycopg.errors.UniqueViolation`` when an item with this id
            exists.
        """
        if item is None:
            return None
        return super().create(context, self._with_new_id(item))

    def set(self, context: IContext | None, item: T) -> T | None:
        """Insert an item, or replace the columns it has if its id exists (an upsert).

        :param context: (optional) context to trace execution through a call chain.
        :param item: the item, given a new id if it has none; ``None`` sets nothing.
        :return: the stored item.
        """
        if item is None:
            return None
        row = self._convert_from_public(self._with_new_id(item))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(column)) for column in row
        )
        suffix = sql.SQL(' ON CONFLICT ("id") DO UPDATE SET {}').format(updates)
        rows = self._rows(self._insert(row, suffix), list(row.values()))
        self._trace(context, "Set in", row.get("id"))
        return self._first(rows)

    def update(self, context: IContext | None, item: T) -> T | None:
        """Replace the columns an existing item has.

        :param context: (optional) context to trace execution through a call chain.
        :param item: the item, with its id.
        :return: the updated item, or ``None`` if no item has this id.
        """
        if item is None:
            return None
        row = self._convert_from_public(item)
        return self._update(context, row.get("id"), row)

    def update_partially(
        self, context: IContext | None, id: K, data: Mapping[str, Any]
    ) -> T | None:
        """Change some fields of an existing item.

        :param context: (optional) context to trace execution through a call chain.
        :param id: the item's id.
        :param data: the fields to change and their new values (an ``AnyValueMap`` or any
            mapping).
        :return: the updated item, or ``None`` if no item has this id.
        """
        if data is None or id is None:
            return None
        return self._update(context, id, self._convert_from_public_partial(data))

    def _update(self, context: IContext | None, id: Any, row: Row) -> T | None:
        if id is None:
            return None
        if not row:
            return self.get_one_by_id(context, id)
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(column)) for column in row
        )
        query = self._by_id(
            sql.SQL("UPDATE {} SET {}").format(self._table_identifier(), assignments)
        )
        rows = self._rows(query, [*row.values(), id])
        self._trace(context, "Updated in", id)
        return self._first(rows)

    def delete_by_id(self, context: IContext | None, id: K) -> T | None:
        """Delete the item with this id.

        :param context: (optional) context to trace execution through a call chain.
        :param id: the id.
        :return: the deleted item, or ``None`` if there was none.
        """
        query = self._by_id(sql.SQL("DELETE FROM {}").format(self._table_identifier()))
        rows = self._rows(query, [id])
        self._trace(context, "Deleted from", id)
        return self._first(rows)

    def delete_by_ids(self, context: IContext | None, ids: Sequence[K]) -> int:
        """Delete the items with these ids.

        :param context: (optional) context to trace execution through a call chain.
        :param ids: the ids.
        :return: the number of items deleted.
        """
        if not ids:
            return 0
        query = sql.SQL("DELETE FROM {}").format(self._table_identifier()) + self._in_ids(ids)
        with self._cursor() as cursor:
            count = cursor.execute(query, list(ids)).rowcount
        self._trace(context, f"Deleted {count} items from")
        return count


class IdentifiableJsonPostgresPersistence(IdentifiablePostgresPersistence[T, K]):
    """Persistence of items with an ``id``, each kept as a JSON document.

    The table has two columns: ``id`` and ``data`` (``JSONB``), which holds the whole item
    (its ``id`` too); :meth:`_ensure_table` defines it. Filters and sorts name the fields
    inside the document, e.g. ``sql.SQL("data->>'site_id' = %s")``. Values JSON has no type
    for are stored as text: dates and times in ISO 8601, decimals and UUIDs as strings; they
    come back as strings. Configuration and references: see :class:`PostgresPersistence`.

    Example::

        class BeaconsPersistence(IdentifiableJsonPostgresPersistence[dict, str]):
            def __init__(self):
                super().__init__("beacons_json")

            def _define_schema(self):
                self._clear_schema()
                self._ensure_table()
                self._ensure_index("beacons_json_site", [(sql.SQL("(data->>'site_id')"), True)])
    """

    def _ensure_table(self, id_type: str = "TEXT", data_type: str = "JSONB") -> None:
        """Add the table (and its schema, if one is set) to the schema statements.

        :param id_type: SQL type of the ``id`` column (trusted text; default ``TEXT``).
        :param data_type: SQL type of the ``data`` column (trusted text; default ``JSONB``).
        """
        if self._schema_name:
            self._ensure_schema(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema_name))
            )
        self._ensure_schema(
            sql.SQL('CREATE TABLE IF NOT EXISTS {} ("id" {} PRIMARY KEY, "data" {})').format(
                self._table_identifier(), sql.SQL(id_type), sql.SQL(data_type)
            )
        )

    def _convert_to_public(self, value: Row) -> T:
        """The document of the row (the row itself when ``data`` was not selected)."""
        data = value.get("data")
        return cast(T, data if isinstance(data, dict) else value)

    def _convert_from_public(self, value: Any) -> Row:
        """The row for an item: its ``id``, and all its public fields as ``data``."""
        fields = public_fields(value)
        return {"id": fields.get("id"), "data": Jsonb(fields, dumps=_dumps)}

    def _convert_from_public_partial(self, value: Mapping[str, Any]) -> Row:
        """The fields of ``update_partially()``, as a document to merge."""
        return {"data": Jsonb(dict(value), dumps=_dumps)}

    def _update(self, context: IContext | None, id: Any, row: Row) -> T | None:
        if id is None:
            return None
        if "id" in row:  # a whole item (update): replace the document
            return super()._update(context, id, row)
        query = self._by_id(
            # Cast, so that a JSON column (``_ensure_table(data_type="JSON")``) merges too.
            sql.SQL('UPDATE {} SET "data" = coalesce("data"::jsonb, \'{{}}\'::jsonb) || %s').format(
                self._table_identifier()
            )
        )
        rows = self._rows(query, [row["data"], id])
        self._trace(context, "Updated partially in", id)
        return self._first(rows)
