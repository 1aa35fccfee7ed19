from .AnyValue import AnyValue as AnyValue
from .AnyValueArray import AnyValueArray as AnyValueArray
from .AnyValueMap import AnyValueMap as AnyValueMap
from .ICloneable import ICloneable as ICloneable
from .StringValueMap import StringValueMap as StringValueMap

__all__ = [
    "AnyValue",
    "AnyValueArray",
    "AnyValueMap",
    "ICloneable",
    "StringValueMap",
]
