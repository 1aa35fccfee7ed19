from .Context import Context as Context
from .ContextInfo import ContextInfo as ContextInfo
from .ContextResolver import ContextResolver as ContextResolver
from .DefaultContextFactory import DefaultContextFactory as DefaultContextFactory
from .IContext import IContext as IContext

__all__ = [
    "Context",
    "ContextInfo",
    "ContextResolver",
    "DefaultContextFactory",
    "IContext",
]
