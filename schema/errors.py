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
from schema.types.enums import values_described

# strawberry.enum marks the domain's enum itself (and returns it): one class, named
# ErrorCode in the schema, so that the alias below is a type mypy can check against. What
# each code means to a front end is said here (the domain's enum, in core/, knows no GraphQL).
values_described(
    {
        "INVALID": (
            "A value is malformed or out of its limits (`field` names it), or details do not "
            "match our records (registration: no `field`, so nothing leaks)."
        ),
        "NOT_FOUND": (
            "No such object, or not one you may act on: another subscriber's contract is "
            "NOT_FOUND, never FORBIDDEN, so numbers cannot be probed."
        ),
        "FORBIDDEN": (
            "Not allowed. Mutations do not answer it in `errors` today (see NOT_FOUND); it is "
            "the `extensions.code` of the GraphQL error a subscriber gets on a staff-only field."
        ),
        "RATE_LIMITED": (
            "Too many attempts: wait `retryAfterSeconds` before trying again (sign-in, "
            "registration, recovery, support requests)."
        ),
        "INSUFFICIENT_FUNDS": (
            "Not enough money or points: the balance does not cover the first day's charge of "
            "a new paid item, or the bonus points do not cover the reward."
        ),
        "ALREADY_REGISTERED": (
            "The contract has a sign-in already: sign in, or recover the password."
        ),
        "NOT_ELIGIBLE": (
            "The rules do not allow it now: a closed or suspended contract, an open promised "
            "payment, a tariff changed today already, the Multiroom limit, a promised payment "
            "not available (see `PromisedPaymentOffer.reasons`), ..."
        ),
        "CONFLICT": (
            "Clashes with what exists: already connected or switched on, an idempotency key "
            "used for another top-up, a catalogue code or channel number taken, a support "
            "request closed already."
        ),
        "INVALID_CREDENTIALS": (
            "The identifier and password do not match, the current password is wrong "
            "(changePassword), or the refresh token is not live."
        ),
        "PASSWORD_REJECTED": (
            "The new password breaks a password rule: 15 to 128 characters (any Unicode, no "
            "composition rules), not trivial, not a common or breached password, not "
            "containing the login, contract number or operator's name; `message` says which."
        ),
        "PASSWORD_CHANGE_REQUIRED": (
            "The temporary password must be changed first. It is the `extensions.code` of the "
            "GraphQL error that refuses any other operation before `changePassword`; "
            "mutations do not answer it in `errors` today."
        ),
        "PROVIDER_UNAVAILABLE": (
            "The payment provider did not answer or refused for now. Nothing was charged "
            "twice: repeat the same request (the same idempotency key) later to resume it."
        ),
    }
)(
    strawberry.enum(
        DomainErrorCode,
        name="ErrorCode",
        description="Stable codes of expected failures: front ends switch on these. More "
        "codes may come; treat an unknown one as a failure and show `message`.",
    )
)
ErrorCode = DomainErrorCode


@strawberry.type(
    description="An expected failure of a mutation, in its payload's `errors`. An empty "
    "`errors` list means the mutation succeeded."
)
class UserError:
    field: str | None = strawberry.field(
        description="The input field at fault (its GraphQL name, e.g. `amount`); null when "
        "the failure is not about one field."
    )
    code: ErrorCode = strawberry.field(description="What went wrong, as a stable code.")
    message: str = strawberry.field(
        description="What went wrong, in words (English) for people; switch on `code`, "
        "not on this text."
    )
    retry_after_seconds: int | None = strawberry.field(
        default=None,
        description="RATE_LIMITED: seconds to wait before trying again; otherwise null.",
    )

    @classmethod
    def from_domain(cls, error: DomainError) -> UserError:
        return cls(
            field=error.field,
            code=error.code,
            message=error.message,
            retry_after_seconds=error.retry_after_seconds,
        )

    @classmethod
    def all_of(cls, error: DomainError) -> list[UserError]:
        """Every problem `error` reports (SPEC §4: all of an input's problems at once)."""
        return [cls.from_domain(problem) for problem in error.problems]


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
