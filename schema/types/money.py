"""Money as the front ends see it: ledger entries, expense summaries, payments, receipts,
promised payments."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry

from core.ids import to_global_id
from resolvers import payments, promised
from schema.context import Info
from schema.scalars import Money
from schema.types.node import Node
from schema.types.pagination import CountedConnection
from schema.types.viewed import Viewed, link, value, viewed


@strawberry.enum(description="What a balance change was.")
class LedgerKind(Enum):
    TOP_UP = "TOP_UP"
    CHARGE = "CHARGE"
    PROMISED_PAYMENT = "PROMISED_PAYMENT"
    PROMISED_PAYMENT_FEE = "PROMISED_PAYMENT_FEE"
    PROMISED_PAYMENT_REPAYMENT = "PROMISED_PAYMENT_REPAYMENT"
    BONUS_CREDIT = "BONUS_CREDIT"
    ADJUSTMENT = "ADJUSTMENT"
    REFUND = "REFUND"


@viewed
@strawberry.type(description="One change of a contract's balance.")
class LedgerEntry(Viewed, Node):
    VIEW = "LedgerEntry"
    id: strawberry.ID = value()
    kind: LedgerKind = value()
    amount: Money = value(description="Signed: charges are negative.")
    balance_after: Money = value()
    description: str = value()
    reference: str | None = value()
    created_at: datetime = value()


@strawberry.type(description="A contract's balance changes, newest first, a page at a time.")
class LedgerEntryConnection(CountedConnection[LedgerEntry]):
    pass


@viewed
@strawberry.type
class CategoryTotal(Viewed):
    VIEW = "CategoryTotal"
    kind: LedgerKind = value()
    total: Money = value(description="Signed: charges negative, credits positive.")


@viewed
@strawberry.type
class MonthTotal(Viewed):
    VIEW = "MonthTotal"
    month: str = value(description='"YYYY-MM" (UTC).')
    charged: Money = value()
    credited: Money = value()


@viewed
@strawberry.type(description="Totals of a period, by category and by month.")
class ExpenseSummary(Viewed):
    VIEW = "ExpenseSummary"
    from_: date = value(name="from")
    to: date = value()
    total_charged: Money = value()
    total_credited: Money = value()
    by_category: list[CategoryTotal] = link()
    by_month: list[MonthTotal] = link()


@strawberry.enum
class PaymentMethod(Enum):
    BANK_CARD = "BANK_CARD"
    SBP = "SBP"
    E_WALLET = "E_WALLET"
    CASH_TERMINAL = "CASH_TERMINAL"


@strawberry.enum
class PaymentStatus(Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@strawberry.type(description="An electronic receipt of a successful top-up (VAT included).")
class Receipt:
    number: str
    issued_at: datetime
    seller_name: str
    seller_inn: str
    contract_number: str
    payer_email: str | None
    item: str
    vat_rate: str = strawberry.field(description='Percent, e.g. "20".')
    vat_amount: Money
    total: Money
    method: PaymentMethod
    provider_reference: str | None
    url: str = strawberry.field(description="The printable page, for its owner.")

    @classmethod
    def from_row(cls, row: Any, *, url: str) -> Receipt:
        return cls(
            number=row.number,
            issued_at=row.issued_at,
            seller_name=row.seller_name,
            seller_inn=row.seller_inn,
            contract_number=row.contract_number,
            payer_email=row.payer_email,
            item=row.item,
            vat_rate=f"{row.vat_rate.normalize():f}",
            vat_amount=row.vat_amount,
            total=row.total,
            method=PaymentMethod(row.method),
            provider_reference=row.provider_reference,
            url=url,
        )


@viewed
@strawberry.type(description="A top-up of a contract's balance.")
class Payment(Viewed, Node):
    VIEW = "Payment"
    id: strawberry.ID = value()
    amount: Money = value()
    method: PaymentMethod = value()
    status: PaymentStatus = value()
    created_at: datetime = value()
    confirmed_at: datetime | None = value()

    @strawberry.field(description="Where to pay while PENDING; null afterwards.")
    async def confirmation_url(self, info: Info) -> str | None:
        row = await self.loaded_row(info)
        if row.status != PaymentStatus.PENDING.value:
            return None
        return payments.confirmation_url_for(
            info.context.settings, payment_id=row.id, amount=row.amount
        )

    @strawberry.field(description="The receipt, once the payment has SUCCEEDED.")
    async def receipt(self, info: Info) -> Receipt | None:
        row = await self.loaded_row(info)
        if row.status != PaymentStatus.SUCCEEDED.value:
            return None
        found = await info.context.loaders.receipt_of_payment.load(row.id)
        if found is None:
            return None
        url = f"{info.context.settings.public_url}/receipts/{to_global_id('Payment', row.id)}"
        return Receipt.from_row(found, url=url)


@strawberry.type(description="A contract's top-ups, newest first, a page at a time.")
class PaymentConnection(CountedConnection[Payment]):
    pass


@strawberry.enum
class PromisedPaymentStatus(Enum):
    OPEN = "OPEN"
    REPAID = "REPAID"
    OVERDUE = "OVERDUE"


@viewed
@strawberry.type(description="Money lent until the next top-up (SPEC: promised payment).")
class PromisedPayment(Viewed, Node):
    VIEW = "PromisedPayment"
    id: strawberry.ID = value()
    amount: Money = value()
    fee: Money = value()
    status: PromisedPaymentStatus = value()
    issued_at: datetime = value()
    due_at: datetime = value()
    settled_at: datetime | None = value()


@viewed
@strawberry.type
class PromiseFeeTier(Viewed):
    VIEW = "PromiseFeeTier"
    up_to: Money | None = value(description="Inclusive; null: any larger amount.")
    fee: Money = value()


@strawberry.enum(
    description="Why a promised payment cannot be taken now; "
    "`PromisedPaymentOffer.messages` says the same in words."
)
class PromisedPaymentRefusal(Enum):
    CONTRACT_CLOSED = strawberry.enum_value(
        promised.CONTRACT_CLOSED, description="The contract is closed."
    )
    CONTRACT_TOO_NEW = strawberry.enum_value(
        promised.CONTRACT_TOO_NEW,
        description="The contract is not old enough yet (`messages` says how old it must be).",
    )
    PROMISE_OPEN = strawberry.enum_value(
        promised.PROMISE_OPEN, description="A promised payment is open already."
    )
    PROMISE_OVERDUE = strawberry.enum_value(
        promised.PROMISE_OVERDUE,
        description="A promised payment is overdue: a top-up must repay it first.",
    )
    BALANCE_SUFFICIENT = strawberry.enum_value(
        promised.BALANCE_SUFFICIENT,
        description="The balance covers the coming charges (`messages` says for how many "
        "days): no promise is needed.",
    )
    NOTHING_TO_PROMISE = strawberry.enum_value(
        promised.NOTHING_TO_PROMISE,
        description="There are no charges or recent top-ups to base an amount on.",
    )


@viewed
@strawberry.type(description="Whether a promised payment can be taken now, and how much.")
class PromisedPaymentOffer(Viewed):
    VIEW = "PromisedPaymentOffer"
    id: strawberry.ID = value(
        description="The contract's offer, for a client's cache: stable, one per contract "
        "(not fetchable by `node`)."
    )
    available: bool = value()
    max_amount: Money = value()
    term_days: int = value()
    fee_tiers: list[PromiseFeeTier] = link()
    reasons: list[str] = link(
        description="Why not, as stable codes: CONTRACT_TOO_NEW, PROMISE_OPEN, PROMISE_OVERDUE, "
        "BALANCE_SUFFICIENT, NOTHING_TO_PROMISE, CONTRACT_CLOSED.",
        deprecation_reason="Use `reasonCodes`: the same codes, in the same order, as an enum "
        "that code generators type.",
    )
    reason_codes: list[PromisedPaymentRefusal] = link(
        description="Why not (empty when `available`), in a fixed order; `messages` says them "
        "in words, in the same order."
    )
    messages: list[str] = link(description="The reasons in words, same order.")
