"""The root Mutation: every field is `name(input: NameInput!): NamePayload!` with
`errors: [UserError!]!` (SPEC §4), in one shape (schema/mutation_support.py): `mutation`
declares who may call it, `run` calls one verb of resolvers/ in the request's unit of work
and maps its result or its DomainError to the payload."""

from __future__ import annotations

from datetime import datetime

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.sessions import COOKIE_NAME, IssuedTokens
from resolvers import access, recovery, registration, staff, support
from resolvers.access import SignedIn
from resolvers.staff import CreatedContract
from schema.catalog_admin import CatalogMutation
from schema.context import Context, Info
from schema.errors import UserError
from schema.money import MoneyMutation
from schema.mutation_support import (
    PUBLIC,
    SIGNED_IN,
    STAFF,
    OkPayload,
    mutation,
    pk_of,
    run,
    signed_in,
)
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


@strawberry.type
class LogoutPayload(OkPayload):
    pass


@strawberry.type
class LogoutEverywherePayload(OkPayload):
    pass


@strawberry.type
class ChangePasswordPayload(OkPayload):
    pass


@strawberry.type
class RevokeSessionPayload(OkPayload):
    pass


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class RevokeSessionInput:
    session_id: strawberry.ID


@strawberry.type
class SessionMutation:
    @mutation(access=PUBLIC, description="Sign in (subscribers and staff). One per request.")
    async def login(self, info: Info, input: LoginInput) -> LoginPayload:
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
        self, info: Info, input: RefreshSessionInput
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
        self, info: Info, input: ChangePasswordInput
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
    async def revoke_session(self, info: Info, input: RevokeSessionInput) -> RevokeSessionPayload:
        principal = signed_in(info)

        async def revoke(session: AsyncSession) -> None:
            session_pk = pk_of(input.session_id, "Session", "sessionId")
            await access.revoke_session(session, principal=principal, session_id=session_pk)

        return await run(info, RevokeSessionPayload, revoke, RevokeSessionPayload.done)


# -- registration and recovery (public)


@strawberry.input
class RegisterInput:
    contract_number: str
    security_code: str = strawberry.field(description="The one-time code on the paper contract.")
    legal_status: LegalStatus
    document_number: str = strawberry.field(description="Passport series and number, or INN.")
    email: str
    phone: str | None = None


@strawberry.type
class RegisterPayload:
    errors: list[UserError]
    login: str | None = strawberry.field(
        default=None, description="The login; the temporary password comes by mail."
    )


@strawberry.input
class RequestPasswordRecoveryInput:
    identifier: str = strawberry.field(description="Login, contract number, phone or email.")


@strawberry.type
class RequestPasswordRecoveryPayload(OkPayload):
    pass


@strawberry.input
class ResetPasswordInput:
    identifier: str
    code: str
    new_password: str


@strawberry.type
class ResetPasswordPayload(OkPayload):
    pass


@strawberry.input
class SubmitSupportRequestInput:
    contact: str = strawberry.field(description="How to reach you: email or phone.")
    message: str


@strawberry.type
class SubmitSupportRequestPayload(OkPayload):
    pass


# -- staff


@strawberry.input
class StaffCreateContractInput:
    legal_status: LegalStatus
    display_name: str
    document_number: str
    email: str
    phone: str | None = None
    region: str
    address: str
    tariff_id: strawberry.ID


@strawberry.type
class StaffCreateContractPayload:
    errors: list[UserError]
    contract: Contract | None = None
    security_code: str | None = strawberry.field(
        default=None, description="Shown once: print it on the paper contract."
    )


@strawberry.input
class StaffResetAccessInput:
    contract_number: str
    document_verified: bool = strawberry.field(
        description="The passport was checked in the office."
    )
    reason: str


@strawberry.type
class StaffResetAccessPayload(OkPayload):
    pass


@strawberry.input
class CloseSupportRequestInput:
    id: strawberry.ID
    resolution: str


@strawberry.type
class CloseSupportRequestPayload(OkPayload):
    pass


@strawberry.type
class AccountMutation:
    @mutation(
        access=PUBLIC,
        description="Register a contract with its security code and the owner's document; "
        "the login and a temporary password come by mail. One per request.",
    )
    async def register(self, info: Info, input: RegisterInput) -> RegisterPayload:
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
        self, info: Info, input: RequestPasswordRecoveryInput
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
    async def reset_password(self, info: Info, input: ResetPasswordInput) -> ResetPasswordPayload:
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
        self, info: Info, input: SubmitSupportRequestInput
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
        self, info: Info, input: StaffCreateContractInput
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
        self, info: Info, input: StaffResetAccessInput
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
        self, info: Info, input: CloseSupportRequestInput
    ) -> CloseSupportRequestPayload:
        async def close(session: AsyncSession) -> None:
            await support.close_support_request(
                session,
                staff_id=signed_in(info).id,
                request_id=pk_of(input.id, "SupportRequest", "id"),
                resolution=input.resolution,
            )

        return await run(info, CloseSupportRequestPayload, close, CloseSupportRequestPayload.done)


@strawberry.type
class Mutation(SessionMutation, AccountMutation, MoneyMutation, ServicesMutation, CatalogMutation):
    """Every mutation of the API (each domain adds its own base class here)."""
