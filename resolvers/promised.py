"""Promised payments (SPEC §3 "Money"): use the Internet now, pay with the next top-up.

The offer (`promised_payment_offer`), with every rule of the SPEC, each a setting:
- the contract is not CLOSED and is at least `promised_min_contract_age_days` (60) old;
- it has no OPEN and no OVERDUE promise (an OVERDUE promise stops blocking once the debt is
  paid: the billing day, or `clear_overdue_if_paid` after a credit, marks it REPAID);
- its balance is below the next `promised_lookahead_days` (30) of charges, counted as
  `monthly_total × lookahead_days / days in the current month`, half-up to kopecks, where
  `monthly_total` is Σ monthly fees of today's items (`resolvers.charges.monthly_totals`);
- the amount is at most the larger of `monthly_total` and the average monthly SUCCEEDED
  top-ups of the last `promised_average_months` (3) calendar months (their sum / 3, by the
  time they were confirmed), capped at `promised_max_amount` (5,000) and rounded down to
  whole roubles; below 1 rouble there is nothing to promise.
A SUSPENDED contract may take a promise (it lifts the suspension when the balance is then
≥ 0). The fee (`promise_fee`) is debited at activation as its own ledger entry.

Repayment: the next top-up repays the OPEN promise (`repay_open_promise`); otherwise the
billing day debits it once `due_at` has passed (resolvers/billing.py) and marks it OVERDUE
when the contract is then below zero.
"""

from __future__ import annotations

import asyncio
import calendar
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import ReadQuery, begin_write, one_of, read_rows, rowcount
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from models import Contract, Payment, PromisedPayment
from models.base import table_of, utcnow
from resolvers import ledger
from resolvers.charges import days_in_month, monthly_totals
from resolvers.suspension import lift_if_paid

_promises = table_of(PromisedPayment)
_contracts = table_of(Contract)
_payments = table_of(Payment)

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


