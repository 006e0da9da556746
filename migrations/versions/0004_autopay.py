"""Autopay: the contracts' rules and the billing day's autopay attempts

`autopay_rules` holds a contract's rule (one per contract: BELOW_THRESHOLD with a
threshold, or MONTHLY with a day of the month 1..28; an amount; the saved method; how many
autopay payments failed in a row); `autopay_runs` the attempts, one per contract and day
(its primary key), each naming its payment and, once settled, its outcome (SPEC §7).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "autopay_rules",
        sa.Column("contract_id", ID, nullable=False),
        sa.Column("payment_method_id", ID, nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("threshold", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("day_of_month", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("failures_in_row", sa.Integer(), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "mode IN ('BELOW_THRESHOLD', 'MONTHLY')", name=op.f("ck_autopay_rules_mode")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_autopay_rules_amount_pos")),
        sa.CheckConstraint(
            "(mode = 'BELOW_THRESHOLD' AND threshold IS NOT NULL)"
            " OR (mode = 'MONTHLY' AND day_of_month BETWEEN 1 AND 28)",
            name=op.f("ck_autopay_rules_mode_fields"),
        ),
        sa.CheckConstraint("failures_in_row >= 0", name=op.f("ck_autopay_rules_failures_nonneg")),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_autopay_rules_contract_id_contracts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_autopay_rules_payment_method_id_payment_methods"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("contract_id", name=op.f("pk_autopay_rules")),
    )
    with op.batch_alter_table("autopay_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_autopay_rules_payment_method_id"), ["payment_method_id"], unique=False
        )

    op.create_table(
        "autopay_runs",
        sa.Column("contract_id", ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("payment_method_id", ID, nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("settled_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('SUCCEEDED', 'FAILED')", name=op.f("ck_autopay_runs_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_autopay_runs_contract_id_contracts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_autopay_runs_payment_id_payments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_autopay_runs_payment_method_id_payment_methods"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("contract_id", "day", name=op.f("pk_autopay_runs")),
        sa.UniqueConstraint("payment_id", name="uq_autopay_runs_payment_id"),
    )


def downgrade() -> None:
    op.drop_table("autopay_runs")
    with op.batch_alter_table("autopay_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autopay_rules_payment_method_id"))
    op.drop_table("autopay_rules")
