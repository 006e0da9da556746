"""Errors as the front ends see them.

Expected failures of a mutation are `errors: [UserError!]!` in its payload (Saleor's shape);
missing sign-in, a staff-only field and broken limits are top-level GraphQL errors with
`extensions.code`; anything else is masked.
"""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError

from core.errors import DomainError
from core.errors import ErrorCode as DomainErrorCode

# strawberry.enum marks the domain's enum itself (and returns it): one class, named
# ErrorCode in the schema, so that the alias below is a type mypy can check against.
strawberry.enum(
    DomainErrorCode,
    name="ErrorCode",
    description="Stable codes of expected failures: front ends switch on these.",
)
ErrorCode = DomainErrorCode


@strawberry.type(description="An expected failure of a mutation.")
class UserError:
    field: str | None = strawberry.field(description="The input field at fault, if one is.")
    code: ErrorCode
    message: str
    retry_after_seconds: int | None = None

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(
            field=error.field,
            code=error.code,
            message=error.message,
            retry_after_seconds=error.retry_after_seconds,
        )


class ApiError(GraphQLError):
    """A top-level error we mean to show: it is never masked."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"

    def __init__(self, message: str = "Sign in first.") -> None:
        super().__init__(message)


class Forbidden(ApiError):
    code = "FORBIDDEN"

    def __init__(self, message: str = "Not allowed.") -> None:
        super().__init__(message)


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"


def bad_input(error: DomainError) -> BadUserInput:
    """A DomainError raised under a query field (not a mutation) is shown as a GraphQL error."""
    return BadUserInput(error.message, field=error.field, reason=error.code.value)
