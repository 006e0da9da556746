"""Promised payments (SPEC §3 "Money"): use the Internet now, pay with the next top-up."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models import PromisedPayment
from models.base import utcnow
from resolvers import ledger

_promises = PromisedPayment.__table__  # type: ignore[attr-defined]


async def repay_open_promise(
    session: AsyncSession, *, contract_id: int, actor: str, reference: str | None = None
) -> Decimal | None:
    """Called by a successful top-up, in its transaction: the open promise (if any) is repaid
    in full by debiting its amount, and marked REPAID. Returns the amount repaid.

    The promise is claimed with a conditional UPDATE (status still OPEN), so a top-up and the
    billing day's settlement racing for one promise cannot both debit it.
    """
    row = (
        await session.execute(
            sa.update(_promises)
            .where(_promises.c.contract_id == contract_id, _promises.c.status == "OPEN")
            .values(status="REPAID", settled_at=utcnow())
            .returning(_promises.c.id, _promises.c.amount)
        )
    ).first()
    if row is None:
        return None
    amount = Decimal(row.amount)
    await ledger.post(
        session,
        contract_id=contract_id,
        kind="PROMISED_PAYMENT_REPAYMENT",
        amount=-amount,
        actor=actor,
        description="Погашение обещанного платежа",
        reference=reference or f"promise:{row.id}",
    )
    return amount
