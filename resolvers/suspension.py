"""Suspension for non-payment: set by the billing day, lifted by money arriving."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models import Contract
from models.base import table_of
from resolvers.events import record_event

_contracts = table_of(Contract)

_LIFT = (
    sa.update(_contracts)
    .where(
        _contracts.c.id == sa.bindparam("contract_id", type_=sa.BigInteger),
        _contracts.c.status == "SUSPENDED",
        _contracts.c.balance >= 0,
    )
    .values(status="ACTIVE")
    .returning(_contracts.c.number, _contracts.c.balance)
)


async def lift_if_paid(session: AsyncSession, *, contract_id: int) -> bool:
    """A SUSPENDED contract whose balance is back to ≥ 0 is ACTIVE again (in the caller's
    transaction, after the credit), with its `contract.resumed` event. Returns whether it
    was lifted."""
    lifted = (await session.execute(_LIFT, {"contract_id": contract_id})).first()
    if lifted is None:
        return False
    await record_event(
        session,
        "contract.resumed",
        contract_number=lifted.number,
        data={
            "status": "ACTIVE",
            "balance": Decimal(str(lifted.balance)).quantize(Decimal("0.01")),
        },
    )
    return True
