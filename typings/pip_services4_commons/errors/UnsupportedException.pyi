from .ApplicationException import ApplicationException

class UnsupportedException(ApplicationException):
    def __init__(
        self, trace_id: str | None = None, code: str | None = None, message: str | None = None
    ) -> None: ...
