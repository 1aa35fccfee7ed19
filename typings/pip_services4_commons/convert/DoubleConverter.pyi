from typing import Any

class DoubleConverter:
    # Ints (and datetimes, as epoch milliseconds) come back as int, not float.
    @staticmethod
    def to_nullable_double(value: Any) -> float | None: ...
    @staticmethod
    def to_double(value: Any) -> float: ...
    @staticmethod
    def to_double_with_default(value: Any, default_value: float = 0) -> float: ...
