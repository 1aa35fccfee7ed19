from typing import Any

class LogLevelConverter:
    # None -> LogLevel.Info regardless of default_value; unknown strings -> default_value.
    @staticmethod
    def to_log_level(value: Any, default_value: int = 4) -> int: ...
    @staticmethod
    def to_string(level: int) -> str: ...
    @staticmethod
    def to_integer(level: int) -> int: ...