async def repay_open_promise(
    session: AsyncSession, *, contract_id: int, actor: str, reference: str | None = None
) -> Decimal | None:
    """Called by a successful top-up, in its transaction: the open promise (if any) is repaid
    in full by debiting its amount, and marked REPAID. Returns the amount repaid.

    The promise is claimed with a conditional UPDATE (status still OPEN), so a top-up and the
    billing day's settlement racing for one promise cannot both debit it.
    """
    row = (
        await session.execute(_CLAIM_OPEN, {"p_contract": contract_id, "p_at": utcnow()})
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


async def clear_overdue_if_paid(session: AsyncSession, *, contract_id: int) -> bool:
    """After a credit, in its transaction: an OVERDUE promise of a contract whose balance is
    back to ≥ 0 has been paid for (its amount was debited at settlement) and is REPAID, so it
    no longer blocks a new promise. Returns whether one was cleared. (The billing day does
    the same for every contract.)"""
    result = await session.execute(_CLEAR_OVERDUE, {"p_contract": contract_id, "p_at": utcnow()})
    return bool(rowcount(result))


# Built once: they run in every top-up's transaction.
_CLAIM_OPEN = (
    sa.update(_promises)
    .where(_promises.c.contract_id == sa.bindparam("p_contract"), _promises.c.status == "OPEN")
    .values(status="REPAID", settled_at=sa.bindparam("p_at", type_=_promises.c.settled_at.type))
    .returning(_promises.c.id, _promises.c.amount)
)
_CLEAR_OVERDUE = (
    sa.update(_promises)
    .where(
        _promises.c.contract_id == sa.bindparam("p_contract"),
        _promises.c.status == "OVERDUE",
        sa.select(_contracts.c.id)
        .where(
            _contracts.c.id == _promises.c.contract_id,
            sa.func.round(_contracts.c.balance, 2) >= 0,
        )
        .exists(),
    )
    .values(status="REPAID", settled_at=sa.bindparam("p_at", type_=_promises.c.settled_at.type))
)


# --------------------------------------------------------------------------- #
# the offer
# --------------------------------------------------------------------------- #

CONTRACT_CLOSED = "CONTRACT_CLOSED"
CONTRACT_TOO_NEW = "CONTRACT_TOO_NEW"
PROMISE_OPEN = "PROMISE_OPEN"
PROMISE_OVERDUE = "PROMISE_OVERDUE"
BALANCE_SUFFICIENT = "BALANCE_SUFFICIENT"
NOTHING_TO_PROMISE = "NOTHING_TO_PROMISE"

REASON_TEXT = {
    CONTRACT_CLOSED: "The contract is closed.",
    CONTRACT_TOO_NEW: "A promised payment is available once the contract is {days} days old.",
    PROMISE_OPEN: "A promised payment is open already.",
    PROMISE_OVERDUE: "A promised payment is overdue: top up the balance first.",
    BALANCE_SUFFICIENT: "The balance covers the next {lookahead} days of charges.",
    NOTHING_TO_PROMISE: "There are no charges or recent top-ups to base an amount on.",
}


@dataclass(frozen=True, slots=True)
class FeeTier:
    up_to: Decimal | None  # inclusive; None: any amount above the previous tier
    fee: Decimal


@dataclass(frozen=True, slots=True)
class Offer:
    available: bool
    max_amount: Decimal  # 0.00 when not available
    term_days: int
    fee_tiers: list[FeeTier]
    reasons: list[str]  # stable codes (CONTRACT_TOO_NEW, …); empty when available
    messages: list[str] = field(default_factory=list)  # the reasons as text, same order
    # What the offer was computed from (for support and tests).
    balance: Decimal = ZERO
    monthly_charges: Decimal = ZERO
    next_charges: Decimal = ZERO
    average_top_ups: Decimal = ZERO


def fee_tiers(settings: Settings) -> list[FeeTier]:
    return [
        FeeTier(settings.promised_fee_free_up_to, ZERO),
        FeeTier(settings.promised_fee_small_up_to, settings.promised_fee_small),
        FeeTier(None, settings.promised_fee_large),
    ]


def promise_fee(settings: Settings, amount: Decimal) -> Decimal:
    """0 up to 100.00, 10.00 up to 500.00, 25.00 above (boundaries inclusive: 100 → 0,
    500 → 10, 500.01 → 25)."""
    for tier in fee_tiers(settings):
        if tier.up_to is None or amount <= tier.up_to:
            return tier.fee.quantize(CENT)
    raise AssertionError("the last tier has no bound")


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(CENT) if value is not None else ZERO


def _facts_statement() -> sa.Select[Any]:
    """Each contract of `:ids` with what its offer depends on besides its charges: its
    promises OPEN and OVERDUE, and its SUCCEEDED top-ups confirmed since `:since`."""

    def promises_with(status: str) -> Any:
        return (
            sa.select(sa.func.count())
            .where(
                _promises.c.contract_id == _contracts.c.id,
                _promises.c.status == sa.literal_column(f"'{status}'"),
            )
            .scalar_subquery()
        )

    confirmed_at = sa.func.coalesce(_payments.c.confirmed_at, _payments.c.created_at)
    top_ups = (
        sa.select(sa.func.coalesce(sa.func.sum(_payments.c.amount), 0))
        .where(
            _payments.c.contract_id == _contracts.c.id,
            _payments.c.status == sa.literal_column("'SUCCEEDED'"),
            confirmed_at >= sa.bindparam("since", type_=_payments.c.created_at.type),
        )
        .scalar_subquery()
    )
    return sa.select(
        _contracts.c.id,
        _contracts.c.status,
        _contracts.c.balance,
        _contracts.c.opened_on,
        promises_with("OPEN").label("open"),
        promises_with("OVERDUE").label("overdue"),
        top_ups.label("top_ups"),
    ).where(one_of(_contracts.c.id, "ids"))


_FACTS = ReadQuery(_facts_statement())


async def promised_payment_offers(
    source: Any, contract_ids: Sequence[int], *, settings: Settings, today: date | None = None
) -> dict[int, Offer]:
    """What each contract of `contract_ids` may take as a promised payment today (UTC), in a
    fixed number of statements whatever the number of contracts; unknown contracts are
    absent. Reads only; works on a request's reader or a session (inside
    `activate_promised_payment`, the write transaction's session with the contract locked)."""
    ids = list(dict.fromkeys(contract_ids))
    if not ids:
        return {}
    today = today or utcnow().date()
    since = datetime.combine(_months_before(today, settings.promised_average_months), time(0), UTC)
    if hasattr(source, "fetch"):
        # A request's reader: on PostgreSQL both reads travel in one statement.
        facts, monthly = await asyncio.gather(
            source.fetch(_FACTS, ids=ids, since=since), monthly_totals(source, ids, on=today)
        )
    else:  # a session runs one statement at a time
        facts = await read_rows(source, _FACTS.statement.params(ids=ids, since=since))
        monthly = await monthly_totals(source, ids, on=today)
    return {row.id: _offer(row, monthly[row.id], settings=settings, today=today) for row in facts}


async def promised_payment_offer(
    source: Any, *, settings: Settings, contract_id: int, today: date | None = None
) -> Offer:
    """`promised_payment_offers` of one contract; NOT_FOUND when there is no such contract."""
    offers = await promised_payment_offers(source, [contract_id], settings=settings, today=today)
    if contract_id not in offers:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    return offers[contract_id]


def _offer(facts: Any, monthly: Decimal, *, settings: Settings, today: date) -> Offer:
    """The offer of one contract from its facts (a row of `_FACTS`) and the Σ of its monthly
    fees today."""
    balance = _money(facts.balance)
    lookahead = settings.promised_lookahead_days
    next_charges = (monthly * lookahead / days_in_month(today)).quantize(CENT, ROUND_HALF_UP)
    average = (_money(facts.top_ups) / settings.promised_average_months).quantize(
        CENT, ROUND_HALF_UP
    )
    limit = min(max(monthly, average), settings.promised_max_amount).to_integral_value(ROUND_FLOOR)

    reasons: list[str] = []
    if facts.status == "CLOSED":
        reasons.append(CONTRACT_CLOSED)
    if (today - facts.opened_on).days < settings.promised_min_contract_age_days:
        reasons.append(CONTRACT_TOO_NEW)
    if facts.open:
        reasons.append(PROMISE_OPEN)
    if facts.overdue:
        reasons.append(PROMISE_OVERDUE)
    if balance >= next_charges:
        reasons.append(BALANCE_SUFFICIENT)
    if limit < 1:
        reasons.append(NOTHING_TO_PROMISE)
    available = not reasons
    return Offer(
        available=available,
        max_amount=limit.quantize(CENT) if available else ZERO,
        term_days=settings.promised_term_days,
        fee_tiers=fee_tiers(settings),
        reasons=reasons,
        messages=[
            REASON_TEXT[code].format(
                days=settings.promised_min_contract_age_days, lookahead=lookahead
            )
            for code in reasons
        ],
        balance=balance,
        monthly_charges=monthly,
        next_charges=next_charges,
        average_top_ups=average,
    )


# --------------------------------------------------------------------------- #
# activation
# --------------------------------------------------------------------------- #

PROMISE_COLUMNS = (
    _promises.c.id,
    _promises.c.contract_id,
    _promises.c.amount,
    _promises.c.fee,
    _promises.c.status,
    _promises.c.issued_at,
    _promises.c.due_at,
    _promises.c.settled_at,
)


@dataclass(frozen=True, slots=True)
class PromiseResult:
    promise: Any  # a row of PROMISE_COLUMNS
    balance_after: Decimal
    suspension_lifted: bool = False


def _check_amount(amount: Any) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise DomainError(ErrorCode.INVALID, "The amount must be a number.", field="amount")
    if amount <= 0:
        raise DomainError(ErrorCode.INVALID, "The amount must be above zero.", field="amount")
    if amount > Decimal("1e9") or amount != amount.quantize(CENT):
        raise DomainError(
            ErrorCode.INVALID, "The amount has at most two decimal places.", field="amount"
        )
    return amount.quantize(CENT)


def _not_eligible(messages: Sequence[str]) -> DomainError:
    return DomainError(
        ErrorCode.NOT_ELIGIBLE,
        "A promised payment is not available. " + " ".join(messages),
    )


async def activate_promised_payment(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    amount: Decimal,
    actor: str,
) -> PromiseResult:
    """Take a promised payment of `amount`: the offer is checked again inside the write
    transaction with the contract row locked, the promise is recorded (OPEN, due in
    `term_days`), the amount is credited and the fee debited as two ledger entries, and a
    suspension is lifted when the balance is then ≥ 0. Commits.

    One open promise per contract whatever the concurrency: the contract's row lock
    (PostgreSQL) or BEGIN IMMEDIATE (SQLite) queues concurrent activations, the second sees
    the first's promise; the unique partial index is the last line of defence."""
    amount = _check_amount(amount)
    await begin_write(session)
    try:
        result = await _activate(
            session, settings=settings, contract_id=contract_id, amount=amount, actor=actor
        )
    except IntegrityError:
        await session.rollback()
        raise _not_eligible([REASON_TEXT[PROMISE_OPEN]]) from None
    except BaseException:
        await session.rollback()
        raise
    await session.commit()
    return result


async def _activate(
    session: AsyncSession, *, settings: Settings, contract_id: int, amount: Decimal, actor: str
) -> PromiseResult:
    locked = await session.scalar(
        sa.select(_contracts.c.id).where(_contracts.c.id == contract_id).with_for_update()
    )
    if locked is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    now = utcnow()
    offer = await promised_payment_offer(
        session, settings=settings, contract_id=contract_id, today=now.date()
    )
    if not offer.available:
        raise _not_eligible(offer.messages)
    if amount > offer.max_amount:
        raise DomainError(
            ErrorCode.INVALID,
            f"The amount is at most {offer.max_amount} RUB.",
            field="amount",
        )
    fee = promise_fee(settings, amount)
    due_at = now + timedelta(days=settings.promised_term_days)
    promise_id = (
        await session.execute(
            sa.insert(_promises)
            .values(
                contract_id=contract_id,
                amount=amount,
                fee=fee,
                status="OPEN",
                issued_at=now,
                due_at=due_at,
            )
            .returning(_promises.c.id)
        )
    ).scalar_one()
    posted = await ledger.post(
        session,
        contract_id=contract_id,
        kind="PROMISED_PAYMENT",
        amount=amount,
        actor=actor,
        description=f"Обещанный платёж до {due_at:%d.%m.%Y %H:%M} UTC",
        reference=f"promise:{promise_id}",
        at=now,
    )
    if fee > 0:
        posted = await ledger.post(
            session,
            contract_id=contract_id,
            kind="PROMISED_PAYMENT_FEE",
            amount=-fee,
            actor=actor,
            description="Комиссия за обещанный платёж",
            reference=f"promise:{promise_id}",
            at=now,
        )
    lifted = await lift_if_paid(session, contract_id=contract_id)
    promise = (
        await session.execute(sa.select(*PROMISE_COLUMNS).where(_promises.c.id == promise_id))
    ).one()
    return PromiseResult(
        promise=promise, balance_after=posted.balance_after, suspension_lifted=lifted
    )


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #


async def promises_of_contract(source: Any, contract_ids: Sequence[int]) -> dict[int, list[Any]]:
    """Every promise of each contract, newest first (`Contract.promisedPayments`)."""
    found: dict[int, list[Any]] = defaultdict(list)
    if not contract_ids:
        return found
    statement = (
        sa.select(*PROMISE_COLUMNS)
        .where(_promises.c.contract_id.in_(list(contract_ids)))
        .order_by(_promises.c.contract_id, _promises.c.issued_at.desc(), _promises.c.id.desc())
    )
    for row in await read_rows(source, statement):
        found[row.contract_id].append(row)
    return found


async def open_promises(source: Any, contract_ids: Sequence[int]) -> dict[int, Any]:
    """The OPEN promise of each contract that has one (`Balance.openPromisedPayment`)."""
    if not contract_ids:
        return {}
    if hasattr(source, "fetch"):
        rows = await source.fetch(_OPEN_PROMISES, ids=list(contract_ids))
    else:
        statement = sa.select(*PROMISE_COLUMNS).where(
            _promises.c.contract_id.in_(list(contract_ids)), _promises.c.status == "OPEN"
        )
        rows = await read_rows(source, statement)
    return {row.contract_id: row for row in rows}


def open_promises_where(contracts: Any) -> sa.Select[Any]:
    """The open promised payment of the contracts `contracts(contract_id)` admits."""
    return sa.select(*PROMISE_COLUMNS).where(
        contracts(_promises.c.contract_id), _promises.c.status == sa.literal_column("'OPEN'")
    )


_OPEN_PROMISES = ReadQuery(open_promises_where(lambda column: one_of(column, "ids")))
