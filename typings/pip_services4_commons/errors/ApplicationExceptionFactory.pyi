from .ApplicationException import ApplicationException
from .ErrorDescription import ErrorDescription

class ApplicationExceptionFactory:
    @staticmethod
    def create(description: ErrorDescription) -> ApplicationException: ...
