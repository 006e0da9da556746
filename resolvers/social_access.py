"""Socially significant access (SPEC §8; Russian law on communications, art. 46 p. 5.3).

A contract SUSPENDED for debt may turn on free access to the government's list of socially
significant sites for `social_access_days` (7) days: `activate_social_access`.

**Once per suspension episode.** A grant belongs to the episode it was taken in: it is
closed (`closed_at`) when the suspension is lifted (`resolvers.suspension.lift_if_paid`, and
the billing day's sweep `close_lifted` for any contract no longer SUSPENDED), and the partial
unique index `uq_social_access_grants_episode` admits one unclosed grant per contract. So:
- asked again while it is active, the answer is the same grant (idempotent: no new row, the
  same `until`);
- asked again after it expired in the same episode, it is refused (NOT_ELIGIBLE);
- the next suspension is a new episode and may have its own.

**Expiry** is computed from `until` (`Contract.socialAccess.active` is `until > now` and the
contract still SUSPENDED), so nothing has to run at the moment it ends; lifting the suspension
ends it at once (the contract is no longer SUSPENDED).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import begin_write, rowcount
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from core.views import Filter
from models import Contract, SocialAccessGrant
from models.base import UTCDateTime, table_of, utcnow
from resolvers.events import record_event

_grants = table_of(SocialAccessGrant)
_contracts = table_of(Contract)

NOW = sa.bindparam("now", type_=UTCDateTime)  # the request's time (resolvers/views.py)


@dataclass(frozen=True, slots=True)
class SocialAccessResult:
    grant_id: int
    contract_id: int
    until: datetime
    activated: bool  # False: it was active already (the same grant)


async def activate_social_access(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    actor: str,
    now: datetime | None = None,
) -> SocialAccessResult:
    """Turn on socially significant access for a contract SUSPENDED for debt (idempotent
    while it is active; once per suspension episode)."""
    now = now or utcnow()
    await begin_write(session)
    contract = (
        await session.execute(
            sa.select(_contracts.c.status, _contracts.c.number)
            .where(_contracts.c.id == contract_id)
            .with_for_update()
        )
    ).first()
    if contract is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    if contract.status != "SUSPENDED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            "Socially significant access is for a contract suspended for non-payment.",
        )
    grant = (
        await session.execute(
            sa.select(_grants.c.id, _grants.c.until).where(
                _grants.c.contract_id == contract_id, _grants.c.closed_at.is_(None)
            )
        )
    ).first()
    if grant is not None:
        if grant.until > now:
            return SocialAccessResult(grant.id, contract_id, grant.until, activated=False)
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            "Socially significant access was used up in this suspension: it can be turned "
            "on again after the next one.",
        )
    until = now + timedelta(days=settings.social_access_days)
    try:
        grant_id = (
            await session.execute(
                sa.insert(_grants)
                .values(contract_id=contract_id, activated_at=now, until=until, actor=actor)
                .returning(_grants.c.id)
            )
        ).scalar_one()
    except IntegrityError:
        raise DomainError(
            ErrorCode.CONFLICT, "Socially significant access was turned on meanwhile."
        ) from None
    # §9 (not on the idempotent repeat above: nothing changed then).
    await record_event(
        session,
        "social_access.activated",
        contract_number=contract.number,
        data={"until": until, "status": "SUSPENDED"},
        at=now,
    )
    return SocialAccessResult(grant_id, contract_id, until, activated=True)


async def close_for_contract(session: AsyncSession, *, contract_id: int, now: datetime) -> int:
    """The suspension of `contract_id` was lifted: its episode's grant is closed."""
    result = await session.execute(
        sa.update(_grants)
        .where(_grants.c.contract_id == contract_id, _grants.c.closed_at.is_(None))
        .values(closed_at=now)
    )
    return rowcount(result)


async def close_lifted(session: AsyncSession, *, now: datetime) -> int:
    """The billing day, before it suspends: the grants of contracts no longer SUSPENDED are
    closed (their episode is over, whatever lifted it), so that a suspension from today on
    is a new episode."""
    lifted = (
        sa.select(sa.literal(1))
        .where(_contracts.c.id == _grants.c.contract_id, _contracts.c.status != "SUSPENDED")
        .exists()
    )
    result = await session.execute(
        sa.update(_grants).where(_grants.c.closed_at.is_(None), lifted).values(closed_at=now)
    )
    return rowcount(result)


def social_access_rows(keep: Filter) -> sa.Select[Any]:
    """The current episode's grant of each contract `keep(contract_id)` admits
    (`Contract.socialAccess`: resolvers/views.py): `active` while `until` is to come and the
    contract is SUSPENDED."""
    suspended = sa.select(_contracts.c.status).where(
        _contracts.c.id == _grants.c.contract_id
    ).scalar_subquery() == sa.literal_column("'SUSPENDED'")
    return sa.select(
        _grants.c.id,
        _grants.c.contract_id,
        _grants.c.until,
        sa.and_(_grants.c.until > NOW, suspended).label("active"),
    ).where(keep(_grants.c.contract_id), _grants.c.closed_at.is_(None))
