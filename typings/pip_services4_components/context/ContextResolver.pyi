from .IContext import IContext

class ContextResolver:
    # All return "" when context is None (or has no such value).
    @staticmethod
    def get_trace_id(context: IContext | None) -> str: ...
    @staticmethod
    def get_client(context: IContext | None) -> str: ...
    @staticmethod
    def get_user(context: IContext | None) -> str: ...
