"""The root Mutation: every field is `name(input: NameInput!): NamePayload!` with
`errors: [UserError!]!` (SPEC §4). Fields are thin: they call one verb in resolvers/ inside
`attempt`, which opens the write session and turns a DomainError into the payload's errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import IsSignedIn
from auth.sessions import COOKIE_NAME
from resolvers import access
from resolvers.errors import DomainError, ErrorCode
from schema.context import Context, Info
from schema.errors import UserError
from schema.types.account import Subscriber
from schema.types.node import from_global_id

T = TypeVar("T")


async def attempt(
    info: Info, verb: Callable[[AsyncSession], Awaitable[T]]
) -> tuple[T | None, list[UserError]]:
    """Run a verb in its own session; an expected failure becomes `errors`."""
    try:
        async with info.context.session_factory() as session:
            return await verb(session), []
    except DomainError as error:
        return None, [UserError.from_domain(error)]


def _set_session_cookie(context: Context, token: str, expires_at: datetime) -> None:
    # __Host-: Secure, Path=/ and no Domain, so no subdomain can set or read it (SPEC §5).
    max_age = max(0, int((expires_at - datetime.now(expires_at.tzinfo)).total_seconds()))
    context.response_cookies.append(
        {
            "key": COOKIE_NAME,
            "value": token,
            "max_age": max_age,
            "path": "/",
            "secure": True,
            "httponly": True,
            "samesite": "lax",
        }
    )


def _clear_session_cookie(context: Context) -> None:
    context.clear_cookies.append(COOKIE_NAME)


# -- sign-in and sessions


@strawberry.input
class LoginInput:
    identifier: str = strawberry.field(description="Login, contract number, phone or email.")
    password: str


@strawberry.type
class LoginPayload:
    errors: list[UserError]
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    must_change_password: bool = False
    subscriber: Subscriber | None = None


@strawberry.input
class RefreshSessionInput:
    refresh_token: str


@strawberry.type
class RefreshSessionPayload:
    errors: list[UserError]
    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None


def ok_payload(name: str) -> Any:
    """A payload with nothing to say but `ok` (each mutation has its own payload type)."""
    namespace = {"__annotations__": {"errors": list[UserError], "ok": bool}, "ok": False}
    return strawberry.type(type(name, (), namespace))


LogoutPayload = ok_payload("LogoutPayload")
LogoutEverywherePayload = ok_payload("LogoutEverywherePayload")
ChangePasswordPayload = ok_payload("ChangePasswordPayload")
RevokeSessionPayload = ok_payload("RevokeSessionPayload")


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class RevokeSessionInput:
    session_id: strawberry.ID


def _ok(payload: Any, result: tuple[Any, list[UserError]]) -> Any:
    _, errors = result
    return payload(errors=errors, ok=not errors)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Sign in (subscribers and staff). One per request.")
    async def login(self, info: Info, input: LoginInput) -> LoginPayload:
        context = info.context
        signed, errors = await attempt(
            info,
            lambda session: access.login(
                session,
                settings=context.settings,
                identifier=input.identifier,
                password=input.password,
                client_address=context.client_address,
                user_agent=context.user_agent,
            ),
        )
        if signed is None:
            return LoginPayload(errors=errors)
        context.principal = signed.principal
        _set_session_cookie(context, signed.tokens.access_token, signed.tokens.expires_at)
        subscriber = None
        if not signed.principal.is_staff:
            row = await context.loaders.subscriber.load(signed.principal.id)
            subscriber = Subscriber.from_row(row)
        return LoginPayload(
            errors=[],
            access_token=signed.tokens.access_token,
            refresh_token=signed.tokens.refresh_token,
            expires_at=signed.tokens.expires_at,
            must_change_password=signed.principal.must_change_password,
            subscriber=subscriber,
        )

    @strawberry.mutation(description="A new access token for a refresh token (single use).")
    async def refresh_session(
        self, info: Info, input: RefreshSessionInput
    ) -> RefreshSessionPayload:
        tokens, errors = await attempt(
            info,
            lambda session: access.refresh_session(
                session, settings=info.context.settings, refresh_token=input.refresh_token
            ),
        )
        if tokens is None:
            return RefreshSessionPayload(errors=errors)
        _set_session_cookie(info.context, tokens.access_token, tokens.expires_at)
        return RefreshSessionPayload(
            errors=[],
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
        )

    @strawberry.mutation(permission_classes=[IsSignedIn], description="End this session.")
    async def logout(self, info: Info) -> LogoutPayload:  # type: ignore[valid-type]
        principal = info.context.principal
        assert principal is not None
        result = await attempt(info, lambda session: access.logout(session, principal=principal))
        _clear_session_cookie(info.context)
        return _ok(LogoutPayload, result)

    @strawberry.mutation(permission_classes=[IsSignedIn], description="End every session.")
    async def logout_everywhere(self, info: Info) -> LogoutEverywherePayload:  # type: ignore[valid-type]
        principal = info.context.principal
        assert principal is not None
        result = await attempt(
            info, lambda session: access.logout_everywhere(session, principal=principal)
        )
        _clear_session_cookie(info.context)
        return _ok(LogoutEverywherePayload, result)

    @strawberry.mutation(
        permission_classes=[IsSignedIn],
        description="Change the password; every other session ends and a notice is mailed.",
    )
    async def change_password(
        self, info: Info, input: ChangePasswordInput
    ) -> ChangePasswordPayload:  # type: ignore[valid-type]
        principal = info.context.principal
        assert principal is not None
        return _ok(
            ChangePasswordPayload,
            await attempt(
                info,
                lambda session: access.change_password(
                    session,
                    settings=info.context.settings,
                    principal=principal,
                    current_password=input.current_password,
                    new_password=input.new_password,
                ),
            ),
        )

    @strawberry.mutation(permission_classes=[IsSignedIn], description="End one of your sessions.")
    async def revoke_session(self, info: Info, input: RevokeSessionInput) -> RevokeSessionPayload:  # type: ignore[valid-type]
        principal = info.context.principal
        assert principal is not None
        decoded = from_global_id(input.session_id)
        if decoded is None or decoded[0] != "Session" or not decoded[1].isdigit():
            error = DomainError(ErrorCode.NOT_FOUND, "No such session.", field="sessionId")
            return RevokeSessionPayload(errors=[UserError.from_domain(error)])
        session_pk = int(decoded[1])
        return _ok(
            RevokeSessionPayload,
            await attempt(
                info,
                lambda session: access.revoke_session(
                    session, principal=principal, session_id=session_pk
                ),
            ),
        )
