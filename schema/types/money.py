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
from schema.types.enums import values_described
from schema.types.node import ID_DESCRIPTION, Node
from schema.types.pagination import CountedConnection
from schema.types.viewed import Viewed, link, value, viewed


@values_described(
    {
        "TOP_UP": "A top-up, credited when its payment has SUCCEEDED.",
        "CHARGE": "A billing day's charge: that day's share of the monthly fees.",
        "PROMISED_PAYMENT": "A promised payment, credited when taken.",
        "PROMISED_PAYMENT_FEE": "The fee of a promised payment, debited when taken.",
        "PROMISED_PAYMENT_REPAYMENT": (
            "A promised payment paid back: by the next top-up, or debited by the "
            "billing day when it falls due."
        ),
        "BONUS_CREDIT": "Money from a BALANCE_CREDIT bonus reward.",
        "ADJUSTMENT": "A correction by staff; its description is their reason.",
        "REFUND": "Money given back; no operation of the API makes one today.",
    }
)
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
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    kind: LedgerKind = value(description="What the change was.")
    amount: Money = value(description="Signed: charges are negative.")
    balance_after: Money = value(description="The balance right after this change.")
    description: str = value(
        description="What happened, in words for the subscriber (in Russian; an "
        "ADJUSTMENT's is the staff's reason)."
    )
    reference: str | None = value(
        description='What caused it, as "<what>:<key>" (e.g. "payment:42", "promise:7", '
        '"billing:2025-03-31"); the keys are not global IDs. Null when there is none.'
    )
    created_at: datetime = value(description="When the change was made.")


@strawberry.type(description="A contract's balance changes, newest first, a page at a time.")
class LedgerEntryConnection(CountedConnection[LedgerEntry]):
    pass


@viewed
@strawberry.type(description="The total of one kind of balance change over a period.")
class CategoryTotal(Viewed):
    VIEW = "CategoryTotal"
    kind: LedgerKind = value(description="The kind of change.")
    total: Money = value(description="Signed: charges negative, credits positive.")


@viewed
@strawberry.type(description="The totals of one calendar month (UTC) of a period.")
class MonthTotal(Viewed):
    VIEW = "MonthTotal"
    month: str = value(description='"YYYY-MM" (UTC).')
    charged: Money = value(
        description="Money debited in the month's days of the period, as a positive amount."
    )
    credited: Money = value(description="Money credited in the month's days of the period.")


@viewed
@strawberry.type(description="Totals of a period, by category and by month.")
class ExpenseSummary(Viewed):
    VIEW = "ExpenseSummary"
    from_: date = value(name="from", description="The first day of the period (UTC), included.")
    to: date = value(description="The last day of the period (UTC), included.")
    total_charged: Money = value(description="Money debited in the period, as a positive amount.")
    total_credited: Money = value(description="Money credited in the period.")
    by_category: list[CategoryTotal] = link(
        description="Totals of the kinds with entries in the period, in `LedgerKind` order."
    )
    by_month: list[MonthTotal] = link(
        description="Totals by month, oldest first; every month of the period, zeros included."
    )


@values_described(
    {
        "BANK_CARD": "A bank card.",
        "SBP": "SBP, the Russian Faster Payments System.",
        "E_WALLET": "An electronic wallet.",
        "CASH_TERMINAL": "Cash, at a payment terminal.",
    }
)
@strawberry.enum(description="How a top-up is paid.")
class PaymentMethod(Enum):
    BANK_CARD = "BANK_CARD"
    SBP = "SBP"
    E_WALLET = "E_WALLET"
    CASH_TERMINAL = "CASH_TERMINAL"


