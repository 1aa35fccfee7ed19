"""No secret in any message, exception chain, log line, repr or connection string.

Generated passwords carry a random marker (so that they cannot appear in a text by chance)
and the characters that break naive redaction: URI delimiters, quotes, backslashes, percent
signs, spaces. Each is put into configurations that fail in every way the component knows
(conflicts, malformed URIs, bad hosts, a wrong password or a closed port on the real server)
and into one that works, and every text the component produces is searched for the password
in all the forms it may take.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pip_services4_commons.errors import ApplicationException, ConfigException
from pip_services4_components.config import ConfigParams
from psycopg import sql

from pip_postgres import PostgresConfig, PostgresConnection
from pip_postgres.redaction import redact, secret_forms, uri_secrets

from .conftest import LogCapture, Server, admin_query, base_config

_SPECIAL = " ?/@:%'\\\"#&=+;,[]{}$!*()~^|<>`\t"
_marker = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789", min_size=10)
_specials = st.text(alphabet=_SPECIAL, min_size=1, max_size=8)
_extra = st.text(
    st.characters(categories=["L", "N", "P", "S", "Zs"], exclude_characters="\x00"), max_size=6
)


@st.composite
def passwords(draw: st.DrawFn) -> str:
    """A printable password: a random marker cut in two by special characters."""
    marker = draw(_marker.filter(lambda m: len(set(m)) > 4))
    cut = draw(st.integers(1, len(marker) - 1))
    return marker[:cut] + draw(_specials) + marker[cut:] + draw(_extra)


def forms(password: str) -> set[str]:
    """The forms that must never appear: as it is, and URI-encoded."""
    return {password, quote(password, safe=""), quote(password), quote_plus(password, safe="")}


def chain(error: BaseException) -> Iterator[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        yield current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]


def texts_of(error: BaseException) -> list[str]:
    """Every text an exception shows: message, repr, chain, Pip.Services cause and JSON."""
    texts = []
    for current in chain(error):
        texts += [str(current), repr(current)]
        if isinstance(current, ApplicationException):
            texts += [str(current.cause), str(current.stack_trace)]
            texts.append(json.dumps(current.to_json(), default=str))
    return texts


def assert_hidden(password: str, texts: list[str]) -> None:
    for text in texts:
        for form in forms(password):
            assert form not in text, f"{form!r} shows in {text!r}"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _configure_error(values: dict[str, Any], *, parsed_alone: bool = True) -> ConfigException:
    """The error of ``configure()``; the same as ``PostgresConfig.from_config``'s if
    ``parsed_alone`` (that one does not look at ``store_key``, which needs references)."""
    component = PostgresConnection()
    with pytest.raises(ConfigException) as info:
        component.configure(ConfigParams.from_value(values))
    if parsed_alone:
        with pytest.raises(ConfigException) as again:
            PostgresConfig.from_config(values)
        assert again.value.message == info.value.message
    return info.value


def _bad_configurations(password: str, port: int) -> list[dict[str, Any]]:
    encoded = quote(password, safe="")
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    host = f"127.0.0.1:{port}"
    return [
        # Two connections with different passwords, encoded in their URIs.
        {
            "connections.a.uri": f"postgresql://u:{encoded}@{host}/db",
            "connections.b.uri": f"postgresql://u:{encoded}x@{host}/db",
        },
        # ...and with different SSL key passwords.
        {
            "connections.a.uri": f"postgresql://{host}/db?sslpassword={encoded}",
            "connections.b.uri": f"postgresql://{host}/db?sslpassword=x{encoded}",
        },
        # Malformed URIs and key=value strings, with the password encoded or as it is.
        {"connection.uri": f"postgresql://u:{encoded}@{host}/db?bogus=1"},
        {"connection.uri": f"postgresql://u:{password}@{host}/db?bogus=1"},
        {"connection.uri": f"postgresql://u:{password}@[::1/db"},
        {"connection.uri": f"postgresql://u:{encoded}%@{host}/db"},
        {"connection.uri": f"host=127.0.0.1 port={port} password='{escaped}' junk"},
        {"connection.uri": f"postgresql://{host}/db?sslpassword={password}&bogus=1"},
        # A valid URI beside a bad host, port or option.
        {
            "connection.uri": f"postgresql://u:{encoded}@{host}/db",
            "connection.host": "db..internal",
        },
        {"connection.uri": f"postgresql://u:{encoded}@{host}/db", "connection.port": "x"},
        {"connection.uri": f"postgresql://u:{encoded}@{host}/db", "options.max_pool_size": 0},
        {"connection.host": "a" * 64, "credential.password": password},
        {"connection.host": "127.0.0.1", "credential.password": [password, password]},
        {"connection.host": "h", "credential.username": "u\x00", "credential.password": password},
    ]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(password=passwords())
# a query parameter's value with a colon once gave ":" as a secret, which hid every ": "
@example(password="2::&222223456")
# "%83" in a password put as it is in a URI: libpq decodes it to a byte that is not UTF-8,
# and psycopg's UnicodeDecodeError carried the password's bytes
@example(password="222222%8345/")
def test_configuration_errors_never_show_the_password(password: str) -> None:
    port = closed_port()
    for values in _bad_configurations(password, port):
        error = _configure_error(values)
        assert error.message and ": " in error.message  # names the key
        assert error.__context__ is None and error.__cause__ is None
        assert_hidden(password, texts_of(error))


@settings(max_examples=100, deadline=None)
@given(password=passwords())
def test_secrets_stay_out_of_repr_and_conninfo(password: str) -> None:
    encoded = quote(password, safe="")
    config = PostgresConfig.from_config(
        {
            "connection.uri": f"postgresql://u:{encoded}@127.0.0.1:5433/db"
            f"?sslpassword={encoded}&sslmode=disable&oauth_client_secret={encoded}",
        }
    )
    assert config.password == password
    assert dict(config.secret_params) == {"sslpassword": password, "oauth_client_secret": password}
    kwargs = config.connect_kwargs()
    assert (kwargs["password"], kwargs["sslpassword"]) == (password, password)
    assert_hidden(password, [repr(config), str(config), config.conninfo(), config.describe()])
    assert "sslmode=disable" in config.conninfo()


@settings(max_examples=100, deadline=None)
@given(password=passwords(), text=st.text(max_size=40))
def test_redact_hides_every_form(password: str, text: str) -> None:
    shown = f"{text}{password}|{quote(password, safe='')}|{password!r}|{json.dumps(password)}{text}"
    assert_hidden(password, [redact(shown, [password])])
    assert all(form in secret_forms(password) for form in (password, quote(password, safe="")))
    # Found in a URI that does not parse, as written and decoded.
    found = uri_secrets(f"postgresql://u:{quote(password, safe='')}@h/db?x=%")
    assert password in found


@pytest.fixture(scope="module")
def role(pg: Server) -> Iterator[str]:
    name = f"secrets_{uuid.uuid4().hex[:8]}"
    admin_query(pg, f"CREATE ROLE {name} LOGIN PASSWORD 'initial-Pw-0451'")
    admin_query(pg, f"GRANT ALL ON DATABASE {pg.database} TO {name}")
    try:
        yield name
    finally:
        admin_query(pg, f"REVOKE ALL ON DATABASE {pg.database} FROM {name}")
        admin_query(pg, f"DROP ROLE {name}")


def _set_password(pg: Server, role: str, password: str) -> None:
    import psycopg

    with psycopg.connect(pg.superuser_conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(password=passwords(), as_uri=st.booleans())
def test_server_paths_never_show_the_password(
    pg: Server, role: str, logs: LogCapture, password: str, as_uri: bool
) -> None:
    _set_password(pg, role, password)
    encoded = quote(password, safe="")
    hostport = f"{pg.host}:{pg.port}"

    def configured(values: dict[str, Any]) -> PostgresConnection:
        component = PostgresConnection()
        component.set_references(logs.references)
        component.configure(ConfigParams.from_value({"options.connect_timeout": 2000, **values}))
        return component

    if as_uri:
        right = {"connection.uri": f"postgresql://{role}:{encoded}@{hostport}/{pg.database}"}
        wrong = {"connection.uri": f"postgresql://{role}:{encoded}x@{hostport}/{pg.database}"}
        closed = {"connection.uri": f"postgresql://{role}:{encoded}@127.0.0.1:{closed_port()}/db"}
    else:
        right = dict(base_config(pg, credential__username=role, credential__password=password))
        wrong = dict(
            base_config(pg, credential__username=role, credential__password=password + "x")
        )
        closed = dict(
            base_config(pg, connection__port=closed_port(), credential__password=password)
        )
    seen: list[str] = []
    # It works: the success paths show nothing either.
    component = configured(right)
    component.open(None)
    try:
        with component.connection() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
            seen += [repr(conn), str(conn)]
        pool = component.get_connection()
        assert pool is not None
        seen += [repr(component), str(component), repr(pool), pool.conninfo, str(pool.get_stats())]
    finally:
        component.close(None)
    # It fails: a wrong password (the server refuses it), and a closed port.
    for values in (wrong, closed):
        component = configured(values)
        with pytest.raises(ApplicationException) as info:
            component.open(None)
        assert not component.is_open()
        seen += [*texts_of(info.value), repr(component)]
    text = logs.text()
    assert "Connected to PostgreSQL" in text and "Failed to open" in text
    seen.append(text)
    assert_hidden(password, seen)
    assert_hidden(password + "x", seen)


def test_a_piece_of_a_password_that_libpq_quotes_is_hidden() -> None:
    # An unencoded "/" ends libpq's user information: the rest of the password becomes the
    # start of the database name, which libpq quotes when it cannot decode it.
    error = _configure_error({"connection.uri": "postgresql://u:Qx7v/Kp%zzW3@h/db"})
    assert "invalid percent-encoded token" in error.message
    for piece in ("Qx7v", "Kp%zzW3", "W3@h"):
        assert piece not in error.message
    # Misread but parsed: refused, with what to do, and no piece of it shown.
    for uri in ("postgresql://u:Qx7v/KpW3@h/db", "postgresql://u:Qx7v@KpW3@h/db"):
        error = _configure_error({"connection.uri": uri})
        assert "percent-encode" in error.message
        assert "Qx7v" not in error.message and "KpW3" not in error.message
    # Encoded, the same password is read as written.
    config = PostgresConfig.from_config({"connection.uri": "postgresql://u:Qx7v%2FKp%40W3@h/db"})
    assert config.password == "Qx7v/Kp@W3"
    # Characters libpq reads right where they are need no encoding; nor does an "@" after
    # the host where no ":" precedes it.
    config = PostgresConfig.from_config({"connection.uri": "postgresql://u:a?b#c:d@h/db"})
    assert config.password == "a?b#c:d"
    assert PostgresConfig.from_config({"connection.uri": "postgresql://h/db@x"}).database == "db@x"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("db..internal", "label must have 1 to 63 characters"),
        ("a" * 64 + ".internal", "label must have 1 to 63 characters"),
        (".", "label must have 1 to 63 characters"),
        ("a." * 127 + "ab", "longer than 253 characters"),
        ("x\u0080y", "not a host name"),
        ("bad\u3002\u3002name", "IDNA"),
    ],
)
def test_a_host_the_resolver_would_reject_is_a_config_error(host: str, problem: str) -> None:
    for values in ({"connection.host": host}, {"connections.a.host": host}):
        error = _configure_error(values)
        assert error.message is not None
        assert error.message.startswith(next(iter(values)) + ": ") and problem in error.message


@pytest.mark.parametrize(
    "host",
    [
        "db.example.com.",
        "127.0.0.1",
        "::1",
        "fe80::1%eth0",
        "/var/run/postgresql",
        "bücher.example",
    ],
)
def test_host_names_addresses_and_socket_directories_are_accepted(host: str) -> None:
    assert PostgresConfig.from_config({"connection.host": host}).endpoints[0].host == host


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("options.max_pool_size", [1, 2]),
        ("options.connect_timeout", {"ms": 10}),
        ("connection.port", [5432]),
        ("connection.host", ["h1", "h2"]),
        ("credential.password", {"a": "b"}),
        ("connection.discovery_key", ["a", "b"]),
        ("credential.store_key", ["a"]),
    ],
)
def test_a_list_or_section_where_one_value_is_expected_is_refused(key: str, value: Any) -> None:
    values = {"connection.host": "h", key: value}
    section, _, name = key.partition(".")
    nested = {k: v for k, v in values.items() if k != key}
    for given_as in (values, {**nested, section: {name: value}}):
        error = _configure_error(given_as, parsed_alone=name != "store_key")
        assert error.message == f"{key}: must be a single value, not a list or a section"


@pytest.mark.parametrize(
    "key",
    [
        "credential.username",
        "credential.password",
        "connection.database",
        "options.application_name",
    ],
)
def test_a_nul_character_is_refused_at_configure(key: str) -> None:
    error = _configure_error({"connection.host": "h", key: "ab\x00cd"})
    assert error.message == f"{key}: must not contain a NUL character"


def test_shows_secret_looks_through_the_whole_chain() -> None:
    from pip_postgres.redaction import exception_chain, shows_secret

    secret = "Zq8/Wm@x1"
    try:
        try:
            raise ValueError(f"deep down: {quote(secret, safe='')}")
        except ValueError as inner:
            raise RuntimeError("clean on top") from inner
    except RuntimeError as outer:
        error = outer
    assert [type(e) for e in exception_chain(error)] == [RuntimeError, ValueError]
    assert shows_secret(error, [secret])
    assert not shows_secret(error, ["other-secret"])
    wrapped = ConfigException(None, "X", "clean")
    wrapped.with_cause(Exception(f"cause: {secret}"))
    assert shows_secret(wrapped, [secret])


def test_a_leak_report_hides_a_secret_quoted_in_the_checkout_stack(
    pg: Server, logs: LogCapture
) -> None:
    # The reported stack shows the caller's source lines; this one quotes the SSL key password.
    secret = "Vq3-Leak-Sslpw-7781"
    uri = f"postgresql://{pg.host}:{pg.port}/{pg.database}?sslmode=disable&sslpassword={secret}"
    values = dict(base_config(pg, options__leak_detection_threshold=100))
    del values["connection.host"], values["connection.port"], values["connection.database"]
    component = PostgresConnection()
    component.set_references(logs.references)
    component.configure(ConfigParams.from_value({**values, "connection.uri": uri}))
    component.open(None)
    try:
        with component.connection() as conn:  # the source line: "Vq3-Leak-Sslpw-7781"
            # It reaches libpq, though it is not in the connection string.
            given = {option.keyword: option.val for option in conn.pgconn.info}
            assert given[b"sslpassword"] == secret.encode()
            pool = component.get_connection()
            assert pool is not None
            assert secret not in pool.conninfo and secret not in repr(component)
            deadline = time.monotonic() + 10
            while pool.get_stats()["leaks_reported"] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
        text = logs.text()
        assert "Connection leak suspected" in text
        assert "the source line: " in text
        assert secret not in text
    finally:
        component.close(None)
