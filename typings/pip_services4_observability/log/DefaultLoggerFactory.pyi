from typing import ClassVar

from pip_services4_components.build import Factory
from pip_services4_components.refer import Descriptor

class DefaultLoggerFactory(Factory):
    NullLoggerDescriptor: ClassVar[Descriptor]
    ConsoleLoggerDescriptor: ClassVar[Descriptor]
    CompositeLoggerDescriptor: ClassVar[Descriptor]
    def __init__(self) -> None: ...
