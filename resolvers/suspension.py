"""Suspension for non-payment: set by the billing day, lifted by money arriving."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from models import Contract
from models.base import table_of, utcnow
from resolvers import reminders
from resolvers.events import record_event
from resolvers.social_access import close_for_contract

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


async def lift_if_paid(session: AsyncSession, *, settings: Settings, contract_id: int) -> bool:
    """A SUSPENDED contract whose balance is back to ≥ 0 is ACTIVE again (in the caller's
    transaction, after the credit), with its `contract.resumed` event, and its subscriber
    is told (SPEC §8). Returns whether it was lifted; lifted, the suspension's socially
    significant access (resolvers/social_access.py) is over."""
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
    await close_for_contract(session, contract_id=contract_id, now=utcnow())
    await reminders.queue_resumed(session, settings=settings, contract_id=contract_id)
    return True
