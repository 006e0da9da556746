"""Money mutations: top-ups (and canceling one), promised payments, staff balance
adjustments and refunds."""

from __future__ import annotations

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorCode
from resolvers import adjustments, payments, promised, refunds
from resolvers.adjustments import Adjusted
from resolvers.payments import IDEMPOTENCY_KEY_RULE, TopUp
from resolvers.promised import PromiseResult
from resolvers.refunds import RefundStarted
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import (
    CONTRACT_NUMBER,
    ERRORS,
    INPUT,
    STAFF,
    SUBSCRIBER,
    mutation,
    own_contract,
    pk_of,
    run,
    signed_in,
)
from schema.scalars import Money
from schema.types.account import Balance, Contract
from schema.types.money import Payment, PaymentMethod, PromisedPayment


@strawberry.input(description="The top-up to start.")
class CreateTopUpInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    amount: Money = strawberry.field(
        description="The amount to credit: 10.00 to 50,000.00 RUB, at most 2 decimals."
    )
    method: PaymentMethod = strawberry.field(description="How it will be paid.")
    idempotency_key: str = strawberry.field(
        description=f"Your unique key for this top-up: {IDEMPOTENCY_KEY_RULE} (a UUID will "
        "do). A retry with the same key returns the same payment; the same key with another "
        "amount or method is a CONFLICT."
    )
    return_url: str | None = strawberry.field(
        default=None,
        description="Where the payment provider sends the payer back after paying: an "
        "http(s) URL whose origin is allowed (`KABINET_RETURN_URL_ORIGINS`, by default the "
        "service's own); INVALID otherwise. Optional.",
    )
    save_payment_method: bool = strawberry.field(
        default=False,
        description="Ask the payment provider to save the card or SBP account for later "
        "payments (autopay); it then shows in `Contract.paymentMethods`, by title only.",
    )


@strawberry.type(description="What `createTopUp` answers.")
class CreateTopUpPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    payment: Payment | None = strawberry.field(
        default=None,
        description="The payment: PENDING when new (a retry with the same key gets it as it "
        "is now); send the payer to its `confirmationUrl`. Null on failure.",
    )
    contract: Contract | None = strawberry.field(
        default=None,
        description="The contract topped up, as it is now (its balance grows when the payment "
        "provider confirms the payment); null with errors.",
    )


@strawberry.input(description="The top-up to cancel.")
class CancelTopUpInput:
    payment_id: strawberry.ID = strawberry.field(
        description="The payment (`Payment.id`): one of your own top-ups, still PENDING; "
        "NOT_FOUND for any other."
    )


@strawberry.type(description="What `cancelTopUp` answers.")
class CancelTopUpPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    payment: Payment | None = strawberry.field(
        default=None, description="The payment, now CANCELED; null with errors."
    )
    contract: Contract | None = strawberry.field(
        default=None,
        description="The contract of the payment, as it is now (nothing was credited); null "
        "with errors.",
    )


@strawberry.input(description="The promised payment to take.")
class ActivatePromisedPaymentInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    amount: Money = strawberry.field(
        description="How much: above 0.00 and at most `PromisedPaymentOffer.maxAmount`."
    )


@strawberry.type(description="What `activatePromisedPayment` answers.")
class ActivatePromisedPaymentPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    promised_payment: PromisedPayment | None = strawberry.field(
        default=None, description="The promised payment taken, OPEN; null on failure."
    )
    balance: Balance | None = strawberry.field(
        default=None,
        description="The contract's balance after it (credited, fee debited); null on failure.",
    )
    contract: Contract | None = strawberry.field(
        default=None,
        description="The contract as it is after the promise: its balance with the amount "
        "credited and the promise open, its offer; null with errors.",
    )


@strawberry.input(description="Staff: the correction to make.")
class AdjustBalanceInput:
    contract_number: str = strawberry.field(description=CONTRACT_NUMBER)
    amount: Money = strawberry.field(
        description="Signed: negative to debit; not zero, at most 100,000.00 either way."
    )
    reason: str = strawberry.field(
        description="Why (5 to 500 characters): kept in the ledger and the audit log."
    )


@strawberry.type(description="What `adjustBalance` answers.")
class AdjustBalancePayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    contract: Contract | None = strawberry.field(
        default=None, description="The contract as it is after the change; null on failure."
    )


@strawberry.input(description="Staff: the refund to make.")
class RefundPaymentInput:
    payment_id: strawberry.ID = strawberry.field(description="The SUCCEEDED payment (its ID).")
    amount: Money = strawberry.field(
        description="How much to give back: above zero, at most the payment's amount minus "
        "its earlier refunds (INVALID otherwise)."
    )
    reason: str = strawberry.field(
        description="Why (5 to 500 characters): kept with the refund and in the audit log."
    )


@strawberry.type(description="What `refundPayment` answers.")
class RefundPaymentPayload:
    errors: list[UserError] = strawberry.field(description=ERRORS)
    refund_status: str | None = strawberry.field(
        default=None,
        description="The refund's status: SUCCEEDED once the provider has made it (the "
        "balance is then debited by a REFUND ledger entry), PENDING while it waits for the "
        "provider's notification; CANCELED when the provider refused it. Null on failure.",
    )
    payment: Payment | None = strawberry.field(
        default=None, description="The payment refunded; null on failure."
    )
    contract: Contract | None = strawberry.field(
        default=None, description="The contract as it is after the refund; null on failure."
    )


