"""Errors of the Lex V2 runtime emulator, named and coded as the real service names and codes them.

botocore's rest-json parser reads the error name from the ``x-amzn-ErrorType`` header and the message
from the JSON body, so raising one of these in the engine or the HTTP layer ends up as the matching
``client.exceptions.<Name>`` on the caller's side.
"""

from __future__ import annotations


class LexServiceError(Exception):
    """Base class: an error the emulator reports to the client the way AWS does."""

    error_type: str = "InternalServerException"
    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationException(LexServiceError):
    error_type = "ValidationException"
    status_code = 400


class ResourceNotFoundException(LexServiceError):
    error_type = "ResourceNotFoundException"
    status_code = 404


class ConflictException(LexServiceError):
    error_type = "ConflictException"
    status_code = 409


class InternalServerException(LexServiceError):
    error_type = "InternalServerException"
    status_code = 500


class ThrottlingException(LexServiceError):
    error_type = "ThrottlingException"
    status_code = 429


class InternalFailureException(LexServiceError):
    """AWS's common 500 (not in the Lex model): what a front-end failure looks like to botocore."""

    error_type = "InternalFailureException"
    status_code = 500


class ServiceUnavailableException(LexServiceError):
    """AWS's common 503 (not in the Lex model): the service is briefly down."""

    error_type = "ServiceUnavailableException"
    status_code = 503
