"""Pause and socially significant access mutations (SPEC §8): `pauseService`,
`resumeService`, `cancelPause`, `activateSocialAccess`. The rules are resolvers/pause.py's
and resolvers/social_access.py's."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from resolvers import pause, social_access
from schema.context import Info
from schema.mutation_support import (
    CONTRACT_NUMBER,
    INPUT,
    SUBSCRIBER,
    ContractPayload,
    mutation,
    own_contract,
    run,
    signed_in,
)


@strawberry.input(description="The contract to pause and the pause's days.")
class PauseServiceInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    from_: date = strawberry.field(
        name="from",
        description="The pause's first day (UTC): today (it starts at once) or within "
        "KABINET_PAUSE_START_WITHIN_DAYS (30) days.",
    )
    to: date = strawberry.field(
        description="The pause's last day (UTC), included: 1 to KABINET_PAUSE_MAX_DAYS (30) "
        "days in all."
    )


@strawberry.input(description="The contract whose running pause to end now.")
class ResumeServiceInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)


@strawberry.input(description="The contract whose planned pause to cancel.")
class CancelPauseInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)


@strawberry.input(description="The contract suspended for debt.")
class ActivateSocialAccessInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)


@strawberry.type(
    description="What `pauseService` answers: the contract with its `pause` (and status "
    "PAUSED when it starts today)."
)
class PauseServicePayload(ContractPayload):
    pass


@strawberry.type(description="What `resumeService` answers: the contract back in service.")
class ResumeServicePayload(ContractPayload):
    pass


@strawberry.type(description="What `cancelPause` answers: the contract without its pause.")
class CancelPausePayload(ContractPayload):
    pass


@strawberry.type(
    description="What `activateSocialAccess` answers: the contract with its `socialAccess`."
)
class ActivateSocialAccessPayload(ContractPayload):
    pass


@strawberry.type
class PauseMutation:
    @mutation(
        access=SUBSCRIBER,
        description="Pause the service for 1 to 30 days, from today or a day within 30 days "
        "(one pause per 30 days; the balance at least 0.00 and no open promised payment). "
        "While paused the contract is PAUSED and is charged only the pause's daily fee. "
        "Every refusal comes back at once: the days (fields `from`, `to`); the contract's "
        "state (NOT_ELIGIBLE: suspended, closed, a promised payment open, too soon after the "
        "last pause; INSUFFICIENT_FUNDS: the balance below zero; CONFLICT: a pause planned "
        "or running already).",
    )
    async def pause_service(
        self, info: Info, input: Annotated[PauseServiceInput, INPUT]
    ) -> PauseServicePayload:
        settings = info.context.settings
        actor = signed_in(info).actor

        async def work(session: AsyncSession) -> int:
            contract = await own_contract(info, input.contract_number)
            await pause.pause_service(
                session,
                settings=settings,
                contract_id=contract.id,
                starts_on=input.from_,
                ends_on=input.to,
                actor=actor,
            )
            return int(contract.id)

        return await run(info, PauseServicePayload, work, lambda c: PauseServicePayload.of(info, c))

    @mutation(
        access=SUBSCRIBER,
        description="End the running pause now: the contract is ACTIVE again (SUSPENDED if "
        "the balance is below zero). NOT_FOUND when no pause is running.",
    )
    async def resume_service(
        self, info: Info, input: Annotated[ResumeServiceInput, INPUT]
    ) -> ResumeServicePayload:
        settings = info.context.settings

        async def work(session: AsyncSession) -> int:
            contract = await own_contract(info, input.contract_number)
            await pause.resume_service(session, settings=settings, contract_id=contract.id)
            return int(contract.id)

        return await run(
            info, ResumeServicePayload, work, lambda c: ResumeServicePayload.of(info, c)
        )

    @mutation(
        access=SUBSCRIBER,
        description="Cancel the planned pause before it starts. NOT_FOUND when none is "
        "planned; NOT_ELIGIBLE when it has started (`resumeService` ends it).",
    )
    async def cancel_pause(
        self, info: Info, input: Annotated[CancelPauseInput, INPUT]
    ) -> CancelPausePayload:
        settings = info.context.settings

        async def work(session: AsyncSession) -> int:
            contract = await own_contract(info, input.contract_number)
            await pause.cancel_pause(session, settings=settings, contract_id=contract.id)
            return int(contract.id)

        return await run(info, CancelPausePayload, work, lambda c: CancelPausePayload.of(info, c))

    @mutation(
        access=SUBSCRIBER,
        description="Turn on free access to the socially significant sites for a contract "
        "SUSPENDED for debt, for KABINET_SOCIAL_ACCESS_DAYS (7) days. Once per suspension: "
        "asked again while it is on, the same access; after it ran out, NOT_ELIGIBLE until "
        "the next suspension. NOT_ELIGIBLE for a contract that is not suspended.",
    )
    async def activate_social_access(
        self, info: Info, input: Annotated[ActivateSocialAccessInput, INPUT]
    ) -> ActivateSocialAccessPayload:
        settings = info.context.settings
        actor = signed_in(info).actor

        async def work(session: AsyncSession) -> int:
            contract = await own_contract(info, input.contract_number)
            await social_access.activate_social_access(
                session, settings=settings, contract_id=contract.id, actor=actor
            )
            return int(contract.id)

        return await run(
            info,
            ActivateSocialAccessPayload,
            work,
            lambda c: ActivateSocialAccessPayload.of(info, c),
        )
