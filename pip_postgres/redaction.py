"""What is secret in a PostgreSQL configuration, and how it is kept out of every message.

This is the one home of redaction: ``pip_postgres.config`` uses it for configuration
errors, ``pip_postgres.connection`` for connection errors and log lines, and
``pip_postgres.pool`` for the last connection error it reports.

A secret is hidden in every form it may take in a text: as it is, percent-encoded (as in a
URI), quoted for a libpq ``key=value`` string, and escaped by ``repr()`` or JSON. Hiding more
than the secret (a user name that happens to contain the password) is accepted; showing any
of it is not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "MASK",
    "SECRET_PARAMS",
    "exception_chain",
    "redact",
    "redact_fragments",
    "secret_forms",
    "shows_secret",
    "uri_password",
    "uri_secrets",
]

#: What a secret is replaced with.
MASK = "***"

#: The libpq parameters whose values are secret (libpq's "debug display" class ``*``, plus
#: the OAuth client secret of PostgreSQL 18). They are never put in a connection string that
#: can be shown (``conninfo``); they travel as keyword arguments of the connect call.
SECRET_PARAMS = frozenset({"password", "sslpassword", "oauth_client_secret"})

_SCHEME = re.compile(r"\s*postgres(?:ql)?://", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"[?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=([^&#]*)", re.IGNORECASE
)
_KEYWORD_SECRET = re.compile(
    r"(?:^|\s)(?:" + "|".join(sorted(SECRET_PARAMS)) + r")\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)"
)
_QUOTED = re.compile(r'"([^"]*)"')


def secret_forms(secret: str) -> set[str]:
    """The forms ``secret`` may take in a text: as it is, URI-encoded, quoted, escaped.

    :param secret: a non-empty secret.
    :return: the distinct forms, ``secret`` itself among them.
    """
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret),
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret.replace("\\", "\\\\").replace("'", "\\'"),
    }
    return {form for form in forms if form}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every form of every non-empty secret in ``text`` with :data:`MASK`.

    :param text: the text to clean, a message or a log line.
    :param secrets: the secrets; ``None`` and empty strings are skipped.
    :return: ``text`` without any of them.
    """
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def redact_fragments(text: str, uri: str) -> str:
    """Hide the secrets of ``uri`` in a libpq error about it, and every piece of them.

    libpq quotes the part of a connection string it could not parse, and that part may hold
    a piece of a password: a URI password with an unencoded ``/`` is split at it, and its
    second half is read as the start of the database name. So, beyond :func:`redact` with
    :func:`uri_secrets`, every double-quoted token of ``text`` that, where it stands in
    ``uri``, overlaps a secret part of it is hidden.

    :param text: a libpq error about ``uri``.
    :param uri: the ``postgresql://`` URI or ``key=value`` string libpq was given.
    """
    spans = _secret_spans(uri)

    def overlaps(token: str) -> bool:
        at = uri.find(token)
        while at >= 0:
            if any(at < end and start < at + len(token) for start, end in spans):
                return True
            at = uri.find(token, at + 1)
        return False

    def hide(match: re.Match[str]) -> str:
        token = match.group(1)
        return f'"{MASK}"' if token and overlaps(token) else match.group(0)

    return redact(_QUOTED.sub(hide, text), uri_secrets(uri))


def _secret_spans(uri: str) -> list[tuple[int, int]]:
    """Where the secrets of a connection string are, as (start, end) offsets.

    Found even if it does not parse: a URI's user information (before the last ``@``) and
    secret query values, or the values of a ``key=value`` string's secret keys.
    """
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return [match.span(1) for match in _KEYWORD_SECRET.finditer(uri)]
    spans = [match.span(1) for match in _QUERY_SECRET.finditer(uri, scheme.end())]
    at = uri.rfind("@")
    if at >= scheme.end():
        spans.append((scheme.end(), at))
    return spans


def uri_secrets(uri: str) -> list[str]:
    """Every piece of a connection string that may be a secret, even if it does not parse.

    For a ``postgresql://`` URI: everything before the last ``@`` (user name and password, as
    written), the password part of it, and the values of secret query parameters; for a
    ``key=value`` string, the values of the secret keys, quoted and unquoted. Each is given
    as written and percent-decoded.

    :param uri: a ``postgresql://`` URI or a libpq ``key=value`` string.
    """
    found: list[str] = []
    for start, end in _secret_spans(uri):
        value = uri[start:end]
        found.append(value)
        if ":" in value and uri[end : end + 1] == "@":  # user name and password: the password
            found.append(value.partition(":")[2])
        if value.startswith("'"):
            inner = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
            found.append(re.sub(r"\\(.)", r"\1", inner))
    found += [unquote(value) for value in found]
    return sorted({value for value in found if value}, key=len, reverse=True)


def uri_password(uri: str) -> str | None:
    """The password a ``postgresql://`` URI means to give, percent-decoded.

    It is what lies between the first ``:`` and the last ``@`` after the scheme, the way a
    reader sees it; libpq reads the user information only up to the first ``@`` or ``/``, so
    where the two disagree the password holds a character that had to be percent-encoded.

    :return: the password, or ``None`` when ``uri`` is not a URI or names none.
    """
    scheme = _SCHEME.match(uri)
    if scheme is None:
        return None
    rest = uri[scheme.end() :]
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return None
    return unquote(rest[:at].partition(":")[2])


def exception_chain(error: BaseException) -> list[BaseException]:
    """``error`` and every exception it was raised from or while handling.

    :return: the exceptions reached through ``__cause__`` and ``__context__``, each once.
    """
    chain: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return chain


def shows_secret(error: BaseException, secrets: Iterable[str | None]) -> bool:
    """Whether any exception of ``error``'s chain shows one of ``secrets``.

    Its ``str`` and ``repr`` are looked at, and a Pip.Services exception's ``cause`` and
    ``stack_trace``.

    :param error: the exception.
    :param secrets: the secrets; ``None`` and empty strings are skipped.
    """
    secrets = list(secrets)
    for current in exception_chain(error):
        text = "\n".join(
            [str(current), repr(current)]
            + [str(getattr(current, name, "")) for name in ("cause", "stack_trace")]
        )
        if redact(text, secrets) != text:
            return True
    return False
