"""Staff `adjustBalance` (SPEC §3 "Money"): a correction of a contract's balance, with a
reason, as a ledger entry of the staff member and an audit entry, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import begin_write
from core.errors import DomainError, ErrorCode, InputProblems
from core.settings import Settings
from models import Contract
from models.base import table_of
from resolvers import ledger
from resolvers.audit import checked_reason, record_audit
from resolvers.suspension import lift_if_paid

MAX_ADJUSTMENT = Decimal("100000.00")
MAX_CONTRACT_NUMBER = 20
CENT = Decimal("0.01")

_contracts = table_of(Contract)


@dataclass(frozen=True, slots=True)
class Adjusted:
    contract_id: int
    balance_after: Decimal
    entry_id: int
    suspension_lifted: bool


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def _check_amount(amount: Decimal) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise _invalid("amount", "The amount must be a number.")
    if abs(amount) > MAX_ADJUSTMENT:  # first: a huge exponent would not quantize
        raise _invalid("amount", f"The amount is at most {MAX_ADJUSTMENT} RUB either way.")
    if amount != amount.quantize(CENT):
        raise _invalid("amount", "The amount has at most two decimal places.")
    if amount == 0:
        raise _invalid("amount", "The amount must not be zero.")
    return amount.quantize(CENT)


async def adjust_balance(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    contract_number: str,
    amount: Decimal,
    reason: str,
    client_address: str | None,
) -> Adjusted:
    """Credit (amount > 0) or debit (amount < 0) a contract by a staff member's decision.

    The caller has checked that `staff_id` is signed-in staff. The ledger entry is an
    ADJUSTMENT with the actor `staff:<id>` and the reason as its description (cut to the
    ledger's 300 characters; the audit entry keeps it whole). A credit that brings a
    suspended contract back to ≥ 0 lifts the suspension."""
    await begin_write(session)
    return await _adjust(
        session,
        settings=settings,
        staff_id=staff_id,
        contract_number=contract_number,
        amount=amount,
        reason=reason,
        client_address=client_address,
    )


async def _adjust(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    contract_number: str,
    amount: Decimal,
    reason: str,
    client_address: str | None,
) -> Adjusted:
    problems = InputProblems()  # both fields' problems at once
    with problems:
        amount = _check_amount(amount)
    with problems:
        why = checked_reason(reason)
    problems.raise_found()
    number = (contract_number or "").strip()
    contract_id = None
    if number and len(number) <= MAX_CONTRACT_NUMBER:
        contract_id = await session.scalar(
            sa.select(_contracts.c.id).where(_contracts.c.number == number)
        )
    if contract_id is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")

    posted = await ledger.post(
        session,
        contract_id=contract_id,
        kind="ADJUSTMENT",
        amount=amount,
        actor=f"staff:{staff_id}",
        description=why,
    )
    # The UPDATE in ledger.post is atomic, so the balance before is exactly this.
    balance_before = posted.balance_after - amount
    lifted = await lift_if_paid(session, settings=settings, contract_id=contract_id)
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="adjustBalance",
        target_type="Contract",
        target_id=contract_id,
        before={"balance": balance_before, "contract_number": number},
        after={
            "balance": posted.balance_after,
            "amount": amount,
            "ledger_entry_id": posted.entry_id,
            "suspension_lifted": lifted,
        },
        reason=why,
        client_address=client_address,
    )
    return Adjusted(
        contract_id=contract_id,
        balance_after=posted.balance_after,
        entry_id=posted.entry_id,
        suspension_lifted=lifted,
    )
