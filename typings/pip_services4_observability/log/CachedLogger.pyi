from abc import abstractmethod

from pip_services4_components.config import ConfigParams, IReconfigurable
from pip_services4_components.context.IContext import IContext

from .Logger import Logger
from .LogMessage import LogMessage

class CachedLogger(Logger, IReconfigurable):
    _cache: list[LogMessage]
    _updated: bool
    _interval: float
    _last_dump_time: float
    _max_cache_size: int
    def __init__(self) -> None: ...
    def _write(
        self, level: int, context: IContext | None, ex: Exception | None, message: str | None
    ) -> None: ...
    @abstractmethod
    def _save(self, messages: list[LogMessage]) -> None: ...
    # Reads "interval" (ms) and "options.max_cache_size".
    def configure(self, config: ConfigParams) -> None: ...
    def clear(self) -> None: ...
    def dump(self) -> None: ...
    def _update(self) -> None: ...
