"""Service mutations: tariff, TV, Personal TV, Multiroom, options, bonus rewards."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import IsSignedIn, IsSubscriber
from resolvers import bonus
from schema.context import Info
from schema.errors import UserError
from schema.money import own_contract
from schema.mutation_support import attempt, pk_of
from schema.types.account import BonusAccount, Contract


async def contract_payload(info: Info, contract_id: int) -> Contract:
    row = await info.context.loaders.contract_by_id.load(contract_id)
    return Contract.from_row(row)


@strawberry.input
class RedeemBonusInput:
    contract_number: str
    reward_id: strawberry.ID


@strawberry.type
class RedeemBonusPayload:
    errors: list[UserError]
    bonus_account: BonusAccount | None = None
    contract: Contract | None = None


@strawberry.type
class ServicesMutation:
    @strawberry.mutation(
        permission_classes=[IsSignedIn, IsSubscriber],
        description="Spend bonus points (oldest first) on a reward for a contract.",
    )
    async def redeem_bonus(self, info: Info, input: RedeemBonusInput) -> RedeemBonusPayload:
        context = info.context
        principal = context.principal
        assert principal is not None

        async def redeem(session: AsyncSession) -> Any:
            contract = await own_contract(info, input.contract_number)
            reward_id = pk_of(input.reward_id, "BonusReward", "rewardId")
            redeemed = await bonus.redeem_bonus(
                session,
                settings=context.settings,
                subscriber_id=contract.subscriber_id,
                contract_id=contract.id,
                reward_id=reward_id,
                actor=principal.actor,
            )
            return contract.id, redeemed

        result, errors = await attempt(info, redeem)
        if result is None:
            return RedeemBonusPayload(errors=errors)
        contract_id, redeemed = result
        return RedeemBonusPayload(
            errors=[],
            bonus_account=BonusAccount(subscriber_pk=principal.id, points=redeemed.points_left),
            contract=await contract_payload(info, contract_id),
        )
