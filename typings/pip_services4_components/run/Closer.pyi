from typing import Any

from ..context.IContext import IContext

class Closer:
    @staticmethod
    def close_one(context: IContext | None, component: Any) -> None: ...
    @staticmethod
    def close(context: IContext | None, components: list[Any] | None) -> None: ...
