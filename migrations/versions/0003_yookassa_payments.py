"""YooKassa payments: what the provider answered, saved payment methods, refunds

`payments` gains the provider's confirmation URL, the payer's return URL, whether the payer
asked to save the method, the provider's receipt status and the autopay mark;
`payment_methods` holds the methods the provider saved (title and reference only, never card
data); `refunds` the refunds staff make (SPEC §7).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import models.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "confirmation_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("return_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "save_payment_method", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("receipt_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(
            sa.Column("autopay", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    op.create_table(
        "payment_methods",
        sa.Column("id", ID, nullable=False),
        sa.Column("contract_id", ID, nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("forgotten_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_payment_methods_contract_id_contracts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint("provider", "reference", name="uq_payment_methods_provider_ref"),
    )
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_methods_contract_id"), ["contract_id"], unique=False
        )

    op.create_table(
        "refunds",
        sa.Column("id", ID, nullable=False),
        sa.Column("payment_id", ID, nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "provider_reference", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True
        ),
        sa.Column("idempotency", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("succeeded_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('PENDING', 'SUCCEEDED', 'CANCELED')", name=op.f("ck_refunds_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_pos")),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_refunds_payment_id_payments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("idempotency", name="uq_refunds_idempotency"),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_payment_id"), ["payment_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_refunds_provider_reference"), ["provider_reference"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_provider_reference"))
        batch_op.drop_index(batch_op.f("ix_refunds_payment_id"))
    op.drop_table("refunds")
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_methods_contract_id"))
    op.drop_table("payment_methods")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("autopay")
        batch_op.drop_column("receipt_status")
        batch_op.drop_column("save_payment_method")
        batch_op.drop_column("return_url")
        batch_op.drop_column("confirmation_url")
