from .SortField import SortField

class SortParams(list[SortField]):
    def __init__(self, *fields: SortField) -> None: ...
