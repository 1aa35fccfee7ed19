from abc import ABC, abstractmethod
from typing import Any

from pip_services4_components.config import ConfigParams, IReconfigurable
from pip_services4_components.context.IContext import IContext
from pip_services4_components.refer import IReferenceable, IReferences

from .ILogger import ILogger

class Logger(ILogger, IReconfigurable, IReferenceable, ABC):
    _level: int
    _source: str | None
    def __init__(self) -> None: ...
    # Reads "level" (missing -> Info) and "source".
    def configure(self, config: ConfigParams) -> None: ...
    # Takes the source name from a pip-services:context-info:*:*:1.0 reference.
    def set_references(self, references: IReferences) -> None: ...
    def get_level(self) -> int: ...
    def set_level(self, level: int) -> None: ...
    def get_source(self) -> str | None: ...
    def set_source(self, value: str | None) -> None: ...
    @abstractmethod
    def _write(
        self, level: int, context: IContext | None, error: Exception | None, message: str | None
    ) -> None: ...
    def _format_and_write(
        self,
        level: int,
        context: IContext | None,
        error: Exception | None,
        message: str | None,
        *args: Any,
        **kwargs: Any,
    ) -> None: ...
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
    def _compose_error(self, error: Exception) -> str: ...
