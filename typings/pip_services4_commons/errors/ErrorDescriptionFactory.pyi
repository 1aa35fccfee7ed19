from typing import Any

from .ErrorDescription import ErrorDescription

class ErrorDescriptionFactory:
    @staticmethod
    def create(ex: Any) -> ErrorDescription: ...
