from pip_services4_components.context.IContext import IContext
from pip_services4_components.refer import IReferenceable, IReferences

from .Logger import Logger

# Forwards every message to all ILogger references (*:logger:*:*:*), whatever its own level.
class CompositeLogger(Logger, IReferenceable):
    def __init__(self, references: IReferences | None = None) -> None: ...
    def set_references(self, references: IReferences) -> None: ...
    def _write(
        self, level: int, context: IContext | None, error: Exception | None, message: str | None
    ) -> None: ...
