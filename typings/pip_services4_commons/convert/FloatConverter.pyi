from typing import Any

from .DoubleConverter import DoubleConverter as DoubleConverter

class FloatConverter:
    @staticmethod
    def to_nullable_float(value: Any) -> float | None: ...
    @staticmethod
    def to_float(value: Any) -> float: ...
    @staticmethod
    def to_float_with_default(value: Any, default_value: float) -> float: ...
