from pip_services4_commons.errors.InternalException import InternalException

class CreateException(InternalException):
    def __init__(
        self, trace_id: str | None = None, message_or_locator: str | None = None
    ) -> None: ...
