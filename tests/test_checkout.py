"""The pure decisions both pools share (pip_postgres.checkout): no server needed."""

from __future__ import annotations

import pytest
from psycopg import pq, sql

from pip_postgres import checkout

S = pq.TransactionStatus


@pytest.mark.parametrize(
    ("status", "success", "reset", "expected"),
    [
        (S.IDLE, True, False, None),
        (S.IDLE, True, True, "RESET ALL"),
        (S.INTRANS, True, False, "COMMIT"),
        (S.INTRANS, False, False, "ROLLBACK"),
        (S.INTRANS, True, True, "COMMIT; RESET ALL"),
        (S.INERROR, True, False, "ROLLBACK"),  # a failed transaction is never committed
        (S.INERROR, True, True, "ROLLBACK; RESET ALL"),
        (S.ACTIVE, True, True, None),  # busy: the return to the pool deals with it
        (S.UNKNOWN, False, True, None),  # broken
    ],
)
def test_what_ends_a_checkout(status: S, success: bool, reset: bool, expected: str | None) -> None:
    assert checkout.finish_statement(status, success, reset) == expected


@pytest.mark.parametrize(
    ("mode", "used", "changed", "expected"),
    [
        ("auto", True, False, False),
        ("auto", True, True, True),
        ("always", True, False, True),
        ("always", False, False, False),
        ("never", True, True, False),
    ],
)
def test_when_the_session_is_reset(mode: str, used: bool, changed: bool, expected: bool) -> None:
    marks = checkout.CheckoutMarks()
    marks.used, marks.session_changed = used, changed
    assert checkout.reset_needed(mode, marks) is expected


def test_ping_timeout_is_a_quarter_of_the_wait_within_bounds() -> None:
    assert checkout.ping_timeout(4.0, 4.0) == 1.0
    assert checkout.ping_timeout(4.0, 0.3) == 0.3  # no more than is left
    assert checkout.ping_timeout(0.01, 0.01) == checkout.MIN_PING_TIMEOUT
    assert checkout.ping_timeout(60.0, 60.0) == checkout.MAX_PING_TIMEOUT


def test_tracking_marks_use_and_session_changes() -> None:
    marks = checkout.CheckoutMarks()
    # No "set" in the text: no SET or RESET, no command status to look at.
    assert checkout.track_before(marks, "SELECT 1") is False
    assert marks.used and not marks.session_changed
    # "set" where the screen does not call it a SET: the command status tells.
    assert checkout.track_before(marks, "/* first */ SET search_path TO x") is True
    assert checkout.track_before(marks, sql.SQL("SELECT 1")) is True
    assert not marks.session_changed
    assert checkout.track_before(marks, b"select 1; SET search_path TO x") is False
    assert marks.session_changed
    # Once changed, the command status need not be looked at.
    assert checkout.track_before(marks, "/* again */ SET search_path TO y") is False


@pytest.mark.parametrize(
    ("query", "screen"),
    [
        ("SELECT 1", checkout.SCREEN_NO),
        (b"INSERT INTO t VALUES (1)", checkout.SCREEN_NO),
        ("UPDATE t SET v = 1", checkout.SCREEN_MAYBE),
        ("/* c */ SET x = 1", checkout.SCREEN_MAYBE),
        (sql.SQL("SELECT 1"), checkout.SCREEN_MAYBE),
        (12, checkout.SCREEN_MAYBE),
        ("ReSeT ALL", checkout.SCREEN_YES),
        ("SELECT 1; set x = 1", checkout.SCREEN_YES),
    ],
)
def test_the_screen_of_a_statement(query: object, screen: int) -> None:
    assert checkout.screen_statement(query) == screen
