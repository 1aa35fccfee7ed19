from .DependencyResolver import DependencyResolver as DependencyResolver
from .Descriptor import Descriptor as Descriptor
from .IReferenceable import IReferenceable as IReferenceable
from .IReferences import IReferences as IReferences
from .IUnreferenceable import IUnreferenceable as IUnreferenceable
from .Reference import Reference as Reference
from .ReferenceException import ReferenceException as ReferenceException
from .Referencer import Referencer as Referencer
from .References import References as References

__all__ = [
    "DependencyResolver",
    "Descriptor",
    "IReferenceable",
    "IReferences",
    "IUnreferenceable",
    "Reference",
    "ReferenceException",
    "Referencer",
    "References",
]
