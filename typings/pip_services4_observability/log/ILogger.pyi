from abc import ABC
from typing import Any

from pip_services4_components.context.IContext import IContext

# Messages are %-formatted with the positional args (None args are dropped first); keyword
# args are substituted by their *names*, not their values.
class ILogger(ABC):
    def get_level(self) -> int: ...
    def set_level(self, level: int) -> None: ...
    def log(
        self,
        level: int,
        context: IContext | None,
        error: Exception | None,
        message: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> None: ...
    def fatal(
        self,
        context: IContext | None,
        error: Exception | None,
        message: str,
        *args: Any,
        **kwargs: Any,
    ) -> None: ...
    def error(
        self,
        context: IContext | None,
        error: Exception | None,
        message: str,
        *args: Any,
        **kwargs: Any,
    ) -> None: ...
    # The real ILogger annotates message as Exception (a typo); implementations take a str.
    def warn(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
    def info(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
    def debug(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
    def trace(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
