from abc import ABC

from ..context.IContext import IContext

class ICleanable(ABC):
    def clear(self, context: IContext | None) -> None: ...
