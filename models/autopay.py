"""Autopay (SPEC §7): a contract's rule for paying by a saved method without the payer, and
the autopay attempts the billing day made (one per contract and day)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import ID, MONEY, created_at_field, enum_check, fk, money_field, ts_field

AUTOPAY_MODES = ("BELOW_THRESHOLD", "MONTHLY")
AUTOPAY_OUTCOMES = ("SUCCEEDED", "FAILED")


class AutopayRule(SQLModel, table=True):
    """A contract's autopay rule (one per contract; kept, switched off, when disabled):
    BELOW_THRESHOLD pays `amount` after a billing day that leaves the balance below
    `threshold`; MONTHLY pays `amount` on the `day_of_month` (1..28)."""

    __tablename__ = "autopay_rules"
    __table_args__ = (
        enum_check("mode", AUTOPAY_MODES, "mode"),
        sa.CheckConstraint("amount > 0", name="amount_pos"),
        sa.CheckConstraint(
            "(mode = 'BELOW_THRESHOLD' AND threshold IS NOT NULL)"
            " OR (mode = 'MONTHLY' AND day_of_month BETWEEN 1 AND 28)",
            name="mode_fields",
        ),
        sa.CheckConstraint("failures_in_row >= 0", name="failures_nonneg"),
    )

    contract_id: int = Field(
        sa_type=ID, foreign_key="contracts.id", primary_key=True, ondelete="RESTRICT"
    )
    payment_method_id: int = fk("payment_methods.id")
    mode: str = Field(max_length=16)
    amount: Decimal = money_field()
    threshold: Decimal | None = Field(default=None, sa_type=MONEY, nullable=True)
    day_of_month: int | None = Field(default=None, nullable=True)
    enabled: bool = Field(default=True)
    # Autopay payments failed one after another; a success resets it, the third switches
    # the rule off (`resolvers.autopay.FAILURES_TO_DISABLE`).
    failures_in_row: int = Field(default=0)
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class AutopayRun(SQLModel, table=True):
    """An autopay attempt: its primary key (contract, day) makes the billing day charge a
    contract at most once a day, on any number of hosts; `outcome` is recorded once, when the
    payment is settled (`resolvers.autopay.autopay_outcome`)."""

    __tablename__ = "autopay_runs"
    __table_args__ = (
        enum_check("outcome", AUTOPAY_OUTCOMES, "outcome"),
        sa.UniqueConstraint("payment_id", name="uq_autopay_runs_payment_id"),
    )

    contract_id: int = Field(
        sa_type=ID, foreign_key="contracts.id", primary_key=True, ondelete="RESTRICT"
    )
    day: date = Field(primary_key=True)
    payment_id: int = fk("payments.id", index=False)
    # The saved method the payment is made from: a retry charges this one, and only while it
    # is not forgotten and the rule is on (never the rule's later method).
    payment_method_id: int = fk("payment_methods.id", index=False)
    outcome: str | None = Field(default=None, max_length=16)
    created_at: datetime = created_at_field()
    settled_at: datetime | None = ts_field()
