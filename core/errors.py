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
    """An expected failure: the caller gets `code`, `message` and the offending `field`.

    The unit of work the verb runs in (core.db: `RequestReader.write`, `unit_of_work`) rolls
    back what the verb wrote before raising it, unless `keep_writes` is set: then it commits
    them, and the error is still the answer. That is for a write that must outlive the
    refusal it leads to: a counted attempt (a wrong password, a wrong code), a revoked
    session family after a refresh token's reuse."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        retry_after_seconds: int | None = None,
        keep_writes: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_seconds = retry_after_seconds
        self.keep_writes = keep_writes
