from typing import Any

class ICloneable:
    def clone(self) -> Any: ...
