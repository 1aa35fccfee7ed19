from pip_services4_components.context.IContext import IContext

from .Logger import Logger

# Fatal..Warn go to stderr, Info..Trace to stdout; messages above the level are dropped.
class ConsoleLogger(Logger):
    # A None message raises TypeError (str concatenation).
    def _write(
        self, level: int, context: IContext | None, error: Exception | None, message: str | None
    ) -> None: ...
