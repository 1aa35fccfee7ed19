from .ApplicationException import ApplicationException as ApplicationException
from .ApplicationExceptionFactory import ApplicationExceptionFactory as ApplicationExceptionFactory
from .BadRequestException import BadRequestException as BadRequestException
from .ConfigException import ConfigException as ConfigException
from .ConflictException import ConflictException as ConflictException
from .ConnectionException import ConnectionException as ConnectionException
from .ErrorCategory import ErrorCategory as ErrorCategory
from .ErrorDescription import ErrorDescription as ErrorDescription
from .ErrorDescriptionFactory import ErrorDescriptionFactory as ErrorDescriptionFactory
from .FileException import FileException as FileException
from .InternalException import InternalException as InternalException
from .InvalidStateException import InvalidStateException as InvalidStateException
from .InvocationException import InvocationException as InvocationException
from .NotFoundException import NotFoundException as NotFoundException
from .UnauthorizedException import UnauthorizedException as UnauthorizedException
from .UnknownException import UnknownException as UnknownException
from .UnsupportedException import UnsupportedException as UnsupportedException

__all__ = [
    "ApplicationException",
    "ApplicationExceptionFactory",
    "BadRequestException",
    "ConfigException",
    "ConflictException",
    "ConnectionException",
    "ErrorCategory",
    "ErrorDescription",
    "ErrorDescriptionFactory",
    "FileException",
    "InternalException",
    "InvalidStateException",
    "InvocationException",
    "NotFoundException",
    "UnauthorizedException",
    "UnknownException",
    "UnsupportedException",
]
