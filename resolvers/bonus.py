"""The bonus programme (SPEC §2 "BonusAccount"): a points ledger per subscriber.

`bonus_accounts.points` is the running total and `bonus_entries` the ledger behind it. An
accrual carries `remaining` (points not yet spent or expired) and `expires_at`, so that a
redemption can spend the oldest points first and the expiry can find what is left.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kabinet.settings import Settings
from models import BonusAccount, BonusEntry

_accounts = BonusAccount.__table__  # type: ignore[attr-defined]
_entries = BonusEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BonusAccrual:
    entry_id: int
    points: int
    expires_at: datetime


def points_for(amount: Decimal, *, rub_per_point: Decimal) -> int:
    """One point per *full* `rub_per_point` roubles: 503.00 RUB at 5 RUB a point is 100."""
    if rub_per_point <= 0 or amount <= 0:
        return 0
    return int((amount / rub_per_point).to_integral_value(rounding=ROUND_FLOOR))


def add_months(moment: datetime, months: int) -> datetime:
    """`months` calendar months later, same day and time; a day the target month lacks
    becomes its last day (31 January + 1 month = 28 or 29 February; 29 February 2024 +
    12 months = 28 February 2025). Points therefore live "12 months", not 365 days."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


async def _ensure_account(session: AsyncSession, subscriber_id: int) -> None:
    """The subscriber's account row, made if missing; two concurrent makers do not collide."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(_accounts)
        .values(subscriber_id=subscriber_id, points=0)
        .on_conflict_do_nothing(index_elements=[_accounts.c.subscriber_id])
    )


async def accrue_for_top_up(
    session: AsyncSession,
    *,
    settings: Settings,
    subscriber_id: int,
    payment_id: int,
    amount: Decimal,
    at: datetime,
) -> BonusAccrual | None:
    """Points for a successful top-up, in the caller's transaction (no commit).

    Called once per payment: the caller's PENDING → SUCCEEDED transition is what makes it
    happen once. Returns None when the amount earns no point.
    """
    points = points_for(amount, rub_per_point=settings.bonus_rub_per_point)
    if points <= 0:
        return None
    expires_at = add_months(at, settings.bonus_points_months)
    await _ensure_account(session, subscriber_id)
    await session.execute(
        sa.update(_accounts)
        .where(_accounts.c.subscriber_id == subscriber_id)
        .values(points=_accounts.c.points + points)
    )
    entry_id = (
        await session.execute(
            sa.insert(_entries)
            .values(
                subscriber_id=subscriber_id,
                kind="ACCRUAL",
                points=points,
                remaining=points,
                expires_at=expires_at,
                payment_id=payment_id,
                description="Баллы за пополнение баланса",
                created_at=at,
            )
            .returning(_entries.c.id)
        )
    ).scalar_one()
    return BonusAccrual(entry_id, points, expires_at)
