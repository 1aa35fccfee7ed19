class SortField:
    name: str
    ascending: bool
    def __init__(self, name: str, ascending: bool = True) -> None: ...
