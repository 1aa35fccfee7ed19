from abc import ABC
from typing import Any

class IContext(ABC):
    # The real body is `raise NotImplemented(...)`, which raises TypeError, not
    # NotImplementedError.
    def get(self, key: str) -> Any: ...
