"""Expected failures of the domain verbs. schema/ turns them into `UserError`s."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ALREADY_REGISTERED = "ALREADY_REGISTERED"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    CONFLICT = "CONFLICT"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    PASSWORD_REJECTED = "PASSWORD_REJECTED"  # noqa: S105 - an error code
    PASSWORD_CHANGE_REQUIRED = "PASSWORD_CHANGE_REQUIRED"  # noqa: S105


class DomainError(Exception):
    """An expected failure: the caller gets `code`, `message` and the offending `field`."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_seconds = retry_after_seconds
