"""The ledger: the only way a balance changes.

Every change is `UPDATE contracts SET balance = balance + :x … RETURNING balance` and a
ledger row carrying that `balance_after`, in the caller's transaction. The UPDATE takes the
contract's row lock (PostgreSQL) or runs under BEGIN IMMEDIATE (SQLite), so concurrent
changes queue up and none is lost; the invariant `balance == Σ ledger` holds at every commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import as_column_value, insert_row, parameters
from models import Contract, LedgerEntry
from models.base import table_of, utcnow
from models.money import LEDGER_KINDS

_contracts = table_of(Contract)
_ledger = table_of(LedgerEntry)
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Posted:
    entry_id: int
    balance_after: Decimal
    # The contract's status as this transaction holds it (the row stays locked till commit).
    contract_status: str


ENTRY_COLUMNS = (
    "contract_id",
    "kind",
    "amount",
    "balance_after",
    "description",
    "reference",
    "actor",
    "created_at",
)


def balance_change(contract_id: Any, amount: Any, *, when: Any = None) -> sa.Update:
    """`UPDATE contracts SET balance = balance + amount WHERE id = contract_id [AND when]`:
    the only statement that changes a balance (its row lock queues concurrent changes;
    `contract_id` and `amount` may be columns of another table, one change per row).
    Always followed by its `entry_insert`, with the balance it returns."""
    statement = sa.update(_contracts).where(_contracts.c.id == contract_id)
    if when is not None:
        statement = statement.where(when)
    return statement.values(
        balance=_contracts.c.balance + as_column_value(amount, _contracts.c.balance)
    )


def entry_insert(values: dict[str, Any], *, when: Any = None, order_by: Any = None) -> sa.Insert:
    """The ledger rows of balance changes (`ENTRY_COLUMNS`; `balance_after` is the balance
    the change returned, or the contract's after it). See `core.db.insert_row`."""
    return insert_row(sa.insert(_ledger), values, when=when, order_by=order_by)


def posting(
    *,
    contract_id: Any,
    amount: Any,
    values: dict[str, Any],
    when: Any = None,
    name: str = "credited",
    per_row: bool = False,
) -> tuple[sa.CTE, sa.CTE]:
    """`post` as two parts of a composed statement (PostgreSQL): the balance change where
    `when` holds (RETURNING id, balance, amount), and its ledger row with the balance it
    returned. `values` are the entry's other columns (kind, description, reference, actor,
    created_at). `contract_id` and `amount` may be columns of another part: one posting per
    row of it; `per_row` when `values` are columns of that part too (one row per contract
    in it): each entry takes its contract's row's."""
    changed = (
        balance_change(contract_id, amount, when=when)
        .returning(
            _contracts.c.id,
            _contracts.c.balance,
            as_column_value(amount, _contracts.c.balance).label("amount"),
        )
        .cte(name)
    )
    entry = entry_insert(
        {
            **values,
            "contract_id": changed.c.id,
            "amount": changed.c.amount,
            "balance_after": changed.c.balance,
        },
        when=changed.c.id == contract_id if per_row else None,
    ).returning(_ledger.c.id, _ledger.c.amount)
    return changed, entry.cte(f"{name}_entry")


async def post(
    session: AsyncSession,
    *,
    contract_id: int,
    kind: str,
    amount: Decimal,
    actor: str,
    description: str = "",
    reference: str | None = None,
    at: datetime | None = None,
) -> Posted:
    """Change a contract's balance by `amount` (signed) and record it. No commit."""
    if kind not in LEDGER_KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    amount = amount.quantize(CENT)
    if amount == 0:
        raise ValueError("a ledger entry moves money")
    contract = (
        await session.execute(_ADD_TO_BALANCE, {"p_contract": contract_id, "p_amount": amount})
    ).one()
    balance_after = Decimal(contract.balance).quantize(CENT)
    entry_id = (
        await session.execute(
            _NEW_ENTRY,
            {
                "contract_id": contract_id,
                "kind": kind,
                "amount": amount,
                "balance_after": balance_after,
                "description": description[:300],
                "reference": reference,
                "actor": actor,
                "created_at": at or utcnow(),
            },
        )
    ).scalar_one()
    return Posted(entry_id, balance_after, contract.status)


# Built once (a statement built per call costs more Python than its round trip).
_ADD_TO_BALANCE = balance_change(sa.bindparam("p_contract"), sa.bindparam("p_amount")).returning(
    _contracts.c.balance, _contracts.c.status
)
_NEW_ENTRY = entry_insert(parameters(ENTRY_COLUMNS)).returning(_ledger.c.id)


@dataclass(frozen=True, slots=True)
class Mismatch:
    contract_id: int
    number: str
    balance: Decimal
    ledger_sum: Decimal


async def verify(session: Any) -> list[Mismatch]:
    """Every contract whose balance differs from the sum of its ledger: one statement."""
    sums = (
        sa.select(_ledger.c.contract_id, sa.func.sum(_ledger.c.amount).label("total"))
        .group_by(_ledger.c.contract_id)
        .subquery()
    )
    total = sa.func.coalesce(sums.c.total, 0)
    rows = (
        await session.execute(
            sa.select(
                _contracts.c.id, _contracts.c.number, _contracts.c.balance, total.label("total")
            )
            .select_from(_contracts.outerjoin(sums, sums.c.contract_id == _contracts.c.id))
            .where(_contracts.c.balance != total)
        )
    ).all()
    # SQLite keeps NUMERIC as REAL: compare after rounding to kopecks, as it is read back.
    found = []
    for row in rows:
        balance = Decimal(row.balance).quantize(CENT)
        ledger_sum = Decimal(str(row.total)).quantize(CENT)
        if balance != ledger_sum:
            found.append(Mismatch(row.id, row.number, balance, ledger_sum))
    return found
