from collections.abc import Callable
from typing import Any

from .IFactory import IFactory

class Registration:
    locator: Any
    factory: Any
    def __init__(self, locator: Any, factory: Any) -> None: ...

class Factory(IFactory):
    def __init__(self) -> None: ...
    # factory is called as factory(locator).
    def register(self, locator: Any, factory: Callable[[Any], Any]) -> None: ...
    # component_type is called with no arguments.
    def register_as_type(self, locator: Any, component_type: Callable[[], Any]) -> None: ...
    def can_create(self, locator: Any) -> Any: ...
    # Returns None (does not raise) when no registration matches; wraps any error raised by
    # the factory in CreateException.
    def create(self, locator: Any) -> Any: ...
