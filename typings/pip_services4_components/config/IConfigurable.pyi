from abc import ABC

from .ConfigParams import ConfigParams

class IConfigurable(ABC):
    def configure(self, config: ConfigParams) -> None: ...