@strawberry.type
class MoneyMutation:
    @mutation(
        access=SUBSCRIBER,
        description="Start a top-up: a PENDING payment and where to pay (`confirmationUrl`). "
        "The balance is credited when the payment provider confirms it.",
    )
    async def create_top_up(
        self, info: Info, input: Annotated[CreateTopUpInput, INPUT]
    ) -> CreateTopUpPayload:
        context = info.context
        principal = signed_in(info)

        async def create(session: AsyncSession) -> TopUp:
            contract = await own_contract(info, input.contract_number)
            return await payments.create_top_up(
                session,
                settings=context.settings,
                principal_scope=principal.actor,
                contract_id=contract.id,
                amount=input.amount,
                method=input.method.value,
                idempotency_key=input.idempotency_key,
                return_url=input.return_url,
                save_payment_method=input.save_payment_method,
            )

        async def at_provider(top_up: TopUp) -> CreateTopUpPayload:
            errors: list[UserError] = []
            try:
                top_up = await payments.top_up_at_provider(
                    context.reader, settings=context.settings, top_up=top_up
                )
            except DomainError as error:
                errors = UserError.all_of(error)
            return CreateTopUpPayload(
                errors=errors,
                payment=Payment.from_row(top_up),
                contract=Contract.of_key(top_up.contract_id),
            )

        return await run(info, CreateTopUpPayload, create, at_provider)

    @mutation(
        access=SUBSCRIBER,
        description="Cancel one of your top-ups that is still PENDING (an abandoned one is "
        "canceled anyway after `KABINET_TOP_UP_EXPIRY_HOURS`). CONFLICT when it is no longer "
        "PENDING. Should the payment provider still report it paid, it is credited.",
    )
    async def cancel_top_up(
        self, info: Info, input: Annotated[CancelTopUpInput, INPUT]
    ) -> CancelTopUpPayload:
        principal = signed_in(info)

        async def cancel(session: AsyncSession) -> tuple[int, int]:
            payment_id = pk_of(input.payment_id, "Payment", "paymentId")
            contract_id = await payments.cancel_top_up(
                session, principal=principal, payment_id=payment_id
            )
            return payment_id, contract_id

        return await run(
            info,
            CancelTopUpPayload,
            cancel,
            lambda ids: CancelTopUpPayload(
                errors=[], payment=Payment.of_key(ids[0]), contract=Contract.of_key(ids[1])
            ),
        )

    @mutation(
        access=SUBSCRIBER,
        description="Take a promised payment: credited at once, repaid by the next top-up.",
    )
    async def activate_promised_payment(
        self, info: Info, input: Annotated[ActivatePromisedPaymentInput, INPUT]
    ) -> ActivatePromisedPaymentPayload:
        context = info.context
        principal = signed_in(info)

        async def activate(session: AsyncSession) -> tuple[int, PromiseResult]:
            contract = await own_contract(info, input.contract_number)
            activated = await promised.activate_promised_payment(
                session,
                settings=context.settings,
                contract_id=contract.id,
                amount=input.amount,
                actor=principal.actor,
            )
            return contract.id, activated

        def answer(result: tuple[int, PromiseResult]) -> ActivatePromisedPaymentPayload:
            contract_id, activated = result
            return ActivatePromisedPaymentPayload(
                errors=[],
                promised_payment=PromisedPayment.from_row(activated.promise),
                balance=Balance.of_key(contract_id),
                contract=Contract.of_key(contract_id),
            )

        return await run(info, ActivatePromisedPaymentPayload, activate, answer)

    @mutation(
        access=STAFF,
        description="Staff: correct a balance with a reason (a ledger entry; audited).",
    )
    async def adjust_balance(
        self, info: Info, input: Annotated[AdjustBalanceInput, INPUT]
    ) -> AdjustBalancePayload:
        context = info.context

        async def adjust(session: AsyncSession) -> Adjusted:
            return await adjustments.adjust_balance(
                session,
                settings=context.settings,
                staff_id=signed_in(info).id,
                contract_number=input.contract_number,
                amount=input.amount,
                reason=input.reason,
                client_address=context.client_address,
            )

        async def answer(adjusted: Adjusted) -> AdjustBalancePayload:
            return AdjustBalancePayload(errors=[], contract=Contract.of_key(adjusted.contract_id))

        return await run(info, AdjustBalancePayload, adjust, answer)

    @mutation(
        access=STAFF,
        description="Staff: refund part or all of a SUCCEEDED payment, with a reason "
        "(audited): never more than the payment minus its earlier refunds. The provider "
        "makes the refund (with its own fiscal receipt); when it reports success the balance "
        "is debited (a REFUND ledger entry), the points the amount earned are taken back "
        "and the subscriber gets a letter. PROVIDER_UNAVAILABLE: repeat the same refund.",
    )
    async def refund_payment(
        self, info: Info, input: Annotated[RefundPaymentInput, INPUT]
    ) -> RefundPaymentPayload:
        context = info.context

        async def start(session: AsyncSession) -> RefundStarted:
            payment_id = pk_of(input.payment_id, "Payment", "paymentId")
            return await refunds.start_refund(
                session,
                settings=context.settings,
                staff_id=signed_in(info).id,
                payment_id=payment_id,
                amount=input.amount,
                reason=input.reason,
                client_address=context.client_address,
            )

        async def at_provider(started: RefundStarted) -> RefundPaymentPayload:
            errors: list[UserError] = []
            try:
                status = await refunds.refund_at_provider(
                    context.reader, settings=context.settings, started=started
                )
            except DomainError as error:
                errors = UserError.all_of(error)
                status = "CANCELED" if error.code == ErrorCode.NOT_ELIGIBLE else "PENDING"
            return RefundPaymentPayload(
                errors=errors,
                refund_status=status,
                payment=Payment.of_key(started.payment_id),
                contract=Contract.of_key(started.contract_id),
            )

        return await run(info, RefundPaymentPayload, start, at_provider)
