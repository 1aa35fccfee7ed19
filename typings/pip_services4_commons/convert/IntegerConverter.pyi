from typing import Any

class IntegerConverter:
    # Delegates to LongConverter: "5.7" -> 5 (truncated); "nan" raises ValueError and
    # "inf" raises OverflowError instead of returning None/the default.
    @staticmethod
    def to_nullable_integer(value: Any) -> int | None: ...
    @staticmethod
    def to_integer(value: Any) -> int: ...
    @staticmethod
    def to_integer_with_default(value: Any, default_value: int) -> int: ...
