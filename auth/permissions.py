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
        "Query.node",  # checks each object it returns (resolvers/accounts.may_see_*)
        "Query.me",  # null when signed out
        "Query.contract",  # null unless the caller may see it
        "Mutation.register",
        "Mutation.login",
        "Mutation.refreshSession",
        "Mutation.requestPasswordRecovery",
        "Mutation.resetPassword",
        "Mutation.submitSupportRequest",
    }
)


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
