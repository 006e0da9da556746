"""Money as the front ends see it: ledger entries, expense summaries, payments, receipts,
promised payments."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry

from schema.scalars import Money
from schema.types.node import Node, to_global_id


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


@strawberry.type(description="One change of a contract's balance.")
class LedgerEntry(Node):
    kind: LedgerKind
    amount: Money = strawberry.field(description="Signed: charges are negative.")
    balance_after: Money
    description: str
    reference: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> LedgerEntry:
        return cls(
            id=to_global_id("LedgerEntry", row.id),
            kind=LedgerKind(row.kind),
            amount=row.amount,
            balance_after=row.balance_after,
            description=row.description,
            reference=row.reference,
            created_at=row.created_at,
        )


@strawberry.type
class CategoryTotal:
    kind: LedgerKind
    total: Money = strawberry.field(description="Signed: charges negative, credits positive.")


@strawberry.type
class MonthTotal:
    month: str = strawberry.field(description='"YYYY-MM" (UTC).')
    charged: Money
    credited: Money


@strawberry.type(description="Totals of a period, by category and by month.")
class ExpenseSummary:
    from_: date = strawberry.field(name="from")
    to: date
    total_charged: Money
    total_credited: Money
    by_category: list[CategoryTotal]
    by_month: list[MonthTotal]

    @classmethod
    def from_summary(cls, summary: Any) -> ExpenseSummary:
        return cls(
            from_=summary.since,
            to=summary.until,
            total_charged=summary.total_charged,
            total_credited=summary.total_credited,
            by_category=[
                CategoryTotal(kind=LedgerKind(c.kind), total=c.total) for c in summary.by_category
            ],
            by_month=[
                MonthTotal(month=m.month, charged=m.charged, credited=m.credited)
                for m in summary.by_month
            ],
        )
