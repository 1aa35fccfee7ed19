"""Resolution of connections and credentials through Pip.Services references.

This is the only module that looks at references: discovery services
(``*:discovery:*:*:*``) for connections with a ``discovery_key``, and credential stores
(``*:credential-store:*:*:*``) for credentials with a ``store_key``. They are reached through
their published methods, ``resolve_all(context, key)`` and ``lookup(context, key)``, so that
``pip-services4-config`` is not a run-time dependency. What they return is parsed by
:class:`~pip_postgres.config.PostgresConfig` like any other configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pip_services4_commons.errors import ConfigException
from pip_services4_components.config import ConfigParams, IConfigurable
from pip_services4_components.context import IContext
from pip_services4_components.refer import Descriptor, IReferenceable, IReferences

from .config import (
    PostgresConfig,
    PostgresOptions,
    check_credential,
    connection_sections,
    credential_sections,
    string_value,
)

__all__ = ["CredentialStore", "Discovery", "PostgresConnectionResolver"]

Section = tuple[str, Mapping[str, Any]]


@runtime_checkable
class Discovery(Protocol):
    """What this package needs of a Pip.Services ``IDiscovery``, such as ``MemoryDiscovery``."""

    def resolve_all(self, context: IContext | None, key: str) -> Sequence[Mapping[str, Any]]:
        """Return every connection registered under ``key``."""
        ...


@runtime_checkable
class CredentialStore(Protocol):
    """What this package needs of a Pip.Services ``ICredentialStore``.

    For instance ``MemoryCredentialStore``.
    """

    def lookup(self, context: IContext | None, key: str) -> Mapping[str, Any] | None:
        """Return the credential stored under ``key``, or ``None``."""
        ...


_DISCOVERY = Descriptor("*", "discovery", "*", "*", "*")
_CREDENTIAL_STORE = Descriptor("*", "credential-store", "*", "*", "*")


def _key(section: Section, name: str) -> str | None:
    return string_value(section, name)


class PostgresConnectionResolver(IReferenceable, IConfigurable):
    """Resolves the ``connection(s)`` and ``credential(s)`` of a PostgreSQL connection.

    Configuration parameters:
        - connection(s):
            - discovery_key: (optional) key to retrieve the connection from an ``IDiscovery``
            - host, port, database, uri: see :class:`~pip_postgres.PostgresConnection`
        - credential(s):
            - store_key: (optional) key to retrieve the credential from an
              ``ICredentialStore``
            - username, password

    References:
        - ``*:discovery:*:*:1.0``: (optional) discovery services to resolve connections
        - ``*:credential-store:*:*:1.0``: (optional) credential stores to resolve credentials

    Several connections, in order, become one libpq multi-host connection string (failover).
    Of several credentials the first that is given inline, or else the first found in a store,
    is used.
    """

    def __init__(self) -> None:
        self._connections: list[Section] = []
        self._credentials: list[Section] = []
        self._references: IReferences | None = None

    def configure(self, config: ConfigParams) -> None:
        """Take the ``connection(s)`` and ``credential(s)`` sections, replacing earlier ones.

        What can be checked without references is checked now.

        :param config: the component's configuration.
        :raises ConfigException: no connection is configured, or one that needs no discovery
            is invalid, or a credential given inline has a user name or password that is not
            a string or holds a NUL character.
        """
        connections: list[Section] = list(connection_sections(config))
        credentials: list[Section] = list(credential_sections(config))
        for credential in credentials:
            if _key(credential, "store_key") is None:
                check_credential(credential)
        static = [c for c in connections if _key(c, "discovery_key") is None]
        if len(static) == len(connections):
            PostgresConfig.from_sections(static, None, PostgresOptions())
        else:
            for prefix, section in static:
                PostgresConfig.from_sections([(prefix, section)], None, PostgresOptions())
        self._connections, self._credentials = connections, credentials

    def set_references(self, references: IReferences) -> None:
        """Keep the references, where discovery services and credential stores are found.

        :param references: the references to locate dependencies in.
        """
        self._references = references

    def resolve(
        self, context: IContext | None, options: PostgresOptions | None = None
    ) -> PostgresConfig:
        """Resolve discovery keys and store keys, and build the configuration to connect with.

        :param context: (optional) context to trace execution through a call chain.
        :param options: the parsed ``options`` section; default options when ``None``.
        :raises ConfigException: no connection is configured; a discovery service or credential
            store is needed but missing or has nothing under the key; or what they supply is
            invalid.
        """
        connections: list[Section] = []
        for prefix, section in self._connections:
            key = _key((prefix, section), "discovery_key")
            if key is None:
                connections.append((prefix, section))
            else:
                connections.extend(self._discover(context, prefix, section, key))
        return PostgresConfig.from_sections(
            connections, self._credential(context), options or PostgresOptions()
        )

    def _components(self, descriptor: Descriptor) -> list[Any]:
        if self._references is None:
            return []
        return list(self._references.get_optional(descriptor))

    def _discover(
        self, context: IContext | None, prefix: str, section: Mapping[str, Any], key: str
    ) -> list[Section]:
        services = [c for c in self._components(_DISCOVERY) if isinstance(c, Discovery)]
        if not services:
            raise ConfigException(
                None,
                "NO_DISCOVERY",
                f"{prefix}discovery_key: {key!r} needs a discovery service "
                "(*:discovery:*:*:1.0) in the references, and there is none",
            )
        found: list[Section] = []
        for service in services:
            for index, resolved in enumerate(service.resolve_all(context, key) or []):
                merged = ConfigParams.merge_configs(
                    ConfigParams(dict(section)), ConfigParams(dict(resolved))
                )
                found.append((f"{prefix}[discovery {key!r} #{index + 1}].", merged))
        if not found:
            raise ConfigException(
                None,
                "NOT_DISCOVERED",
                f"{prefix}discovery_key: no discovery service has a connection for {key!r}",
            )
        return found

    def _credential(self, context: IContext | None) -> Section | None:
        for prefix, section in self._credentials:
            if _key((prefix, section), "store_key") is None:
                return prefix, section
        stores = [c for c in self._components(_CREDENTIAL_STORE) if isinstance(c, CredentialStore)]
        wanted = [
            (prefix, section, _key((prefix, section), "store_key"))
            for prefix, section in self._credentials
        ]
        for prefix, section, key in wanted:
            for store in stores:
                resolved = store.lookup(context, str(key))
                if resolved:  # stores answer an empty map for an unknown key
                    merged = ConfigParams.merge_configs(
                        ConfigParams(dict(section)), ConfigParams(dict(resolved))
                    )
                    return f"{prefix}[store {key!r}].", merged
        if not wanted:
            return None
        prefix, _, key = wanted[0]
        if not stores:
            raise ConfigException(
                None,
                "NO_CREDENTIAL_STORE",
                f"{prefix}store_key: {key!r} needs a credential store "
                "(*:credential-store:*:*:1.0) in the references, and there is none",
            )
        keys = ", ".join(repr(k) for _, _, k in wanted)
        raise ConfigException(
            None,
            "NO_CREDENTIAL",
            f"{prefix}store_key: no credential store has a credential for {keys}",
        )
