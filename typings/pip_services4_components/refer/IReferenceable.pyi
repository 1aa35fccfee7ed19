from abc import ABC

from .IReferences import IReferences

class IReferenceable(ABC):
    def set_references(self, references: IReferences) -> None: ...
