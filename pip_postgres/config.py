"""Configuration of :class:`~pip_postgres.PostgresConnection`, parsed into frozen value objects.

Everything here is pure: no I/O, no references, no network. The connection component resolves
discovery keys and credential store keys first (see :mod:`pip_postgres.resolver`) and then hands
plain sections to :meth:`PostgresConfig.from_sections`; a configuration that needs no resolution
goes straight through :meth:`PostgresConfig.from_config`.

Every value arrives as :class:`~pip_services4_components.config.ConfigParams` gives it: a string
(from YAML, JSON or an environment variable), a number, or ``None``. An empty string or ``None``
means "not set". Anything else that cannot be used raises
:class:`~pip_services4_commons.errors.ConfigException` whose message names the key and the
problem, and never the password.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pip_services4_commons.errors import ConfigException
from pip_services4_components.config import ConfigParams
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .redaction import SECRET_PARAMS, redact, redact_fragments, uri_password, uri_secrets

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT_MS",
    "DEFAULT_PORT",
    "Endpoint",
    "PostgresConfig",
    "PostgresOptions",
]

#: PostgreSQL's port, used where a connection names no port.
DEFAULT_PORT = 5432

#: The timeout, in milliseconds, that applies where ``options.connect_timeout`` is 0 or not set:
#: long enough for a TLS handshake across a slow network, short enough that a service whose
#: database is unreachable fails at start instead of hanging.
DEFAULT_CONNECT_TIMEOUT_MS = 10_000

#: The largest duration accepted, in milliseconds (about 24.8 days, as in JavaScript timers):
#: a bound that keeps every wait finite and representable.
MAX_DURATION_MS = 2**31 - 1

#: The shortest ``idle_timeout`` and ``max_lifetime`` accepted, in milliseconds: the pool
#: checks idle connections that often, and a connection must live long enough to be used.
MIN_PERIOD_MS = 100

#: The largest pool accepted; PostgreSQL's own ``max_connections`` is rarely above a few
#: thousand.
MAX_POOL_SIZE = 10_000

_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
#: The values of ``options.idle_order``.
_IDLE_ORDERS = ("lifo", "fifo")
#: The values of ``options.reset_session`` and ``options.begin_with_statement``, with what
#: the boolean words mean for them.
_MODES = {"auto": "auto", "always": "always", "never": "never"}
_MODES.update(dict.fromkeys(_TRUE, "always"))
_MODES.update(dict.fromkeys(_FALSE, "never"))


def _error(code: str, key: str, problem: str) -> ConfigException:
    return ConfigException(None, code, f"{key}: {problem}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Section:
    """Typed reads from one configuration section, with errors that name the full key."""

    def __init__(self, values: Mapping[str, Any], prefix: str) -> None:
        self._values = values
        self._prefix = prefix

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def raw(self, *names: str) -> tuple[str, Any]:
        """Return the first name that is set, and its value (``None`` when none is set).

        :raises ConfigException: one of the names holds a list or a section (``ConfigParams``
            flattens ``{"port": [1, 2]}`` into ``port.0`` and ``port.1``), not one value.
        """
        for name in names:
            value = self._values.get(name)
            nested = f"{name}."
            if isinstance(value, (Mapping, list, tuple, set, frozenset)) or any(
                isinstance(key, str) and key.startswith(nested) for key in self._values
            ):
                raise _error(
                    "BAD_VALUE", self.key(name), "must be a single value, not a list or a section"
                )
            if value is not None and not (isinstance(value, str) and value.strip() == ""):
                return name, value
        return names[0], None

    def string(self, *names: str) -> str | None:
        name, value = self.raw(*names)
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray)):
            raise _error("BAD_VALUE", self.key(name), "must be a string")
        text = str(value)
        if "\x00" in text:
            raise _error("BAD_VALUE", self.key(name), "must not contain a NUL character")
        return text

    def number(self, name: str, *, integer: bool) -> float | None:
        _, value = self.raw(name)
        if value is None:
            return None
        key = self.key(name)
        if isinstance(value, bool):
            raise _error("BAD_VALUE", key, f"must be a number, not a boolean ({value!r})")
        if isinstance(value, int):
            return float(value) if not integer else value
        if isinstance(value, float):
            number = value
        else:
            text = str(value).strip()
            pattern = _INTEGER if integer else _NUMBER
            if not pattern.fullmatch(text):
                kind = "a whole number" if integer else "a number"
                raise _error("BAD_VALUE", key, f"must be {kind}, got {_show(value)}")
            number = int(text) if integer else float(text)
        if isinstance(number, float):
            if not math.isfinite(number):
                raise _error("BAD_VALUE", key, f"must be a finite number, got {_show(value)}")
            if integer and not number.is_integer():
                raise _error("BAD_VALUE", key, f"must be a whole number, got {_show(value)}")
        return number

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.number(name, integer=True)
        if value is None:
            return default
        if not low <= value <= high:
            raise _error(
                "BAD_VALUE", self.key(name), f"must be between {low} and {high}, got {value:g}"
            )
        return int(value)

    def milliseconds(
        self, name: str, default_ms: float, *, zero_means_default: bool = False, low: float = 0
    ) -> float:
        """Read a duration in milliseconds, at least ``low``, and return it in seconds."""
        value = self.number(name, integer=False)
        if value is None or (zero_means_default and value == 0):
            value = default_ms
        if not low <= value <= MAX_DURATION_MS:
            raise _error(
                "BAD_VALUE",
                self.key(name),
                f"must be between {low:g} and {MAX_DURATION_MS} milliseconds, got {value:g}",
            )
        return float(value) / 1000.0

    def boolean(self, name: str, default: bool) -> bool:
        _, value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _error("BAD_VALUE", self.key(name), f"must be true or false, got {_show(value)}")

    def mode(self, name: str) -> str:
        """An ``auto``/``always``/``never`` option (``true``, ``false``: always, never)."""
        _, value = self.raw(name)
        text = "auto" if value is None else str(value).strip().lower()
        mode = _MODES.get(text)
        if mode is None:
            raise _error(
                "BAD_VALUE",
                self.key(name),
                f"must be auto, always or never (or true/false), got {_show(value)}",
            )
        return mode

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        value = self.string(name)
        if value is not None and value not in choices:
            raise _error(
                "BAD_VALUE",
                self.key(name),
                f"must be one of {', '.join(choices)}; got {_show(value)}",
            )
        return value


@dataclass(frozen=True)
class Endpoint:
    """One server address: a host name, an IP address or a Unix socket directory, and a port."""

    #: Host name, IP address, or an absolute path to a Unix socket directory.
    host: str
    #: TCP port, 1..65535; default :data:`DEFAULT_PORT` (5432).
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PostgresOptions:
    """The ``options`` section: pool sizing, timeouts, and session settings.

    Durations are configured in milliseconds (Pip.Services' convention) and stored here in
    seconds, the unit psycopg_pool takes.
    """

    #: ``options.max_pool_size``: the most connections the pool opens (pool ``max_size``).
    #: Default 10.
    max_pool_size: int = 10
    #: ``options.min_pool_size``: connections kept open even when idle (pool ``min_size``).
    #: Default 1, so that the first request after a quiet period does not pay for a connect.
    min_pool_size: int = 1
    #: ``options.connect_timeout`` (ms), in seconds: the longest a checkout waits for a
    #: connection (pool ``timeout``) and the longest establishing one new connection may take
    #: (libpq ``connect_timeout``, rounded up to whole seconds, at least 2). 0 or unset means
    #: :data:`DEFAULT_CONNECT_TIMEOUT_MS` (10 s); there is never an endless wait.
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_MS / 1000.0
    #: ``options.idle_timeout`` (ms), in seconds: how long a connection above
    #: :attr:`min_pool_size` may sit unused in the pool before it is closed (pool
    #: ``max_idle``). Default 10 s.
    idle_timeout: float = 10.0
    #: ``options.max_lifetime`` (ms), in seconds: connections older than this are closed and
    #: replaced at their next checkout or return (pool ``max_lifetime``, which shortens it by up
    #: to 5% at random so that connections do not all expire at once). Default 1 hour.
    max_lifetime: float = 3600.0
    #: ``options.max_waiting``: the most callers that may queue for a connection before further
    #: ones fail at once; 0, the default, means no limit.
    max_waiting: int = 0
    #: ``options.autocommit``: hand out connections in autocommit mode. Default ``False``: a
    #: checkout is one transaction, committed on success and rolled back on error.
    autocommit: bool = False
    #: ``options.reset_session``: when a checkout ends with ``RESET ALL``, which undoes the
    #: session settings its caller changed, so that none leaks into the next checkout.
    #: ``auto`` (the default): when a statement of the checkout looked like it changed one
    #: (``SET``, ``RESET``, ``set_config()``); ``always``: when any statement ran; ``never``.
    #: ``true`` and ``false`` mean ``always`` and ``never``. In transactional mode the reset
    #: travels with the COMMIT or ROLLBACK, in the same round trip; in autocommit mode it costs
    #: a round trip of its own.
    reset_session: str = "auto"
    #: ``options.idle_order``: which idle connection a checkout gets. ``lifo``: the one
    #: returned last (a few connections stay busy and warm, and the validation bypass window
    #: applies more often); ``fifo``: the one idle longest, psycopg_pool's own order (work
    #: spreads over every connection). Default ``lifo``; see :doc:`reliability` for why.
    idle_order: str = "lifo"
    #: ``options.begin_with_statement``: send ``BEGIN`` and the first statement of a
    #: transaction without waiting for ``BEGIN``'s answer in between, as PgJDBC and Npgsql
    #: do (they write both at once), which saves a round trip per transaction
    #: (transactional mode only; statements with several parts or a ``COPY`` never).
    #: ``auto`` (the default): if a trial of the pool's first transactions, half
    #: each way, finds it faster where the pool runs (tried again every 5 minutes);
    #: ``always``; ``never`` (psycopg's own way: ``BEGIN`` in a round trip of its own).
    #: ``true`` and ``false`` mean ``always`` and ``never``. See :mod:`pip_postgres.begin`.
    begin_with_statement: str = "auto"
    #: ``options.validation_bypass`` (ms), in seconds: a connection returned to the pool less
    #: than this long ago is handed out without a validation round trip; an older one is
    #: validated first and replaced if it is broken. 0 validates at every checkout.
    #: Default 1 s.
    validation_bypass: float = 1.0
    #: ``options.psycopg2_compat``: a cursor's ``fetchone()``, ``fetchmany()`` or
    #: ``fetchall()`` after a statement without a result (``INSERT`` without ``RETURNING``,
    #: ``DELETE``, DDL) raises :class:`~pip_postgres.pool.Psycopg2CompatError`, which is also a
    #: ``psycopg2.ProgrammingError`` when psycopg2 is importable, so that code written for
    #: psycopg2 (pip-services4-postgres 0.0.1's persistence classes) catches it. Default
    #: ``False``: psycopg's own :class:`psycopg.ProgrammingError`.
    psycopg2_compat: bool = False
    #: ``options.leak_detection_threshold`` (ms), in seconds: a connection checked out for
    #: longer is reported once through the component's logger, with the stack of its
    #: checkout. 0, the default, turns leak detection off (and with it the cost of recording
    #: a stack at each checkout).
    leak_detection_threshold: float = 0.0
    #: ``options.reconnect_timeout`` (ms), in seconds: how long the pool keeps retrying, with
    #: backoff, to replace a lost connection before it gives up until the next checkout asks
    #: for one (pool ``reconnect_timeout``). Short, so that a pool whose server was away
    #: tries again promptly when it is back. Default 5 s.
    reconnect_timeout: float = 5.0
    #: ``options.shutdown_timeout`` (ms), in seconds: how long
    #: :meth:`~pip_postgres.PostgresConnection.close` lets checked-out connections finish
    #: before it cancels their queries and cuts them. Default 5 s.
    shutdown_timeout: float = 5.0
    #: ``options.application_name``: shown in ``pg_stat_activity``. Default: not set.
    application_name: str | None = None
    #: ``options.ssl_mode``: libpq ``sslmode`` (disable, allow, prefer, require, verify-ca,
    #: verify-full). Default: not set, libpq's own default (``prefer``) applies.
    ssl_mode: str | None = None
    #: ``options.ssl_root_cert``: path of the CA certificate file (libpq ``sslrootcert``).
    ssl_root_cert: str | None = None
    #: ``options.ssl_cert``: path of the client certificate file (libpq ``sslcert``).
    ssl_cert: str | None = None
    #: ``options.ssl_key``: path of the client private key file (libpq ``sslkey``).
    ssl_key: str | None = None

    @classmethod
    def from_config(cls, options: Mapping[str, Any], prefix: str = "options.") -> PostgresOptions:
        """Parse and validate an ``options`` section.

        :param options: the section's keys without the ``options.`` prefix, for instance
            ``config.get_section("options")``.
        :param prefix: how keys are named in error messages.
        :raises ConfigException: a value has the wrong type or is out of range.
        """
        section = _Section(options, prefix)
        max_size = section.integer("max_pool_size", cls.max_pool_size, 1, MAX_POOL_SIZE)
        min_size = section.integer("min_pool_size", min(cls.min_pool_size, max_size), 0, max_size)
        default_ms = DEFAULT_CONNECT_TIMEOUT_MS
        return cls(
            max_pool_size=max_size,
            min_pool_size=min_size,
            connect_timeout=section.milliseconds(
                "connect_timeout", default_ms, zero_means_default=True
            ),
            idle_timeout=section.milliseconds(
                "idle_timeout", cls.idle_timeout * 1000, low=MIN_PERIOD_MS
            ),
            max_lifetime=section.milliseconds(
                "max_lifetime", cls.max_lifetime * 1000, low=MIN_PERIOD_MS
            ),
            max_waiting=section.integer("max_waiting", cls.max_waiting, 0, 1_000_000),
            autocommit=section.boolean("autocommit", cls.autocommit),
            reset_session=section.mode("reset_session"),
            begin_with_statement=section.mode("begin_with_statement"),
            idle_order=section.choice("idle_order", _IDLE_ORDERS) or cls.idle_order,
            validation_bypass=section.milliseconds(
                "validation_bypass", cls.validation_bypass * 1000
            ),
            psycopg2_compat=section.boolean("psycopg2_compat", cls.psycopg2_compat),
            leak_detection_threshold=section.milliseconds("leak_detection_threshold", 0),
            reconnect_timeout=section.milliseconds(
                "reconnect_timeout", cls.reconnect_timeout * 1000
            ),
            shutdown_timeout=section.milliseconds("shutdown_timeout", cls.shutdown_timeout * 1000),
            application_name=section.string("application_name"),
            ssl_mode=section.choice("ssl_mode", _SSL_MODES),
            ssl_root_cert=section.string("ssl_root_cert"),
            ssl_cert=section.string("ssl_cert"),
            ssl_key=section.string("ssl_key"),
        )

    def libpq_params(self) -> dict[str, str]:
        """The libpq parameters these options set (SSL, application name, connect timeout)."""
        params = {
            "application_name": self.application_name,
            "sslmode": self.ssl_mode,
            "sslrootcert": self.ssl_root_cert,
            "sslcert": self.ssl_cert,
            "sslkey": self.ssl_key,
        }
        result = {key: value for key, value in params.items() if value is not None}
        # libpq counts whole seconds and treats 1 as 2: round up, never below 2.
        result["connect_timeout"] = str(max(2, math.ceil(self.connect_timeout)))
        return result


@dataclass(frozen=True)
class _Target:
    """What one connection section (after discovery) says: addresses, database, URI params."""

    endpoints: tuple[Endpoint, ...]
    database: str | None
    username: str | None
    password: str | None
    params: dict[str, str]
    secret_params: dict[str, str]


def _port(value: Any, key: str) -> int:
    return _Section({key: value}, "").integer(key, DEFAULT_PORT, 1, 65535)


def _host_problem(host: str) -> str | None:
    """What is wrong with ``host`` as libpq and the resolver would take it, or ``None``.

    A Unix socket directory (an absolute path, or ``@`` and a Linux abstract namespace name)
    and an IP address are taken as they are; a host name must have labels of 1 to 63
    characters, 253 characters at most in all (a final dot is allowed), and encode to IDNA,
    as the resolver (``socket.getaddrinfo``) demands.
    """
    if any(char in host for char in ", \t\r\n\\'\"") or not host.isprintable():
        return "is not a host name, an IP address or a socket directory"
    if host.startswith(("/", "@")):
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        return "is not a valid host name: longer than 253 characters"
    if any(not 1 <= len(label) <= 63 for label in name.split(".")):
        return "is not a valid host name: each dot-separated label must have 1 to 63 characters"
    try:
        name.encode("idna")
    except UnicodeError:
        return "is not a valid host name: it cannot be encoded for the resolver (IDNA)"
    return None


def _check_host(host: str, key: str) -> str:
    problem = _host_problem(host)
    if problem is not None:
        raise _error("BAD_VALUE", key, f"{_show(host)} {problem}")
    return host


def _parse_uri(uri: str, key: str) -> dict[str, str]:
    """Parse a URI or ``key=value`` string with libpq's own parser.

    The error is raised outside the handler of libpq's, so that no exception chain
    (``__context__``) keeps libpq's message, which may quote the whole string.
    """
    problem: str | None = None
    try:
        params = conninfo_to_dict(uri)
    except psycopg.Error as error:
        problem = redact_fragments(str(error).strip(), uri)
    except UnicodeDecodeError:  # its bytes (the error's .object) may be the password's
        problem = (
            "a %-escape in it decodes to bytes that are not UTF-8 text: percent-encode the "
            "UTF-8 bytes of each character (urllib.parse.quote(value, safe=''))"
        )
    if problem is not None:
        raise _error(
            "BAD_URI",
            key,
            f"not a valid postgresql:// URI or key=value connection string ({problem})",
        )
    password = uri_password(uri)
    if password is not None and params.get("password") != password:
        raise _error(
            "BAD_URI",
            key,
            "libpq does not read the user name and password that appear before its last '@': "
            "percent-encode the characters @ / : ? # % and spaces in them, and any '@' "
            "after the host (urllib.parse.quote(password, safe=''))",
        )
    return {name: str(value) for name, value in params.items() if value is not None}


def _ports(section: _Section, uri_ports: list[str], count: int) -> list[int]:
    """Ports for ``count`` hosts: the explicit ``port`` key, else the URI's list or single port."""
    name, value = section.raw("port")
    if value is not None:
        return [_port(value, section.key(name))] * count
    if len(uri_ports) > 1 and len(uri_ports) != count:
        raise _error(
            "BAD_URI", section.key("uri"), f"names {count} hosts but {len(uri_ports)} ports"
        )
    if len(uri_ports) <= 1:
        uri_ports = (uri_ports or [""]) * count
    where = f"{section.key('uri')} port"
    return [_port(port, where) if port.strip() else DEFAULT_PORT for port in uri_ports]


def _parse_target(values: Mapping[str, Any], prefix: str) -> _Target:
    section = _Section(values, prefix)
    uri = section.string("uri")
    params = _parse_uri(uri, section.key("uri")) if uri is not None else {}
    uri_hosts = params.pop("host").split(",") if "host" in params else [""]
    uri_ports = params.pop("port").split(",") if "port" in params else []
    host = section.string("host", "ip")
    if host is not None:
        hosts, host_key = [host.strip()], section.key("host")
    elif uri is not None:
        # A URI without a host means localhost, over TCP.
        hosts, host_key = [h.strip() or "localhost" for h in uri_hosts], section.key("uri")
    else:
        raise _error("NO_HOST", section.key("host"), f"is not set: give it or {section.key('uri')}")
    ports = _ports(section, uri_ports, len(hosts))
    dbname = params.pop("dbname", None)
    password = params.pop("password", None)
    secret_params = {name: params.pop(name) for name in SECRET_PARAMS & params.keys()}
    return _Target(
        endpoints=tuple(
            Endpoint(_check_host(h, host_key), port) for h, port in zip(hosts, ports, strict=True)
        ),
        database=section.string("database") or dbname,
        username=params.pop("user", None),
        password=password,
        params=params,
        secret_params=secret_params,
    )


def _merge_params(
    targets: Sequence[tuple[str, _Target]], attribute: str, *, secret: bool = False
) -> dict[str, str]:
    """Merge the URI parameters of all connections; a secret one's values are never shown."""
    merged: dict[str, str] = {}
    origin: dict[str, str] = {}
    for prefix, target in targets:
        values: dict[str, str] = getattr(target, attribute)
        for name, value in values.items():
            if name in merged and merged[name] != value:
                differs = (
                    f"sets a different {name} than {origin[name]}uri"
                    if secret
                    else f"sets {name}={_show(value)} but {origin[name]}uri sets "
                    f"{_show(merged[name])}"
                )
                raise _error(
                    "CONFLICT", f"{prefix}uri", f"{differs}; all connections share one setting"
                )
            merged.setdefault(name, value)
            origin.setdefault(name, prefix)
    return merged


def _same_everywhere(
    targets: Sequence[tuple[str, _Target]], attribute: str, what: str, *, secret: bool = False
) -> str | None:
    """The value all connections that set it agree on; a secret one is never shown."""
    chosen: str | None = None
    chosen_at = ""
    for prefix, target in targets:
        value = getattr(target, attribute)
        if value is None:
            continue
        if chosen is not None and value != chosen:
            differs = (
                f"differs from {chosen_at}{what}"
                if secret
                else f"is {_show(value)} but {chosen_at}{what} is {_show(chosen)}"
            )
            raise _error(
                "CONFLICT", f"{prefix}{what}", f"{differs}; all connections must name the same one"
            )
        if chosen is None:
            chosen, chosen_at = value, prefix
    return chosen


@dataclass(frozen=True)
class PostgresConfig:
    """Everything needed to open the pool: addresses, database, credential and options.

    Build it with :meth:`from_config`. It is immutable, and neither its ``repr`` nor
    :meth:`conninfo` shows the password or any other secret libpq parameter
    (:data:`~pip_postgres.redaction.SECRET_PARAMS`): those travel in :meth:`connect_kwargs`.
    """

    #: Servers to try, in order (libpq multi-host failover). At least one.
    endpoints: tuple[Endpoint, ...]
    #: Database name; ``None`` lets libpq default it to the user name.
    database: str | None = None
    #: User name; ``None`` lets libpq default it to the operating-system user.
    username: str | None = None
    #: Password; never shown by ``repr`` or ``str``.
    password: str | None = field(default=None, repr=False)
    #: Further libpq parameters taken from ``connection.uri`` (``sslmode``,
    #: ``target_session_attrs``, ...), as sorted (name, value) pairs; never a secret one.
    params: tuple[tuple[str, str], ...] = ()
    #: Secret libpq parameters other than the password taken from ``connection.uri``
    #: (``sslpassword``, ``oauth_client_secret``), as sorted (name, value) pairs; never shown
    #: by ``repr`` or ``str``.
    secret_params: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    #: Pool sizing, timeouts and session settings.
    options: PostgresOptions = field(default_factory=PostgresOptions)

    @classmethod
    def from_config(cls, config: ConfigParams | Mapping[str, Any]) -> PostgresConfig:
        """Parse and validate a whole configuration.

        Reads the ``connection(s)``, ``credential(s)`` and ``options`` sections.

        Connections that name a ``discovery_key`` and credentials that name a ``store_key``
        need references to resolve: use :class:`~pip_postgres.PostgresConnection`, which
        resolves them before it calls :meth:`from_sections`. As the component does, the first
        credential without a ``store_key`` is used; if every credential names one, there is
        nothing to use here, and that is an error (not a configuration without credentials).

        :param config: the component's configuration.
        :raises ConfigException: a value is missing, malformed or out of range, or resolving
            it needs references (``NO_DISCOVERY``, ``NO_CREDENTIAL_STORE``); the message names
            the key.
        """
        params = config if isinstance(config, ConfigParams) else ConfigParams.from_value(config)
        connections = connection_sections(params)
        for prefix, section in connections:
            if string_value((prefix, section), "discovery_key") is not None and not (
                "host" in section or "uri" in section
            ):
                raise _error(
                    "NO_DISCOVERY",
                    f"{prefix}discovery_key",
                    "needs a discovery service: configure PostgresConnection with references",
                )
        credentials = credential_sections(params)
        inline = [c for c in credentials if string_value(c, "store_key") is None]
        if credentials and not inline:
            raise _error(
                "NO_CREDENTIAL_STORE",
                f"{credentials[0][0]}store_key",
                "needs a credential store: configure PostgresConnection with references",
            )
        options = PostgresOptions.from_config(params.get_section("options"))
        return cls.from_sections(connections, inline[0] if inline else None, options)

    @classmethod
    def from_sections(
        cls,
        connections: Sequence[tuple[str, Mapping[str, Any]]],
        credential: tuple[str, Mapping[str, Any]] | None,
        options: PostgresOptions,
    ) -> PostgresConfig:
        """Build a configuration from resolved sections.

        :param connections: (key prefix, section) pairs, in failover order; the prefix, such as
            ``"connections.primary."``, names keys in error messages.
        :param credential: the (key prefix, section) pair of the credential, or ``None``.
        :param options: the parsed options.
        :raises ConfigException: see :meth:`from_config`. Its message never holds a secret
            of the configuration, and it is raised with no exception chain.
        """
        failure: ConfigException
        try:
            if not connections:
                raise _error(
                    "NO_CONNECTION",
                    "connection",
                    "is not set: give connection.host or "
                    "connection.uri (or connections.<name>.host for several servers)",
                )
            targets = [(prefix, _parse_target(section, prefix)) for prefix, section in connections]
            endpoints = tuple(endpoint for _, target in targets for endpoint in target.endpoints)
            params = _merge_params(targets, "params")
            secret_params = _merge_params(targets, "secret_params", secret=True)
            username = _same_everywhere(targets, "username", "uri user")
            password = _same_everywhere(targets, "password", "uri password", secret=True)
            given_username, given_password = _credential_of(credential)
            return cls(
                endpoints=endpoints,
                database=_same_everywhere(targets, "database", "database"),
                username=given_username or username,
                password=given_password or password,
                params=tuple(sorted(params.items())),
                secret_params=tuple(sorted(secret_params.items())),
                options=options,
            )
        except ConfigException as error:
            failure = error
        secrets = _raw_secrets(connections, [credential] if credential else [])
        message = redact(failure.message or "", secrets)
        if message == failure.message:
            raise failure
        raise ConfigException(None, failure.code, message)

    def conninfo(self) -> str:
        """The libpq connection string, without the password or any other secret parameter.

        Those are in :meth:`connect_kwargs`.

        Explicit keys win over the same parameters in ``connection.uri``: ``host``, ``port``,
        ``database``, ``username``, ``password`` and the ``options`` that are set
        (``application_name``, ``ssl_*``) replace what the URI says; ``connect_timeout`` always
        comes from ``options.connect_timeout`` (default 10 s), because the same value bounds the
        pool's checkout wait. Every other URI parameter is passed on as it is.
        """
        params: dict[str, Any] = dict(self.params)
        params.update(self.options.libpq_params())
        params["host"] = ",".join(endpoint.host for endpoint in self.endpoints)
        params["port"] = ",".join(str(endpoint.port) for endpoint in self.endpoints)
        if self.database is not None:
            params["dbname"] = self.database
        if self.username is not None:
            params["user"] = self.username
        return make_conninfo("", **params)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`psycopg.connect` beside :meth:`conninfo`.

        :return: the password (when there is one), the other secret parameters and the
            autocommit mode.
        """
        kwargs: dict[str, Any] = {"autocommit": self.options.autocommit}
        kwargs.update(self.secret_params)
        if self.password is not None:
            kwargs["password"] = self.password
        return kwargs

    def secrets(self) -> list[str]:
        """The secrets of this configuration, for :func:`~pip_postgres.redaction.redact`.

        :return: the password and the values of the other secret parameters that are set.
        """
        found = [value for _, value in self.secret_params]
        return found if self.password is None else [self.password, *found]

    def describe(self) -> str:
        """A short description for logs: servers and database, never the password."""
        servers = ",".join(str(endpoint) for endpoint in self.endpoints)
        return f"{servers}/{self.database or ''}"

    def __str__(self) -> str:
        return f"PostgresConfig({self.describe()}, user={self.username!r})"


def _raw_secrets(
    connections: Sequence[tuple[str, Mapping[str, Any]]],
    credentials: Sequence[tuple[str, Mapping[str, Any]]],
) -> list[str]:
    """Everything in unparsed sections that may be a secret: passwords and URI secrets."""
    found: list[str] = []
    for _, section in connections:
        uri = section.get("uri")
        if isinstance(uri, str):
            found += uri_secrets(uri)
    for _, section in credentials:
        found += [str(section.get(name) or "") for name in ("password", "pass")]
    return found


def configured_secrets(config: ConfigParams) -> list[str]:
    """Every secret a component's configuration holds inline.

    For :func:`~pip_postgres.redaction.redact`: the passwords of its ``credential(s)`` and the
    secrets of its ``connection(s).uri``. Secrets a credential store supplies are not here.

    :param config: the component's configuration.
    """
    return _raw_secrets(connection_sections(config), credential_sections(config))


def _credential_of(
    credential: tuple[str, Mapping[str, Any]] | None,
) -> tuple[str | None, str | None]:
    """The (user name, password) of a credential section; (None, None) without one.

    :raises ConfigException: one of them is not a string, or holds a NUL character.
    """
    if credential is None:
        return None, None
    section = _Section(credential[1], credential[0])
    return section.string("username", "user"), section.string("password", "pass")


def string_value(section: tuple[str, Mapping[str, Any]], name: str) -> str | None:
    """Read one string key of a (key prefix, section) pair.

    :return: the value, or ``None`` when it is not set or blank.
    :raises ConfigException: the value is a list or a section, bytes, or holds a NUL character.
    """
    return _Section(section[1], section[0]).string(name)


def check_credential(credential: tuple[str, Mapping[str, Any]]) -> None:
    """Check the user name and password of a credential section given inline.

    :param credential: the (key prefix, section) pair.
    :raises ConfigException: the user name or password is not a string, or holds a NUL
        character; the message names the key, never the value.
    """
    _credential_of(credential)


def _numbered_sections(
    config: ConfigParams, plural: str, singular: str
) -> list[tuple[str, ConfigParams]]:
    many = config.get_section(plural)
    if len(many) > 0:
        return [(f"{plural}.{name}.", many.get_section(name)) for name in many.get_section_names()]
    one = config.get_section(singular)
    return [(f"{singular}.", one)] if len(one) > 0 else []


def connection_sections(config: ConfigParams) -> list[tuple[str, ConfigParams]]:
    """The ``connections.<name>`` sections in order, or the single ``connection`` section.

    :return: (key prefix, section) pairs; empty when the configuration has no connection.
    """
    return _numbered_sections(config, "connections", "connection")


def credential_sections(config: ConfigParams) -> list[tuple[str, ConfigParams]]:
    """The ``credentials.<name>`` sections in order, or the single ``credential`` section.

    :return: (key prefix, section) pairs; empty when the configuration has no credential.
    """
    return _numbered_sections(config, "credentials", "credential")
