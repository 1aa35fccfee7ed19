from typing import Any

from ..context.IContext import IContext

class Cleaner:
    @staticmethod
    def clear_one(context: IContext | None, component: Any) -> None: ...
    @staticmethod
    def clear(context: IContext | None, components: list[Any] | None) -> None: ...
