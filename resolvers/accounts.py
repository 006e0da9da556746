"""Reading subscribers and contracts, for their owner or for staff: lean Core selects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa

from auth.sessions import Principal
from core.db import ReadQuery, one_of
from core.errors import DomainError, ErrorCode
from models import Contract, Credential, Subscriber
from models.base import table_of
from resolvers.catalog import Reader

_subscribers = table_of(Subscriber)
_credentials = table_of(Credential)
_contracts = table_of(Contract)

SUBSCRIBER_COLUMNS = (
    _subscribers.c.id,
    _subscribers.c.legal_status,
    _subscribers.c.display_name,
    _subscribers.c.email,
    _subscribers.c.phone,
    _subscribers.c.created_at,
    _credentials.c.login,
)
CONTRACT_COLUMNS = (
    _contracts.c.id,
    _contracts.c.number,
    _contracts.c.subscriber_id,
    _contracts.c.region_code,
    _contracts.c.address,
    _contracts.c.status,
    _contracts.c.balance,
    _contracts.c.tariff_id,
    _contracts.c.scheduled_tariff_id,
    _contracts.c.scheduled_tariff_from,
    _contracts.c.opened_on,
)

_CONTRACTS_BY_NUMBER = ReadQuery(
    sa.select(*CONTRACT_COLUMNS).where(one_of(_contracts.c.number, "numbers"))
)

MAX_CONTRACT_NUMBER = 20


def subscribers_where(keep: Any) -> sa.Select[Any]:
    """The subscribers `keep(id)` admits, with their login (resolvers/views.py)."""
    return (
        sa.select(*SUBSCRIBER_COLUMNS)
        .select_from(_subscribers)
        .outerjoin(_credentials, _credentials.c.subscriber_id == _subscribers.c.id)
        .where(keep(_subscribers.c.id))
    )


def reads_own_account(principal: Principal | None) -> bool:
    """Whether `principal` reads their own account (`me` and what hangs from it,
    `mySessions`): a signed-in subscriber who has changed the temporary password. The
    executor and the one-statement answers (schema/sql_answers.py) both ask this."""
    return (
        principal is not None
        and principal.kind == "SUBSCRIBER"
        and not principal.must_change_password
    )


def may_see_contract(principal: Principal | None, contract: Any) -> bool:
    """A subscriber sees their own contracts; staff see every contract."""
    if principal is None or principal.must_change_password:
        return False
    return principal.is_staff or contract.subscriber_id == principal.id


async def own_contract(
    contract_by_number: Callable[[str], Awaitable[Any]], principal: Principal | None, number: str
) -> Any:
    """The contract row numbered `number` when `principal` may act on it (read through
    `contract_by_number`, a request's loader or a session's read); NOT_FOUND otherwise, never
    FORBIDDEN: that would tell a stranger the number exists."""
    row = await contract_by_number(number.strip())
    if row is None or not may_see_contract(principal, row):
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    return row


def may_see_subscriber(principal: Principal | None, subscriber_id: int) -> bool:
    if principal is None or principal.must_change_password:
        return False
    return principal.is_staff or (principal.kind == "SUBSCRIBER" and principal.id == subscriber_id)


async def contracts_by_number(reader: Reader, numbers: Sequence[str]) -> dict[str, Any]:
    wanted = [n for n in numbers if n and len(n) <= MAX_CONTRACT_NUMBER]
    if not wanted:
        return {}
    return {row.number: row for row in await reader.fetch(_CONTRACTS_BY_NUMBER, numbers=wanted)}
