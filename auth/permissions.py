"""Who may call a root field. Every Query and Mutation field is either public (listed in
PUBLIC_FIELDS) or carries one of these; tests/test_authorisation.py walks the schema to
prove it. Fields below a root are reached only through objects the root has already
checked (a contract is built only for its owner or for staff).

Use them in pairs, signed-in first: `[IsSignedIn, IsStaff]`, so that a caller without a
session hears UNAUTHENTICATED and a subscriber on a staff field hears FORBIDDEN."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

# Root fields anyone may call (sign-in and recovery flows, the public catalogue).
PUBLIC_FIELDS = frozenset(
    {
        "Query.regions",
        "Query.tariffs",
        "Query.tvPackages",
        "Query.channels",
        "Query.serviceOptions",
        "Query.bonusRewards",
        # checks each object it returns (resolvers/accounts.may_see_*); a private one asked
        # with an ended session is UNAUTHENTICATED, as LiveSessionIfAny says
        "Query.node",
        "Mutation.register",
        "Mutation.login",
        "Mutation.refreshSession",
        "Mutation.requestPasswordRecovery",
        "Mutation.resetPassword",
        "Mutation.submitSupportRequest",
    }
)


SESSION_ENDED = "Your session has ended; sign in again."


class LiveSessionIfAny(BasePermission):
    """For a field that answers signed-out callers too, but for the caller (`me`,
    `contract`): a request that presented a token or session cookie naming no live session
    (unknown, expired, revoked) hears UNAUTHENTICATED instead of the signed-out answer, so a
    front end can tell an ended session from an empty answer (SPEC §4)."""

    message = SESSION_ENDED
    error_extensions = {"code": "UNAUTHENTICATED"}  # noqa: RUF012

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return not info.context.session_ended


class IsSignedIn(BasePermission):
    message = "Sign in first."
    error_extensions = {"code": "UNAUTHENTICATED"}  # noqa: RUF012 - strawberry reads it

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return info.context.principal is not None


class IsSubscriber(BasePermission):
    message = "Only a signed-in subscriber may do this."
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is None or principal.kind == "SUBSCRIBER"  # None: IsSignedIn says


class IsStaff(BasePermission):
    message = "Staff only."
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is None or principal.is_staff  # None: IsSignedIn says
