from .CompositeFactory import CompositeFactory as CompositeFactory
from .CreateException import CreateException as CreateException
from .Factory import Factory as Factory
from .IFactory import IFactory as IFactory

__all__ = [
    "CompositeFactory",
    "CreateException",
    "Factory",
    "IFactory",
]
