from datetime import datetime
from typing import Any, overload

class DateTimeConverter:
    @staticmethod
    def to_nullable_datetime(value: Any) -> datetime | None: ...
    # Despite its docstring ("returns current date"), this returns None when the value
    # cannot be converted: it delegates to to_datetime_with_default(value, None).
    @staticmethod
    def to_datetime(value: Any) -> datetime | None: ...
    @overload
    @staticmethod
    def to_datetime_with_default(value: Any, default_value: datetime) -> datetime: ...
    @overload
    @staticmethod
    def to_datetime_with_default(value: Any, default_value: None = None) -> datetime | None: ...
    @staticmethod
    def to_utc_datetime(value: datetime | None) -> datetime | None: ...
