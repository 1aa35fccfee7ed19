"""Parsing and validation of the configuration: pure, no server needed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pip_services4_commons.errors import ConfigException
from pip_services4_components.config import ConfigParams
from psycopg.conninfo import conninfo_to_dict

from pip_postgres import DEFAULT_PORT, Endpoint, PostgresConfig, PostgresOptions


def parse(**values: Any) -> PostgresConfig:
    return PostgresConfig.from_config(
        ConfigParams.from_value({k.replace("__", "."): v for k, v in values.items()})
    )


def error_of(**values: Any) -> ConfigException:
    with pytest.raises(ConfigException) as info:
        parse(**values)
    return info.value


def test_host_port_database_credential() -> None:
    config = parse(
        connection__host="db.example",
        connection__port="6543",
        connection__database="app",
        credential__username="svc",
        credential__password="pw",
    )
    assert config.endpoints == (Endpoint("db.example", 6543),)
    assert (config.database, config.username, config.password) == ("app", "svc", "pw")
    params = conninfo_to_dict(config.conninfo())
    assert params["host"] == "db.example"
    assert params["port"] == "6543"
    assert params["dbname"] == "app"
    assert params["user"] == "svc"
    assert "password" not in params
    assert config.connect_kwargs()["password"] == "pw"


def test_port_defaults_to_5432_not_27017() -> None:
    assert DEFAULT_PORT == 5432
    assert parse(connection__host="h").endpoints[0].port == 5432


def test_numbers_arrive_as_numbers_or_strings() -> None:
    as_int = parse(connection__host="h", connection__port=6000, options__max_pool_size=7)
    as_str = parse(connection__host="h", connection__port=" 6000 ", options__max_pool_size="7")
    assert as_int == as_str
    assert as_int.options.max_pool_size == 7


def test_pip_services_aliases_user_pass_ip() -> None:
    config = parse(connection__ip="10.0.0.1", credential__user="u", credential__pass="p")
    assert config.endpoints[0].host == "10.0.0.1"
    assert (config.username, config.password) == ("u", "p")


def test_defaults() -> None:
    options = parse(connection__host="h").options
    assert options == PostgresOptions()
    assert options.max_pool_size == 10
    assert options.min_pool_size == 1
    assert options.connect_timeout == 10.0
    assert options.idle_timeout == 10.0
    assert options.max_lifetime == 3600.0
    assert options.autocommit is False
    assert options.psycopg2_compat is False


def test_options_convert_milliseconds_to_seconds() -> None:
    options = parse(
        connection__host="h",
        options__connect_timeout="2500",
        options__idle_timeout="30000",
        options__max_lifetime="600000",
        options__max_pool_size="20",
        options__min_pool_size="3",
        options__max_waiting="50",
        options__autocommit="true",
        options__psycopg2_compat="yes",
        options__application_name="billing",
    ).options
    assert options.psycopg2_compat is True
    assert options.connect_timeout == 2.5
    assert options.idle_timeout == 30.0
    assert options.max_lifetime == 600.0
    assert (options.max_pool_size, options.min_pool_size, options.max_waiting) == (20, 3, 50)
    assert options.autocommit is True
    assert options.application_name == "billing"


def test_reliability_options() -> None:
    options = parse(
        connection__host="h",
        options__validation_bypass="250",
        options__leak_detection_threshold="30000",
        options__reconnect_timeout="8000",
        options__shutdown_timeout="2000",
        options__reset_session="false",
    ).options
    assert options.validation_bypass == 0.25
    assert options.leak_detection_threshold == 30.0
    assert options.reconnect_timeout == 8.0
    assert options.shutdown_timeout == 2.0
    assert options.reset_session == "never"


@pytest.mark.parametrize("key", ["reset_session", "begin_with_statement"])
def test_auto_always_never_modes(key: str) -> None:
    defaults = PostgresOptions()
    assert (defaults.validation_bypass, defaults.leak_detection_threshold) == (1.0, 0.0)
    assert (defaults.reconnect_timeout, defaults.shutdown_timeout) == (5.0, 5.0)
    assert getattr(parse(connection__host="h").options, key) == "auto"
    for given, mode in [("Always", "always"), ("never", "never"), ("true", "always"),
                        ("off", "never"), (True, "always"), (" auto ", "auto")]:  # fmt: skip
        options = parse(connection__host="h", **{f"options__{key}": given}).options
        assert getattr(options, key) == mode


def test_idle_order() -> None:
    assert PostgresOptions().idle_order == "lifo"
    assert parse(connection__host="h").options.idle_order == "lifo"
    for given in ("lifo", "fifo"):
        assert parse(connection__host="h", options__idle_order=given).options.idle_order == given


def test_connect_timeout_zero_means_bounded_default() -> None:
    config = parse(connection__host="h", options__connect_timeout="0")
    assert config.options.connect_timeout == 10.0
    assert conninfo_to_dict(config.conninfo())["connect_timeout"] == "10"


@pytest.mark.parametrize(
    ("milliseconds", "libpq_seconds"),
    [("1", "2"), ("1500", "2"), ("2000", "2"), ("2001", "3"), ("10000", "10")],
)
def test_connect_timeout_in_whole_libpq_seconds_rounded_up(
    milliseconds: str, libpq_seconds: str
) -> None:
    config = parse(connection__host="h", options__connect_timeout=milliseconds)
    assert config.options.connect_timeout == int(milliseconds) / 1000
    assert conninfo_to_dict(config.conninfo())["connect_timeout"] == libpq_seconds


def test_ssl_options_reach_libpq() -> None:
    config = parse(
        connection__host="h",
        options__ssl_mode="verify-full",
        options__ssl_root_cert="/ca.pem",
        options__ssl_cert="/c.pem",
        options__ssl_key="/k.pem",
    )
    params = conninfo_to_dict(config.conninfo())
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == "/ca.pem"
    assert params["sslcert"] == "/c.pem"
    assert params["sslkey"] == "/k.pem"


def test_uri_alone_gives_everything() -> None:
    config = parse(
        connection__uri="postgresql://svc:pw@db1:5433/app?sslmode=require&application_name=x"
    )
    assert config.endpoints == (Endpoint("db1", 5433),)
    assert (config.database, config.username, config.password) == ("app", "svc", "pw")
    params = conninfo_to_dict(config.conninfo())
    assert params["sslmode"] == "require"
    assert params["application_name"] == "x"


def test_libpq_keyword_string_as_uri() -> None:
    config = parse(connection__uri="host=db port=7000 dbname=app user=u target_session_attrs=any")
    assert config.endpoints == (Endpoint("db", 7000),)
    assert ("target_session_attrs", "any") in config.params


def test_explicit_keys_win_over_uri() -> None:
    config = parse(
        connection__uri="postgresql://a:apw@urihost:1111/uridb?application_name=uri&sslmode=disable",
        connection__host="keyhost",
        connection__port="2222",
        connection__database="keydb",
        credential__username="b",
        credential__password="bpw",
        options__application_name="opt",
        options__connect_timeout="5000",
    )
    params = conninfo_to_dict(config.conninfo())
    assert (params["host"], params["port"], params["dbname"]) == ("keyhost", "2222", "keydb")
    assert (params["user"], config.password) == ("b", "bpw")
    assert params["application_name"] == "opt"
    assert params["sslmode"] == "disable"
    assert params["connect_timeout"] == "5"


def test_uri_connect_timeout_replaced_by_option() -> None:
    config = parse(connection__uri="postgresql://h/db?connect_timeout=99")
    assert conninfo_to_dict(config.conninfo())["connect_timeout"] == "10"


def test_several_connections_become_one_multi_host_string_in_order() -> None:
    config = parse(
        connections__primary__host="db1",
        connections__primary__port="5432",
        connections__primary__database="app",
        connections__replica__host="db2",
        connections__replica__port="5433",
        connections__replica__database="app",
    )
    assert config.endpoints == (Endpoint("db1", 5432), Endpoint("db2", 5433))
    params = conninfo_to_dict(config.conninfo())
    assert (params["host"], params["port"]) == ("db1,db2", "5432,5433")


def test_multi_host_uri() -> None:
    config = parse(connection__uri="postgresql://u@h1:1,h2:2,h3/db")
    assert config.endpoints == (Endpoint("h1", 1), Endpoint("h2", 2), Endpoint("h3", 5432))


def test_connections_must_agree_on_database() -> None:
    error = error_of(
        connections__a__host="h1",
        connections__a__database="one",
        connections__b__host="h2",
        connections__b__database="two",
    )
    assert error.code == "CONFLICT"
    assert "connections.b.database" in str(error)


@pytest.mark.parametrize(
    ("values", "key", "problem"),
    [
        ({"connection.host": "h", "connection.port": "abc"}, "connection.port", "whole number"),
        (
            {"connection.host": "h", "connection.port": "0"},
            "connection.port",
            "between 1 and 65535",
        ),
        ({"connection.host": "h", "connection.port": "65536"}, "connection.port", "between"),
        ({"connection.host": "h", "connection.port": "54.5"}, "connection.port", "whole number"),
        (
            {"connection.host": "h", "options.max_pool_size": "abc"},
            "options.max_pool_size",
            "whole",
        ),
        (
            {"connection.host": "h", "options.max_pool_size": "0"},
            "options.max_pool_size",
            "between 1",
        ),
        (
            {"connection.host": "h", "options.max_pool_size": "-3"},
            "options.max_pool_size",
            "between",
        ),
        (
            {"connection.host": "h", "options.min_pool_size": "11"},
            "options.min_pool_size",
            "between 0 and 10",
        ),
        (
            {"connection.host": "h", "options.connect_timeout": "-1"},
            "options.connect_timeout",
            "between 0",
        ),
        (
            {"connection.host": "h", "options.connect_timeout": "soon"},
            "options.connect_timeout",
            "a number",
        ),
        (
            {"connection.host": "h", "options.idle_timeout": "1e99"},
            "options.idle_timeout",
            "between 100",
        ),
        (
            {"connection.host": "h", "options.idle_timeout": "0"},
            "options.idle_timeout",
            "between 100",
        ),
        (
            {"connection.host": "h", "options.max_lifetime": "50"},
            "options.max_lifetime",
            "between 100",
        ),
        (
            {"connection.host": "h", "options.validation_bypass": "-1"},
            "options.validation_bypass",
            "between 0",
        ),
        (
            {"connection.host": "h", "options.leak_detection_threshold": "x"},
            "options.leak_detection_threshold",
            "a number",
        ),
        (
            {"connection.host": "h", "options.reconnect_timeout": "-2"},
            "options.reconnect_timeout",
            "between 0",
        ),
        (
            {"connection.host": "h", "options.shutdown_timeout": "inf"},
            "options.shutdown_timeout",
            "a number",
        ),
        (
            {"connection.host": "h", "options.reset_session": "sometimes"},
            "options.reset_session",
            "auto, always or never",
        ),
        (
            {"connection.host": "h", "options.begin_with_statement": "often"},
            "options.begin_with_statement",
            "auto, always or never",
        ),
        (
            {"connection.host": "h", "options.idle_timeout": "nan"},
            "options.idle_timeout",
            "a number",
        ),
        ({"connection.host": "h", "options.max_lifetime": "-5"}, "options.max_lifetime", "between"),
        (
            {"connection.host": "h", "options.autocommit": "maybe"},
            "options.autocommit",
            "true or false",
        ),
        (
            {"connection.host": "h", "options.psycopg2_compat": "sometimes"},
            "options.psycopg2_compat",
            "true or false",
        ),
        ({"connection.host": "h", "options.ssl_mode": "strict"}, "options.ssl_mode", "verify-full"),
        ({"connection.host": "h", "options.idle_order": "random"}, "options.idle_order", "fifo"),
        ({"connection.host": "h,x"}, "connection.host", "not a host name"),
        ({"connection.port": "5432"}, "connection.host", "is not set"),
        ({"connection.uri": "postgresql://h/db?nonsense=1"}, "connection.uri", "not a valid"),
        ({"connection.uri": "host=h garbage"}, "connection.uri", "not a valid"),
        ({"connection.uri": "postgresql://h:notaport/db"}, "connection.uri port", "whole number"),
        ({}, "connection", "is not set"),
    ],
)
def test_bad_values_name_key_and_problem(values: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigException) as info:
        PostgresConfig.from_config(ConfigParams.from_value(values))
    message = str(info.value)
    assert message.startswith(key), message
    assert problem in message, message


def test_bad_unicode_digits_are_refused() -> None:
    # int("١٢") is 12 in Python; a port must be ASCII digits.
    assert "whole number" in str(error_of(connection__host="h", connection__port="١٢"))


def test_boolean_is_not_a_number() -> None:
    error = error_of(connection__host="h", options__max_pool_size=True)
    assert "options.max_pool_size" in str(error)


def test_empty_string_means_not_set() -> None:
    config = parse(connection__host="h", connection__port="", options__max_pool_size="")
    assert config.endpoints[0].port == 5432
    assert config.options.max_pool_size == 10


def test_discovery_key_needs_references() -> None:
    error = error_of(connection__discovery_key="db")
    assert error.code == "NO_DISCOVERY"
    assert "connection.discovery_key" in str(error)


def test_store_key_needs_references_unless_a_credential_is_inline() -> None:
    error = error_of(connection__host="h", credential__store_key="db-cred")
    assert error.code == "NO_CREDENTIAL_STORE"
    assert "credential.store_key" in str(error)
    error = error_of(
        connection__host="h", credentials__0__store_key="a", credentials__1__store_key="b"
    )
    assert "credentials.0.store_key" in str(error)
    # As the component does: the first credential given inline is used.
    config = parse(
        connection__host="h",
        credentials__0__store_key="a",
        credentials__1__username="inline",
    )
    assert config.username == "inline"


def test_password_never_in_repr_str_or_uri_errors() -> None:
    secret = "Xyzzy-Secret-0451"
    config = parse(connection__host="h", credential__username="u", credential__password=secret)
    assert secret not in repr(config)
    assert secret not in str(config)
    assert secret not in config.conninfo()
    assert secret not in config.describe()
    error = error_of(connection__uri=f"postgresql://u:{secret}@h/db?bogus=1")
    assert secret not in str(error)
    error = error_of(connection__uri=f"host=h password={secret} junk")
    assert secret not in str(error)


def test_a_uri_whose_escapes_are_not_utf8_names_the_key_and_keeps_the_bytes_out() -> None:
    error = error_of(connection__uri="postgresql://u:Secret%83xyz@h/db")
    assert "connection.uri" in error.message and "not UTF-8" in error.message
    assert "Secret" not in str(error) and "83" not in error.message
    assert error.__context__ is None and error.__cause__ is None


def test_config_is_frozen() -> None:
    config = parse(connection__host="h")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.database = "other"  # type: ignore[misc]
    assert hash(config.endpoints) == hash((Endpoint("h", 5432),))
