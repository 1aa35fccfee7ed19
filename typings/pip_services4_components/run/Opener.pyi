from typing import Any

from ..context.IContext import IContext

class Opener:
    # True for components that are not IOpenable.
    @staticmethod
    def is_opened_one(component: Any) -> bool: ...
    @staticmethod
    def is_opened(components: list[Any] | None) -> bool: ...
    @staticmethod
    def open_one(context: IContext | None, component: Any) -> None: ...
    @staticmethod
    def open(context: IContext | None, components: list[Any] | None) -> None: ...
