from .ConfigParams import ConfigParams

class OptionsResolver:
    @staticmethod
    def resolve(config: ConfigParams, config_as_default: bool = False) -> ConfigParams: ...
