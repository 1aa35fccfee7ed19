from typing import ClassVar

from ..build.Factory import Factory
from ..refer.Descriptor import Descriptor

class DefaultContextFactory(Factory):
    ContextInfoDescriptor: ClassVar[Descriptor]
    ContainerInfoDescriptor: ClassVar[Descriptor]
    def __init__(self) -> None: ...
