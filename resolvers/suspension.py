"""Suspension for non-payment: set by the billing day, lifted by money arriving."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import rowcount
from models import Contract
from models.base import table_of, utcnow
from resolvers.social_access import close_for_contract

_contracts = table_of(Contract)


async def lift_if_paid(session: AsyncSession, *, contract_id: int) -> bool:
    """A SUSPENDED contract whose balance is back to ≥ 0 is ACTIVE again (in the caller's
    transaction, after the credit). Returns whether it was lifted; lifted, the suspension's
    socially significant access (resolvers/social_access.py) is over."""
    result = await session.execute(
        sa.update(_contracts)
        .where(
            _contracts.c.id == contract_id,
            _contracts.c.status == "SUSPENDED",
            _contracts.c.balance >= 0,
        )
        .values(status="ACTIVE")
    )
    lifted = bool(rowcount(result))
    if lifted:
        await close_for_contract(session, contract_id=contract_id, now=utcnow())
    return lifted
