from typing import Any

from pip_services4_commons.errors import InternalException

from ..context.IContext import IContext

class ReferenceException(InternalException):
    def __init__(self, context: IContext | None = None, locator: Any = None) -> None: ...
