from typing import Any

from pip_services4_components.context.IContext import IContext

from .ILogger import ILogger

class NullLogger(ILogger):
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
    def warn(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
    def info(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
    def debug(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
    def trace(self, context: IContext | None, message: str, *args: Any, **kwargs: Any) -> None: ...
