from .ConfigParams import ConfigParams as ConfigParams
from .IConfigurable import IConfigurable as IConfigurable
from .IReconfigurable import IReconfigurable as IReconfigurable
from .NameResolver import NameResolver as NameResolver
from .OptionsResolver import OptionsResolver as OptionsResolver

__all__ = [
    "ConfigParams",
    "IConfigurable",
    "IReconfigurable",
    "NameResolver",
    "OptionsResolver",
]
