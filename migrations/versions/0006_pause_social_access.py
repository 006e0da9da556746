"""voluntary pause and socially significant access (SPEC §8)

- contracts.status admits PAUSED. PostgreSQL: the CHECK is replaced NOT VALID and then
  validated (the validation takes no lock that stops writers). SQLite cannot alter a CHECK
  and its batch mode would copy `contracts` into a new table and drop the old one, which with
  foreign keys on (they are: core/db.py) deletes every row that cascades from a contract; the
  widened CHECK is written into the schema instead, as SQLite's documentation describes for
  changing a constraint that every existing row still satisfies ("ALTER TABLE", "Making
  Other Kinds Of Table Schema Changes").
- contract_pauses: a contract's pauses, at most one planned or running (a partial unique
  index).
- social_access_grants: socially significant access, one per suspension episode.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')"
_NEW = "status IN ('ACTIVE', 'SUSPENDED', 'CLOSED', 'PAUSED')"
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _contract_statuses(old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE contracts DROP CONSTRAINT ck_contracts_status, "
            f"ADD CONSTRAINT ck_contracts_status CHECK ({new}) NOT VALID"
        )
        op.execute("ALTER TABLE contracts VALIDATE CONSTRAINT ck_contracts_status")
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'contracts'"
    ).scalar_one()
    if old not in sql:
        raise RuntimeError("contracts: the status CHECK is not the one this revision changes")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'contracts'"),
        {"sql": sql.replace(old, new)},
    )
    # other connections read the schema again
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _contract_statuses(_OLD, _NEW)
    op.create_table(
        "contract_pauses",
        sa.Column("id", _ID, nullable=False),
        sa.Column("contract_id", _ID, nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("created_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('SCHEDULED', 'RUNNING', 'ENDED', 'CANCELED')",
            name=op.f("ck_contract_pauses_status"),
        ),
        sa.CheckConstraint("ends_on >= starts_on", name=op.f("ck_contract_pauses_period")),
        sa.CheckConstraint(
            "ended_on IS NULL OR ended_on >= starts_on", name=op.f("ck_contract_pauses_ended")
        ),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_contract_pauses_contract_id_contracts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contract_pauses")),
    )
    with op.batch_alter_table("contract_pauses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_contract_pauses_contract_id"), ["contract_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_contract_pauses_status"), ["status"], unique=False)
        batch_op.create_index(
            "uq_contract_pauses_open",
            ["contract_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('SCHEDULED', 'RUNNING')"),
            postgresql_where=sa.text("status IN ('SCHEDULED', 'RUNNING')"),
        )
    op.create_table(
        "social_access_grants",
        sa.Column("id", _ID, nullable=False),
        sa.Column("contract_id", _ID, nullable=False),
        sa.Column("activated_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("until", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("closed_at", models.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"],
            ["contracts.id"],
            name=op.f("fk_social_access_grants_contract_id_contracts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_social_access_grants")),
    )
    with op.batch_alter_table("social_access_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_social_access_grants_contract_id"), ["contract_id"], unique=False
        )
        batch_op.create_index(
            "uq_social_access_grants_episode",
            ["contract_id"],
            unique=True,
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("social_access_grants", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_social_access_grants_episode",
            sqlite_where=sa.text("closed_at IS NULL"),
            postgresql_where=sa.text("closed_at IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_social_access_grants_contract_id"))
    op.drop_table("social_access_grants")
    with op.batch_alter_table("contract_pauses", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_contract_pauses_open",
            sqlite_where=sa.text("status IN ('SCHEDULED', 'RUNNING')"),
            postgresql_where=sa.text("status IN ('SCHEDULED', 'RUNNING')"),
        )
        batch_op.drop_index(batch_op.f("ix_contract_pauses_status"))
        batch_op.drop_index(batch_op.f("ix_contract_pauses_contract_id"))
    op.drop_table("contract_pauses")
    # A paused contract is in service without its pause.
    op.execute("UPDATE contracts SET status = 'ACTIVE' WHERE status = 'PAUSED'")
    _contract_statuses(_NEW, _OLD)
