import datetime

from pip_services4_commons.errors import ErrorDescription

class LogMessage:
    time: datetime.datetime
    level: int | None
    source: str | None
    # The trace id is stored in an attribute named "context".
    context: str | None
    error: ErrorDescription | None
    message: str | None
    def __init__(
        self,
        level: int | None = None,
        source: str | None = None,
        trace_id: str | None = None,
        error: ErrorDescription | None = None,
        message: str | None = None,
    ) -> None: ...
