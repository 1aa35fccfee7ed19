from abc import ABC

class IUnreferenceable(ABC):
    def unset_references(self) -> None: ...
