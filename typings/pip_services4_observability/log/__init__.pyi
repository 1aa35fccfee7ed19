from .CachedLogger import CachedLogger as CachedLogger
from .CompositeLogger import CompositeLogger as CompositeLogger
from .ConsoleLogger import ConsoleLogger as ConsoleLogger
from .DefaultLoggerFactory import DefaultLoggerFactory as DefaultLoggerFactory
from .ILogger import ILogger as ILogger
from .Logger import Logger as Logger
from .LogLevel import LogLevel as LogLevel
from .LogLevelConverter import LogLevelConverter as LogLevelConverter
from .LogMessage import LogMessage as LogMessage
from .NullLogger import NullLogger as NullLogger

__all__ = [
    "CachedLogger",
    "CompositeLogger",
    "ConsoleLogger",
    "DefaultLoggerFactory",
    "ILogger",
    "LogLevel",
    "LogLevelConverter",
    "LogMessage",
    "Logger",
    "NullLogger",
]
