from .Cleaner import Cleaner as Cleaner
from .Closer import Closer as Closer
from .ICleanable import ICleanable as ICleanable
from .IClosable import IClosable as IClosable
from .IOpenable import IOpenable as IOpenable
from .Opener import Opener as Opener

__all__ = [
    "Cleaner",
    "Closer",
    "ICleanable",
    "IClosable",
    "IOpenable",
    "Opener",
]
