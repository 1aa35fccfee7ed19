from .DataPage import DataPage as DataPage
from .PagingParams import PagingParams as PagingParams
from .SortField import SortField as SortField
from .SortParams import SortParams as SortParams

__all__ = ["DataPage", "PagingParams", "SortField", "SortParams"]
