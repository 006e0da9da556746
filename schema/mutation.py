"""The root Mutation: every field is `name(input: NameInput!): NamePayload!` with
`errors: [UserError!]!` (SPEC §4), in one shape (schema/mutation_support.py): `mutation`
declares who may call it, `run` calls one verb of resolvers/ in the request's unit of work
and maps its result or its DomainError to the payload."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.sessions import COOKIE_NAME, IssuedTokens
from resolvers import access, recovery, registration, staff, support
from resolvers.access import SignedIn
from resolvers.staff import CreatedContract
from schema.autopay import AutopayMutation
from schema.catalog_admin import CatalogMutation
from schema.context import Context, Info
from schema.errors import UserError
from schema.events import EventsMutation
from schema.money import MoneyMutation
from schema.mutation_support import (
    CONTRACT_NUMBER,
    ERRORS,
    INPUT,
    PUBLIC,
    SIGNED_IN,
    STAFF,
    OkPayload,
    mutation,
    pk_of,
    run,
    signed_in,
)
from schema.notifications import NotificationsMutation
from schema.pause import PauseMutation
from schema.services import ServicesMutation
from schema.types.account import Contract, LegalStatus, Subscriber


def _set_session_cookie(context: Context, token: str, expires_at: datetime) -> None:
    # __Host-: Secure, Path=/ and no Domain, so no subdomain can set or read it (SPEC §5).
    max_age = max(0, int((expires_at - datetime.now(expires_at.tzinfo)).total_seconds()))
    # The last word wins: a new session replaces an ended cookie the answer was to clear.
    if COOKIE_NAME in context.clear_cookies:
        context.clear_cookies.remove(COOKIE_NAME)
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
    context.response_cookies[:] = [c for c in context.response_cookies if c["key"] != COOKIE_NAME]
    if COOKIE_NAME not in context.clear_cookies:
        context.clear_cookies.append(COOKIE_NAME)


# -- sign-in and sessions

NEW_CREDENTIAL = (
    "The new password: 15 to 128 characters, any Unicode, no composition rules; "
    "PASSWORD_REJECTED says which rule it breaks."
)
BEARER = (
    "The access token: send it as `Authorization: Bearer <token>` (this answer also sets it "
    "as an HttpOnly session cookie). Null on failure."
)
EXPIRES_AT = (
    "When the access token expires unless used: 30 minutes idle, each use pushes it on, at "
    "most 12 hours after it was issued. Null on failure."
)


@strawberry.input(description="Sign-in details.")
class LoginInput:
    identifier: str = strawberry.field(
        description="Login, contract number, phone or email; staff: their username."
    )
    password: str = strawberry.field(
        description="The password. After 10 failures for an account (or 50 from one address) "
        "in 15 minutes, sign-in is RATE_LIMITED, even with the right password."
    )


@strawberry.type(description="What `login` answers: the tokens of a new session.")
class LoginPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    access_token: str | None = strawberry.field(default=None, description=BEARER)
    refresh_token: str | None = strawberry.field(
        default=None,
        description="For `refreshSession`, to get new tokens: single use, valid until the "
        "session ends (30 days after sign-in). Null on failure.",
    )
    expires_at: datetime | None = strawberry.field(default=None, description=EXPIRES_AT)
    must_change_password: bool = strawberry.field(
        default=False,
        description="true when the password is temporary (after registration or an office "
        "reset): every operation but `changePassword` and `logout` is refused with a "
        "GraphQL error PASSWORD_CHANGE_REQUIRED until it is changed.",
    )
    subscriber: Subscriber | None = strawberry.field(
        default=None, description="The subscriber signed in; null for staff and on failure."
    )


@strawberry.input(description="The refresh token to exchange.")
class RefreshSessionInput:
    refresh_token: str = strawberry.field(
        description="The refresh token from `login` or the last `refreshSession`. Single use: "
        "sending a used one again ends the whole session (INVALID_CREDENTIALS)."
    )


@strawberry.type(description="What `refreshSession` answers: new tokens of the same session.")
class RefreshSessionPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    access_token: str | None = strawberry.field(default=None, description=BEARER)
    refresh_token: str | None = strawberry.field(
        default=None,
        description="The next refresh token, replacing the one sent. Null on failure.",
    )
    expires_at: datetime | None = strawberry.field(default=None, description=EXPIRES_AT)


@strawberry.type(description="What `logout` answers; the session cookie is cleared.")
class LogoutPayload(OkPayload):
    pass


@strawberry.type(description="What `logoutEverywhere` answers; the session cookie is cleared.")
class LogoutEverywherePayload(OkPayload):
    pass


@strawberry.type(description="What `changePassword` answers.")
class ChangePasswordPayload(OkPayload):
    pass


@strawberry.type(description="What `revokeSession` answers.")
class RevokeSessionPayload(OkPayload):
    pass


@strawberry.input(description="The password now and the new one.")
class ChangePasswordInput:
    current_password: str = strawberry.field(
        description="The password now (the temporary one too); a wrong one is "
        "INVALID_CREDENTIALS and counts as a failed sign-in."
    )
    new_password: str = strawberry.field(description=NEW_CREDENTIAL)


@strawberry.input(description="The session to end.")
class RevokeSessionInput:
    session_id: strawberry.ID = strawberry.field(
        description="The `SessionInfo.id` of one of your sessions (`mySessions`); NOT_FOUND "
        "for any other."
    )


@strawberry.type
class SessionMutation:
    @mutation(access=PUBLIC, description="Sign in (subscribers and staff). One per request.")
    async def login(self, info: Info, input: Annotated[LoginInput, INPUT]) -> LoginPayload:
        context = info.context

        async def answer(signed: SignedIn) -> LoginPayload:
            context.principal = signed.principal
            _set_session_cookie(context, signed.tokens.access_token, signed.tokens.expires_at)
            subscriber = None
            if not signed.principal.is_staff:
                subscriber = Subscriber.of_key(signed.principal.id)
            return LoginPayload(
                errors=[],
                access_token=signed.tokens.access_token,
                refresh_token=signed.tokens.refresh_token,
                expires_at=signed.tokens.expires_at,
                must_change_password=signed.principal.must_change_password,
                subscriber=subscriber,
            )

        return await run(
            info,
            LoginPayload,
            lambda session: access.login(
                session,
                settings=context.settings,
                identifier=input.identifier,
                password=input.password,
                client_address=context.client_address,
                user_agent=context.user_agent,
            ),
            answer,
        )

    @mutation(access=PUBLIC, description="A new access token for a refresh token (single use).")
    async def refresh_session(
        self, info: Info, input: Annotated[RefreshSessionInput, INPUT]
    ) -> RefreshSessionPayload:
        def answer(tokens: IssuedTokens) -> RefreshSessionPayload:
            _set_session_cookie(info.context, tokens.access_token, tokens.expires_at)
            return RefreshSessionPayload(
                errors=[],
                access_token=tokens.access_token,
                refresh_token=tokens.refresh_token,
                expires_at=tokens.expires_at,
            )

        return await run(
            info,
            RefreshSessionPayload,
            lambda session: access.refresh_session(
                session, settings=info.context.settings, refresh_token=input.refresh_token
            ),
            answer,
        )

    @mutation(access=SIGNED_IN, description="End this session.")
    async def logout(self, info: Info) -> LogoutPayload:
        principal = signed_in(info)
        payload = await run(
            info,
            LogoutPayload,
            lambda session: access.logout(session, principal=principal),
            LogoutPayload.done,
        )
        _clear_session_cookie(info.context)
        return payload

    @mutation(access=SIGNED_IN, description="End every session.")
    async def logout_everywhere(self, info: Info) -> LogoutEverywherePayload:
        principal = signed_in(info)
        payload = await run(
            info,
            LogoutEverywherePayload,
            lambda session: access.logout_everywhere(session, principal=principal),
            LogoutEverywherePayload.done,
        )
        _clear_session_cookie(info.context)
        return payload

    @mutation(
        access=SIGNED_IN,
        description="Change the password; every other session ends and a notice is mailed. "
        "A wrong current password counts as a failed sign-in. One per request.",
    )
    async def change_password(
        self, info: Info, input: Annotated[ChangePasswordInput, INPUT]
    ) -> ChangePasswordPayload:
        principal = signed_in(info)
        return await run(
            info,
            ChangePasswordPayload,
            lambda session: access.change_password(
                session,
                settings=info.context.settings,
                principal=principal,
                current_password=input.current_password,
                new_password=input.new_password,
            ),
            ChangePasswordPayload.done,
        )

    @mutation(access=SIGNED_IN, description="End one of your sessions.")
    async def revoke_session(
        self, info: Info, input: Annotated[RevokeSessionInput, INPUT]
    ) -> RevokeSessionPayload:
        principal = signed_in(info)

        async def revoke(session: AsyncSession) -> None:
            session_pk = pk_of(input.session_id, "Session", "sessionId")
            await access.revoke_session(session, principal=principal, session_id=session_pk)

        return await run(info, RevokeSessionPayload, revoke, RevokeSessionPayload.done)


# -- registration and recovery (public)

PHONE = (
    'A phone number in international format (e.g. "+7 916 123-45-67"), kept as E.164; null: none.'
)


@strawberry.input(
    description="The paper contract's details and the owner's; all must match the contract. "
    "A mismatch is one INVALID without a field; 5 failures for a contract in an hour lock "
    "it for an hour (RATE_LIMITED)."
)
class RegisterInput:
    contract_number: str = strawberry.field(
        description="The number on the paper contract (spaces and dashes are ignored)."
    )
    security_code: str = strawberry.field(description="The one-time code on the paper contract.")
    legal_status: LegalStatus = strawberry.field(description="A person or a company.")
    document_number: str = strawberry.field(description="Passport series and number, or INN.")
    email: str = strawberry.field(
        description="Where the login and temporary password are sent (at most 254 characters)."
    )
    phone: str | None = strawberry.field(default=None, description=PHONE)


@strawberry.type(description="What `register` answers.")
class RegisterPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    login: str | None = strawberry.field(
        default=None, description="The login; the temporary password comes by mail."
    )


@strawberry.input(description="Whose password to recover.")
class RequestPasswordRecoveryInput:
    identifier: str = strawberry.field(description="Login, contract number, phone or email.")


@strawberry.type(
    description="What `requestPasswordRecovery` answers: `ok` is true whether or not the "
    "identifier exists; `errors` holds only RATE_LIMITED, or INVALID for an empty identifier."
)
class RequestPasswordRecoveryPayload(OkPayload):
    pass


@strawberry.input(description="The recovery code and the new password.")
class ResetPasswordInput:
    identifier: str = strawberry.field(
        description="The identifier the code was requested for: login, contract number, "
        "phone or email."
    )
    code: str = strawberry.field(
        description="The 6-digit code sent: valid 10 minutes, 5 attempts, single use."
    )
    new_password: str = strawberry.field(description=NEW_CREDENTIAL)


@strawberry.type(description="What `resetPassword` answers.")
class ResetPasswordPayload(OkPayload):
    pass


@strawberry.input(description="A written request to support.")
class SubmitSupportRequestInput:
    contact: str = strawberry.field(
        description="How to reach you: email or phone (3 to 254 characters)."
    )
    message: str = strawberry.field(description="What you need (10 to 4,000 characters).")


@strawberry.type(description="What `submitSupportRequest` answers.")
class SubmitSupportRequestPayload(OkPayload):
    pass


# -- staff


@strawberry.input(description="Staff: the new subscriber and contract.")
class StaffCreateContractInput:
    legal_status: LegalStatus = strawberry.field(description="A person or a company.")
    display_name: str = strawberry.field(
        description="The person's full name or the company's name (2 to 200 characters)."
    )
    document_number: str = strawberry.field(
        description="A person's passport, 10 digits (series 4, number 6), or a company's "
        "INN, 10 or 12 digits. Only a keyed hash and the last 4 characters are kept."
    )
    email: str = strawberry.field(description="The subscriber's email: letters go there.")
    phone: str | None = strawberry.field(default=None, description=PHONE)
    region: str = strawberry.field(description="The region's code (`Region.code`).")
    address: str = strawberry.field(
        description="Where the service is provided (5 to 300 characters)."
    )
    tariff_id: strawberry.ID = strawberry.field(
        description="The tariff's ID: one of that region, on sale."
    )


@strawberry.type(description="What `staffCreateContract` answers.")
class StaffCreateContractPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    contract: Contract | None = strawberry.field(
        default=None, description="The new contract; null on failure."
    )
    security_code: str | None = strawberry.field(
        default=None, description="Shown once: print it on the paper contract."
    )


@strawberry.input(description="Staff: whose access to reset, and why.")
class StaffResetAccessInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    document_verified: bool = strawberry.field(
        description="The passport was checked in the office."
    )
    reason: str = strawberry.field(description="Why, 5 to 500 characters; kept in the audit log.")


@strawberry.type(description="What `staffResetAccess` answers.")
class StaffResetAccessPayload(OkPayload):
    pass


@strawberry.input(description="Staff: the request to close and what was done.")
class CloseSupportRequestInput:
    id: strawberry.ID = strawberry.field(description="The `SupportRequest.id`.")
    resolution: str = strawberry.field(description="What was done (1 to 2,000 characters).")


@strawberry.type(description="What `closeSupportRequest` answers.")
class CloseSupportRequestPayload(OkPayload):
    pass


@strawberry.type
class AccountMutation:
    @mutation(
        access=PUBLIC,
        description="Register a contract with its security code and the owner's document; "
        "the login and a temporary password come by mail. One per request.",
    )
    async def register(self, info: Info, input: Annotated[RegisterInput, INPUT]) -> RegisterPayload:
        context = info.context
        return await run(
            info,
            RegisterPayload,
            lambda session: registration.register(
                session,
                settings=context.settings,
                contract_number=input.contract_number,
                security_code=input.security_code,
                legal_status=input.legal_status.value,
                document_number=input.document_number,
                email=input.email,
                phone=input.phone,
                client_address=context.client_address,
            ),
            lambda registered: RegisterPayload(errors=[], login=registered.login),
        )

    @mutation(
        access=PUBLIC,
        description="Send a recovery code to the email (or phone) on file. The answer is the "
        "same whether or not the identifier exists.",
    )
    async def request_password_recovery(
        self, info: Info, input: Annotated[RequestPasswordRecoveryInput, INPUT]
    ) -> RequestPasswordRecoveryPayload:
        context = info.context
        return await run(
            info,
            RequestPasswordRecoveryPayload,
            lambda session: recovery.request_password_recovery(
                session,
                settings=context.settings,
                identifier=input.identifier,
                client_address=context.client_address,
            ),
            RequestPasswordRecoveryPayload.done,
        )

    @mutation(
        access=PUBLIC,
        description="Set a new password with a recovery code; every session ends. One per request.",
    )
    async def reset_password(
        self, info: Info, input: Annotated[ResetPasswordInput, INPUT]
    ) -> ResetPasswordPayload:
        context = info.context
        return await run(
            info,
            ResetPasswordPayload,
            lambda session: recovery.reset_password(
                session,
                settings=context.settings,
                identifier=input.identifier,
                code=input.code,
                new_password=input.new_password,
                client_address=context.client_address,
            ),
            ResetPasswordPayload.done,
        )

    @mutation(access=PUBLIC, description="A written request to support, without signing in.")
    async def submit_support_request(
        self, info: Info, input: Annotated[SubmitSupportRequestInput, INPUT]
    ) -> SubmitSupportRequestPayload:
        context = info.context
        return await run(
            info,
            SubmitSupportRequestPayload,
            lambda session: support.submit_support_request(
                session,
                settings=context.settings,
                contact=input.contact,
                message=input.message,
                client_address=context.client_address,
            ),
            SubmitSupportRequestPayload.done,
        )

    @mutation(
        access=STAFF,
        description="Staff: open a contract (and its subscriber); returns the security code once.",
    )
    async def staff_create_contract(
        self, info: Info, input: Annotated[StaffCreateContractInput, INPUT]
    ) -> StaffCreateContractPayload:
        context = info.context

        async def create(session: AsyncSession) -> CreatedContract:
            return await staff.staff_create_contract(
                session,
                settings=context.settings,
                staff_id=signed_in(info).id,
                legal_status=input.legal_status.value,
                display_name=input.display_name,
                document_number=input.document_number,
                email=input.email,
                phone=input.phone,
                region=input.region,
                address=input.address,
                tariff_id=pk_of(input.tariff_id, "Tariff", "tariffId"),
                client_address=context.client_address,
            )

        async def answer(created: CreatedContract) -> StaffCreateContractPayload:
            return StaffCreateContractPayload(
                errors=[],
                contract=Contract.of_key(created.contract_id),
                security_code=created.security_code,
            )

        return await run(info, StaffCreateContractPayload, create, answer)

    @mutation(
        access=STAFF,
        description="Staff: after checking the passport in the office, mail a new temporary "
        "password and end every session of the subscriber. Audited.",
    )
    async def staff_reset_access(
        self, info: Info, input: Annotated[StaffResetAccessInput, INPUT]
    ) -> StaffResetAccessPayload:
        context = info.context
        return await run(
            info,
            StaffResetAccessPayload,
            lambda session: staff.staff_reset_access(
                session,
                settings=context.settings,
                staff_id=signed_in(info).id,
                contract_number=input.contract_number,
                document_verified=input.document_verified,
                reason=input.reason,
                client_address=context.client_address,
            ),
            StaffResetAccessPayload.done,
        )

    @mutation(
        access=STAFF, description="Staff: close a written support request with its resolution."
    )
    async def close_support_request(
        self, info: Info, input: Annotated[CloseSupportRequestInput, INPUT]
    ) -> CloseSupportRequestPayload:
        async def close(session: AsyncSession) -> None:
            await support.close_support_request(
                session,
                staff_id=signed_in(info).id,
                request_id=pk_of(input.id, "SupportRequest", "id"),
                resolution=input.resolution,
            )

        return await run(info, CloseSupportRequestPayload, close, CloseSupportRequestPayload.done)


@strawberry.type(
    description="What a front end changes. Every mutation is `name(input: NameInput!): "
    "NamePayload!` and reports expected failures in the payload's `errors`; sign-in and "
    "staff-only access are checked first, as GraphQL errors (UNAUTHENTICATED, FORBIDDEN)."
)
class Mutation(
    SessionMutation,
    AccountMutation,
    MoneyMutation,
    AutopayMutation,
    ServicesMutation,
    CatalogMutation,
    NotificationsMutation,
    PauseMutation,
    EventsMutation,
):
    """Every mutation of the API (each domain adds its own base class here)."""
