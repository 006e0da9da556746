"""Money: the ledger, payments (top-ups) with their receipts, promised payments, billing days."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import (
    ID,
    UTCDateTime,
    created_at_field,
    enum_check,
    fk,
    id_field,
    money_field,
    ts_field,
)

LEDGER_KINDS = (
    "TOP_UP",
    "CHARGE",
    "PROMISED_PAYMENT",
    "PROMISED_PAYMENT_FEE",
    "PROMISED_PAYMENT_REPAYMENT",
    "BONUS_CREDIT",
    "ADJUSTMENT",
    "REFUND",
)
PAYMENT_METHODS = ("BANK_CARD", "SBP", "E_WALLET", "CASH_TERMINAL")
PAYMENT_STATUSES = ("PENDING", "SUCCEEDED", "FAILED", "CANCELED")
PROMISE_STATUSES = ("OPEN", "REPAID", "OVERDUE")
REFUND_STATUSES = ("PENDING", "SUCCEEDED", "CANCELED")


class LedgerEntry(SQLModel, table=True):
    """One balance change. Invariant: contract.balance == sum(amount) of its entries."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        enum_check("kind", LEDGER_KINDS, "kind"),
        sa.CheckConstraint("amount <> 0", name="nonzero"),
        sa.Index("ix_ledger_entries_contract_created", "contract_id", "created_at", "id"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", index=False)
    kind: str = Field(max_length=32)
    amount: Decimal = money_field()
    balance_after: Decimal = money_field()
    description: str = Field(default="", max_length=300)
    reference: str | None = Field(default=None, max_length=100)
    # "subscriber:<id>", "staff:<id>", "system:billing", "provider:<name>"
    actor: str = Field(max_length=64)
    created_at: datetime = created_at_field()


class Payment(SQLModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (
        enum_check("method", PAYMENT_METHODS, "method"),
        enum_check("status", PAYMENT_STATUSES, "status"),
        sa.CheckConstraint("amount > 0", name="amount_pos"),
        # The idempotency key is scoped to whoever created the payment.
        sa.UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_payments_idempotency"),
        sa.UniqueConstraint("provider", "provider_reference", name="uq_payments_provider_ref"),
        sa.Index("ix_payments_contract_created", "contract_id", "created_at", "id"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id", index=False)
    amount: Decimal = money_field()
    method: str = Field(max_length=16)
    status: str = Field(default="PENDING", max_length=16)
    idempotency_scope: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=100)
    request_fingerprint: str = Field(max_length=64)
    provider: str = Field(default="sandbox", max_length=32)
    provider_reference: str | None = Field(default=None, max_length=100)
    created_at: datetime = created_at_field()
    confirmed_at: datetime | None = ts_field()
    # Where the payer pays, as the provider answered (YooKassa's `confirmation_url`); null
    # until the provider has answered, and for the sandbox (whose page is computed).
    confirmation_url: str | None = Field(default=None, max_length=2000)
    # Where the provider sends the payer back (`createTopUp(returnUrl)`, origin allowlisted).
    return_url: str | None = Field(default=None, max_length=2000)
    # The payer asked the provider to save the card or SBP account (SPEC §7 "Autopay").
    save_payment_method: bool = Field(
        default=False, sa_column_kwargs={"server_default": sa.false()}
    )
    # The provider's fiscal receipt status (YooKassa: pending | succeeded | canceled).
    receipt_status: str | None = Field(default=None, max_length=16)
    # Made by an autopay rule through a saved method (no confirmation).
    autopay: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class PaymentMethod(SQLModel, table=True):
    """A card or SBP account the provider saved for a contract: only its title ("Card *4444")
    and the provider's reference, never card data. Forgotten ones stay (payments name them)."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        sa.UniqueConstraint("provider", "reference", name="uq_payment_methods_provider_ref"),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id")
    provider: str = Field(max_length=32)
    reference: str = Field(max_length=100)
    title: str = Field(max_length=100)
    created_at: datetime = created_at_field()
    forgotten_at: datetime | None = ts_field()


class Refund(SQLModel, table=True):
    """Staff give back (part of) a SUCCEEDED payment; the balance is debited (a REFUND ledger
    entry) when the provider reports the refund SUCCEEDED."""

    __tablename__ = "refunds"
    __table_args__ = (
        enum_check("status", REFUND_STATUSES, "status"),
        sa.CheckConstraint("amount > 0", name="amount_pos"),
        sa.UniqueConstraint("idempotency", name="uq_refunds_idempotency"),
    )

    id: int | None = id_field()
    payment_id: int = fk("payments.id")
    amount: Decimal = money_field()
    reason: str = Field(max_length=500)
    status: str = Field(default="PENDING", max_length=16)
    provider_reference: str | None = Field(default=None, max_length=100, index=True)
    # The refund's Idempotence-Key at the provider (one per refund row).
    idempotency: str = Field(max_length=100)
    actor: str = Field(max_length=64)  # "staff:<id>"
    created_at: datetime = created_at_field()
    succeeded_at: datetime | None = ts_field()


class PaymentEvent(SQLModel, table=True):
    """Each webhook delivery we accepted; the (payment, status) pair is applied once."""

    __tablename__ = "payment_events"
    __table_args__ = (sa.UniqueConstraint("payment_id", "status", name="uq_payment_events_once"),)

    id: int | None = id_field()
    payment_id: int = fk("payments.id", index=False)
    status: str = Field(max_length=16)
    provider_reference: str | None = Field(default=None, max_length=100)
    received_at: datetime = created_at_field()


class Receipt(SQLModel, table=True):
    __tablename__ = "receipts"

    id: int | None = id_field()
    payment_id: int = Field(sa_type=ID, foreign_key="payments.id", unique=True, ondelete="RESTRICT")
    number: str = Field(max_length=40, unique=True)
    issued_at: datetime = created_at_field()
    seller_name: str = Field(max_length=200)
    seller_inn: str = Field(max_length=12)
    contract_number: str = Field(max_length=20)
    payer_email: str | None = Field(default=None, max_length=254)
    item: str = Field(max_length=200)
    vat_rate: Decimal = Field(sa_type=sa.Numeric(5, 2))
    vat_amount: Decimal = money_field()
    total: Decimal = money_field()
    method: str = Field(max_length=16)
    provider_reference: str | None = Field(default=None, max_length=100)


class PromisedPayment(SQLModel, table=True):
    __tablename__ = "promised_payments"
    __table_args__ = (
        enum_check("status", PROMISE_STATUSES, "status"),
        sa.CheckConstraint("amount > 0", name="amount_pos"),
        sa.CheckConstraint("fee >= 0", name="fee_nonneg"),
        # One open promise per contract, whatever races: the database refuses a second one.
        sa.Index(
            "uq_promised_payments_open",
            "contract_id",
            unique=True,
            sqlite_where=sa.text("status = 'OPEN'"),
            postgresql_where=sa.text("status = 'OPEN'"),
        ),
    )

    id: int | None = id_field()
    contract_id: int = fk("contracts.id")
    amount: Decimal = money_field()
    fee: Decimal = money_field()
    status: str = Field(default="OPEN", max_length=16)
    issued_at: datetime = created_at_field()
    due_at: datetime = Field(sa_type=UTCDateTime, index=True)
    settled_at: datetime | None = ts_field()


class BillingCharge(SQLModel, table=True):
    """The billing day's mark per contract and day: its primary key makes a rerun a no-op."""

    __tablename__ = "billing_charges"

    contract_id: int = Field(
        sa_type=ID, foreign_key="contracts.id", primary_key=True, ondelete="CASCADE"
    )
    day: date = Field(primary_key=True)
    amount: Decimal = money_field()
    created_at: datetime = created_at_field()
