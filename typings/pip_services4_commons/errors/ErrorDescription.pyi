from typing import Any

class ErrorDescription:
    type: str | None
    category: str | None
    status: int | None
    code: str | None
    message: str | None
    details: Any
    trace_id: str | None
    cause: str | None
    stack_trace: str | None
    def __init__(self) -> None: ...
    def to_json(self) -> dict[str, Any]: ...
    # Also accepts a JSON string; returns the argument unchanged when it is not a dict.
    @staticmethod
    def from_json(json_err: dict[str, Any] | str) -> Any: ...
