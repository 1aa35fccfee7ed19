from .ConfigParams import ConfigParams

class NameResolver:
    @staticmethod
    def resolve(config: ConfigParams, default_name: str | None = None) -> str | None: ...
