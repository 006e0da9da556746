"""Autopay mutations (SPEC §7): set and disable a contract's autopay rule, forget a saved
payment method. For the subscriber owning the contract; every change is mailed."""

from __future__ import annotations

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from resolvers import autopay
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import (
    CONTRACT_NUMBER,
    ERRORS,
    INPUT,
    SUBSCRIBER,
    mutation,
    own_contract,
    pk_of,
    run,
    signed_in,
)
from schema.scalars import Money
from schema.types.account import Contract
from schema.types.autopay import AutopayMode


@strawberry.input(description="The autopay rule to set (it replaces the contract's rule).")
class SetAutopayInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    payment_method_id: strawberry.ID = strawberry.field(
        description="The saved method to pay from (`Contract.paymentMethods { id }`) of this "
        "contract; NOT_FOUND for any other."
    )
    mode: AutopayMode = strawberry.field(description="When to pay.")
    amount: Money = strawberry.field(
        description="How much each autopay payment is: within the top-up limits "
        "(10.00 to 50,000.00 RUB by default), at most 2 decimals."
    )
    threshold: Money | None = strawberry.field(
        default=None,
        description="BELOW_THRESHOLD (required): pay when the balance is below this after a "
        "billing day, 0.00 or more. Ignored for MONTHLY.",
    )
    day_of_month: int | None = strawberry.field(
        default=None,
        description="MONTHLY (required): the day of the month to pay on, 1 to 28. Ignored "
        "for BELOW_THRESHOLD.",
    )


@strawberry.type(description="What `setAutopay` answers.")
class SetAutopayPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    contract: Contract | None = strawberry.field(
        default=None,
        description="The contract with its rule (`autopay`) as set; null with errors.",
    )


@strawberry.input(description="The contract whose autopay to switch off.")
class DisableAutopayInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)


@strawberry.type(description="What `disableAutopay` answers.")
class DisableAutopayPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    contract: Contract | None = strawberry.field(
        default=None,
        description="The contract, its rule (`autopay`) switched off; null with errors.",
    )


@strawberry.input(description="The saved payment method to forget.")
class ForgetPaymentMethodInput:
    payment_method_id: strawberry.ID = strawberry.field(
        description="The method (`Contract.paymentMethods { id }`) of one of your contracts; "
        "NOT_FOUND for any other."
    )


@strawberry.type(description="What `forgetPaymentMethod` answers.")
class ForgetPaymentMethodPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    contract: Contract | None = strawberry.field(
        default=None,
        description="The contract the method was saved for, as it is now (the method gone "
        "from `paymentMethods`, an autopay rule using it switched off); null with errors.",
    )


@strawberry.type
class AutopayMutation:
    @mutation(
        access=SUBSCRIBER,
        description="Set autopay for one of your contracts: after each billing day a saved "
        "method pays `amount` when the balance is below `threshold` (BELOW_THRESHOLD) or on "
        "`dayOfMonth` (MONTHLY), at most once a day and `KABINET_AUTOPAY_MAX_PER_MONTH` "
        "times a month. Replaces the contract's rule, enabled, its failures reset. INVALID "
        "lists every field at fault. Mailed to you.",
    )
    async def set_autopay(
        self, info: Info, input: Annotated[SetAutopayInput, INPUT]
    ) -> SetAutopayPayload:
        context = info.context

        async def set_rule(session: AsyncSession) -> int:
            contract = await own_contract(info, input.contract_number)
            method_id = pk_of(input.payment_method_id, "SavedPaymentMethod", "paymentMethodId")
            return await autopay.set_autopay(
                session,
                settings=context.settings,
                contract_id=contract.id,
                payment_method_id=method_id,
                mode=input.mode.value,
                amount=input.amount,
                threshold=input.threshold,
                day_of_month=input.day_of_month,
            )

        return await run(
            info,
            SetAutopayPayload,
            set_rule,
            lambda contract_id: SetAutopayPayload(errors=[], contract=Contract.of_key(contract_id)),
        )

    @mutation(
        access=SUBSCRIBER,
        description="Switch off the autopay of one of your contracts (the rule stays, "
        "`enabled` false). NOT_FOUND when it has none. Mailed to you.",
    )
    async def disable_autopay(
        self, info: Info, input: Annotated[DisableAutopayInput, INPUT]
    ) -> DisableAutopayPayload:
        context = info.context

        async def disable(session: AsyncSession) -> int:
            contract = await own_contract(info, input.contract_number)
            return await autopay.disable_autopay(
                session, settings=context.settings, contract_id=contract.id
            )

        return await run(
            info,
            DisableAutopayPayload,
            disable,
            lambda contract_id: DisableAutopayPayload(
                errors=[], contract=Contract.of_key(contract_id)
            ),
        )

    @mutation(
        access=SUBSCRIBER,
        description="Forget a saved payment method of one of your contracts: it no longer "
        "shows nor pays; an autopay rule using it is switched off (and that is mailed).",
    )
    async def forget_payment_method(
        self, info: Info, input: Annotated[ForgetPaymentMethodInput, INPUT]
    ) -> ForgetPaymentMethodPayload:
        context = info.context
        principal = signed_in(info)

        async def forget(session: AsyncSession) -> int:
            method_id = pk_of(input.payment_method_id, "SavedPaymentMethod", "paymentMethodId")
            return await autopay.forget_payment_method(
                session,
                settings=context.settings,
                principal=principal,
                payment_method_id=method_id,
            )

        return await run(
            info,
            ForgetPaymentMethodPayload,
            forget,
            lambda contract_id: ForgetPaymentMethodPayload(
                errors=[], contract=Contract.of_key(contract_id)
            ),
        )