@values_described(
    {
        "PENDING": (
            "Waiting for the payment provider; pay at `confirmationUrl`. Nothing is credited yet."
        ),
        "SUCCEEDED": "Paid: the balance is credited (once) and the receipt issued.",
        "FAILED": "Not paid, as the payment provider reported; nothing credited.",
        "CANCELED": (
            "Canceled, nothing credited: by the subscriber (`cancelTopUp`) or left PENDING "
            "past `KABINET_TOP_UP_EXPIRY_HOURS`. Should the payment provider still report it "
            "paid, it becomes SUCCEEDED and is credited (once)."
        ),
    }
)
@strawberry.enum(description="Where a top-up stands: PENDING, then SUCCEEDED, FAILED or CANCELED.")
class PaymentStatus(Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@strawberry.type(description="An electronic receipt of a successful top-up (VAT included).")
class Receipt:
    number: str = strawberry.field(description='The receipt\'s number, "R-<YYYYMMDD>-<8 digits>".')
    issued_at: datetime = strawberry.field(description="When it was issued: the payment's success.")
    seller_name: str = strawberry.field(description="The seller: the operator's legal name.")
    seller_inn: str = strawberry.field(description="The seller's tax number (INN).")
    contract_number: str = strawberry.field(description="The contract topped up.")
    payer_email: str | None = strawberry.field(
        description="Where the receipt was emailed; null when there is no email on file."
    )
    item: str = strawberry.field(
        description='What was paid for, in Russian: "Предоплата услуг связи" '
        "(communication services prepayment)."
    )
    vat_rate: str = strawberry.field(description='The VAT rate in percent, e.g. "20".')
    vat_amount: Money = strawberry.field(description="The VAT included in `total`.")
    total: Money = strawberry.field(description="The amount paid, VAT included.")
    method: PaymentMethod = strawberry.field(description="How it was paid.")
    provider_reference: str | None = strawberry.field(
        description="The payment provider's reference of the payment; null when it gave none."
    )
    url: str = strawberry.field(
        description="The printable page (`/receipts/<Payment.id>`), for its owner."
    )
    provider_status: str | None = strawberry.field(
        default=None,
        description="The fiscal receipt's registration at the payment provider, as the "
        "provider reports it (YooKassa: pending, succeeded, canceled); null when it reports "
        "none (the sandbox).",
    )

    @classmethod
    def from_row(cls, row: Any, *, url: str, provider_status: str | None = None) -> Receipt:
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
            provider_status=provider_status,
        )


@viewed
@strawberry.type(description="A top-up of a contract's balance.")
class Payment(Viewed, Node):
    VIEW = "Payment"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    amount: Money = value(description="The amount to credit (10.00 to 50,000.00 RUB).")
    method: PaymentMethod = value(description="How it is paid.")
    status: PaymentStatus = value(description="Where it stands.")
    created_at: datetime = value(description="When the top-up was started.")
    confirmed_at: datetime | None = value(
        description="When the payment provider reported the outcome; null while PENDING."
    )

    @strawberry.field(description="Where to pay while PENDING; null afterwards.")
    async def confirmation_url(self, info: Info) -> str | None:
        row = await self.loaded_row(info)
        if row.status != PaymentStatus.PENDING.value:
            return None
        return payments.confirmation_url_for(
            info.context.settings,
            payment_id=row.id,
            amount=row.amount,
            provider=getattr(row, "provider", None),
            stored=getattr(row, "confirmation_url", None),
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
        return Receipt.from_row(
            found, url=url, provider_status=getattr(row, "receipt_status", None)
        )


@strawberry.type(description="A contract's top-ups, newest first, a page at a time.")
class PaymentConnection(CountedConnection[Payment]):
    pass


@values_described(
    {
        "OPEN": "Taken and not yet repaid: the next top-up repays it first.",
        "REPAID": "Repaid.",
        "OVERDUE": (
            "Debited when due, leaving the balance below zero: the contract is "
            "suspended. It turns REPAID once the balance is back to 0.00 or above."
        ),
    }
)
@strawberry.enum(description="Where a promised payment stands.")
class PromisedPaymentStatus(Enum):
    OPEN = "OPEN"
    REPAID = "REPAID"
    OVERDUE = "OVERDUE"


@viewed
@strawberry.type(description="Money lent until the next top-up (SPEC: promised payment).")
class PromisedPayment(Viewed, Node):
    VIEW = "PromisedPayment"
    id: strawberry.ID = value(description=ID_DESCRIPTION)
    amount: Money = value(description="The amount credited.")
    fee: Money = value(description="Its fee, debited when it was taken (0.00: free).")
    status: PromisedPaymentStatus = value(description="Where it stands.")
    issued_at: datetime = value(description="When it was taken.")
    due_at: datetime = value(
        description="When it falls due (`termDays` after it was taken): if not repaid by "
        "then, the billing day debits it."
    )
    settled_at: datetime | None = value(
        description="When it was repaid or debited; null while OPEN."
    )


@viewed
@strawberry.type(description="The fee of a promised payment up to an amount.")
class PromiseFeeTier(Viewed):
    VIEW = "PromiseFeeTier"
    up_to: Money | None = value(
        description="The largest amount of this tier, included; null: any larger amount."
    )
    fee: Money = value(description="The fee of an amount in this tier (0.00: free).")


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
    available: bool = value(
        description="true when a promised payment can be taken now; else see `reasons`."
    )
    max_amount: Money = value(
        description="The most that can be taken now, in whole roubles (at most 5,000.00); "
        "0.00 when not available."
    )
    term_days: int = value(description="Days until a promised payment taken now falls due.")
    fee_tiers: list[PromiseFeeTier] = link(description="The fee by amount, smallest amounts first.")
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
