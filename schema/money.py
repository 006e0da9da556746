"""Money mutations: top-ups, promised payments, staff balance adjustments."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import IsSignedIn, IsStaff, IsSubscriber
from resolvers import adjustments, payments, promised
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import attempt, own_contract
from schema.scalars import Money
from schema.types.account import Balance, Contract
from schema.types.money import Payment, PaymentMethod, PromisedPayment


@strawberry.input
class CreateTopUpInput:
    contract_number: str
    amount: Money
    method: PaymentMethod
    idempotency_key: str = strawberry.field(
        description="Your unique key for this top-up: a retry with it returns the same payment."
    )


@strawberry.type
class CreateTopUpPayload:
    errors: list[UserError]
    payment: Payment | None = None


@strawberry.input
class ActivatePromisedPaymentInput:
    contract_number: str
    amount: Money


@strawberry.type
class ActivatePromisedPaymentPayload:
    errors: list[UserError]
    promised_payment: PromisedPayment | None = None
    balance: Balance | None = None


@strawberry.input
class AdjustBalanceInput:
    contract_number: str
    amount: Money = strawberry.field(description="Signed: negative to debit.")
    reason: str = strawberry.field(description="Why: kept in the ledger and the audit log.")


@strawberry.type
class AdjustBalancePayload:
    errors: list[UserError]
    contract: Contract | None = None


@strawberry.type
class MoneyMutation:
    @strawberry.mutation(
        permission_classes=[IsSignedIn, IsSubscriber],
        description="Start a top-up: a PENDING payment and where to pay (`confirmationUrl`). "
        "The balance is credited when the payment provider confirms it.",
    )
    async def create_top_up(self, info: Info, input: CreateTopUpInput) -> CreateTopUpPayload:
        context = info.context
        principal = context.principal
        assert principal is not None

        async def create(session: AsyncSession) -> Any:
            contract = await own_contract(info, input.contract_number)
            return await payments.create_top_up(
                session,
                settings=context.settings,
                principal_scope=principal.actor,
                contract_id=contract.id,
                amount=input.amount,
                method=input.method.value,
                idempotency_key=input.idempotency_key,
            )

        top_up, errors = await attempt(info, create)
        if top_up is None:
            return CreateTopUpPayload(errors=errors)
        return CreateTopUpPayload(errors=[], payment=Payment.from_row(top_up))

    @strawberry.mutation(
        permission_classes=[IsSignedIn, IsSubscriber],
        description="Take a promised payment: credited at once, repaid by the next top-up.",
    )
    async def activate_promised_payment(
        self, info: Info, input: ActivatePromisedPaymentInput
    ) -> ActivatePromisedPaymentPayload:
        context = info.context
        principal = context.principal
        assert principal is not None

        async def activate(session: AsyncSession) -> Any:
            contract = await own_contract(info, input.contract_number)
            return contract, await promised.activate_promised_payment(
                session,
                settings=context.settings,
                contract_id=contract.id,
                amount=input.amount,
                actor=principal.actor,
            )

        result, errors = await attempt(info, activate)
        if result is None:
            return ActivatePromisedPaymentPayload(errors=errors)
        contract, activated = result
        return ActivatePromisedPaymentPayload(
            errors=[],
            promised_payment=PromisedPayment.from_row(activated.promise),
            balance=Balance(
                contract_pk=contract.id,
                amount=activated.balance_after,
                currency=context.settings.currency,
            ),
        )

    @strawberry.mutation(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: correct a balance with a reason (a ledger entry; audited).",
    )
    async def adjust_balance(self, info: Info, input: AdjustBalanceInput) -> AdjustBalancePayload:
        context = info.context
        principal = context.principal
        assert principal is not None

        async def adjust(session: AsyncSession) -> Any:
            return await adjustments.adjust_balance(
                session,
                staff_id=principal.id,
                contract_number=input.contract_number,
                amount=input.amount,
                reason=input.reason,
                client_address=context.client_address,
            )

        adjusted, errors = await attempt(info, adjust)
        if adjusted is None:
            return AdjustBalancePayload(errors=errors)
        row = await context.loaders.contract_by_id.load(adjusted.contract_id)
        return AdjustBalancePayload(errors=[], contract=Contract.from_row(row))
