from typing import Any, Generic, TypeVar

T = TypeVar("T")

class DataPage(Generic[T]):
    data: list[T]
    total: int | None
    def __init__(self, data: list[T] = ..., total: int | None = None) -> None: ...
    def to_json(self) -> dict[str, Any]: ...
