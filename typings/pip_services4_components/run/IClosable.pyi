from abc import ABC

from ..context.IContext import IContext

class IClosable(ABC):
    def close(self, context: IContext | None) -> None: ...
