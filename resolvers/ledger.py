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

from models import Contract, LedgerEntry
from models.base import utcnow
from models.money import LEDGER_KINDS

_contracts = Contract.__table__  # type: ignore[attr-defined]
_ledger = LedgerEntry.__table__  # type: ignore[attr-defined]
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Posted:
    entry_id: int
    balance_after: Decimal
    # The contract's status as this transaction holds it (the row stays locked till commit).
    contract_status: str


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
_ADD_TO_BALANCE = (
    sa.update(_contracts)
    .where(_contracts.c.id == sa.bindparam("p_contract"))
    .values(
        balance=_contracts.c.balance + sa.bindparam("p_amount", type_=_contracts.c.balance.type)
    )
    .returning(_contracts.c.balance, _contracts.c.status)
)
_NEW_ENTRY = sa.insert(_ledger).returning(_ledger.c.id)


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
