from .IdGenerator import IdGenerator as IdGenerator

__all__ = ["IdGenerator"]
