"""Promised payments (SPEC §3 "Money"): use the Internet now, pay with the next top-up.

The offer, with every rule of the SPEC, each a setting, is SQL written once here
(`offer_rows`, `reason_rows`, `fee_tier_rows`): `Contract.promisedPaymentOffer` reads it
through its declaration (resolvers/views.py: the executor's loaders and the one-statement
answer), and `activate_promised_payment` checks it again with the contract locked
(`promised_payment_offer`). The rules:
- the contract is not CLOSED and is at least `promised_min_contract_age_days` (60) old;
- it has no OPEN and no OVERDUE promise (an OVERDUE promise stops blocking once the debt is
  paid: the billing day, or `clear_overdue_if_paid` after a credit, marks it REPAID);
- its balance is below the next `promised_lookahead_days` (30) of charges, counted as
  `monthly_total × lookahead_days / days in the current month`, half-up to kopecks, where
  `monthly_total` is Σ monthly fees of today's items (`resolvers.charges.charge_items`);
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

import calendar
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import ReadQuery, begin_write, one_of, read_rows, rowcount
from core.errors import DomainError, ErrorCode
from core.ids import to_global_id
from core.settings import Settings
from core.views import Filter, RowRef
from models import Contract, Payment, PromisedPayment
from models.base import MONEY, table_of, utcnow
from resolvers import ledger
from resolvers.charges import charge_items, days_in_month_sql
from resolvers.events import record_event
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
    """A row of `offer_rows` with its reasons (`reason_rows`), for a writing transaction."""

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


# The fee tiers as settings: (up to, inclusive: None for any amount above; fee: None, free).
_FEE_TIER_SETTINGS = (
    ("promised_fee_free_up_to", None),
    ("promised_fee_small_up_to", "promised_fee_small"),
    (None, "promised_fee_large"),
)


def fee_tiers(settings: Settings) -> list[FeeTier]:
    return [
        FeeTier(
            None if up_to is None else getattr(settings, up_to),
            ZERO if fee is None else getattr(settings, fee),
        )
        for up_to, fee in _FEE_TIER_SETTINGS
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


def offer_parameters(settings: Settings, today: date) -> dict[str, Any]:
    """The values of the parameters the offer's statements take (`offer_rows`,
    `reason_rows`, `fee_tier_rows`): the settings, the two days the rule counts from, and
    the reasons' texts with the settings in them. resolvers/views.parameters passes them to
    every statement made from a view; `promised_payment_offer` to its own."""
    found: dict[str, Any] = {
        "today": today,
        "promised_opened_by": today - timedelta(days=settings.promised_min_contract_age_days),
        "promised_since": datetime.combine(
            _months_before(today, settings.promised_average_months), time(0), UTC
        ),
        "promised_lookahead_days": settings.promised_lookahead_days,
        "promised_average_months": settings.promised_average_months,
        "promised_max_amount": settings.promised_max_amount,
        "promised_term_days": settings.promised_term_days,
    }
    for code, text in REASON_TEXT.items():
        found[f"promised_reason_{code}"] = text.format(
            days=settings.promised_min_contract_age_days,
            lookahead=settings.promised_lookahead_days,
        )
    for n, tier in enumerate(fee_tiers(settings)):
        found[f"promised_fee_up_to_{n}"] = tier.up_to
        found[f"promised_fee_{n}"] = tier.fee
    return found


_TODAY = sa.bindparam("today", type_=sa.Date)
# Opened on this day or before: old enough (today − promised_min_contract_age_days).
_OPENED_BY = sa.bindparam("promised_opened_by", type_=sa.Date)
# Top-ups confirmed since then count (midnight UTC, promised_average_months ago).
_SINCE = sa.bindparam("promised_since", type_=_payments.c.created_at.type)
_LOOKAHEAD = sa.bindparam("promised_lookahead_days", type_=sa.BigInteger)
_MONTHS = sa.bindparam("promised_average_months", type_=sa.BigInteger)
_MAX_AMOUNT = sa.bindparam("promised_max_amount", type_=MONEY)


def _text(sql: str) -> Any:
    return sa.literal_column(sql)


def _integer(n: int) -> Any:
    return sa.literal_column(str(n), sa.BigInteger)


def _kopecks(money: Any) -> Any:
    """Money as whole kopecks: the rule counts in integers, exact on both databases
    (SQLite keeps NUMERIC as REAL)."""
    return sa.cast(sa.func.round(money * _text("100")), sa.BigInteger)


def _sum_of_kopecks(money: Any) -> Any:
    # PostgreSQL's sum of bigints is a numeric: back to an integer, for integer division.
    return sa.cast(sa.func.coalesce(sa.func.sum(_kopecks(money)), _text("0")), sa.BigInteger)


def _half_up(kopecks: Any, divisor: Any) -> Any:
    """kopecks / divisor rounded half-up to a kopeck (both ≥ 0, integers)."""
    return (kopecks * _integer(2) + divisor) // (divisor * _integer(2))


def _larger(a: Any, b: Any) -> Any:
    return sa.case((a > b, a), else_=b)


def _smaller(a: Any, b: Any) -> Any:
    return sa.case((a < b, a), else_=b)


def _money_of(kopecks: Any) -> Any:
    return sa.cast(kopecks / _text("100.0"), MONEY)


def _offer_values(keep: Filter) -> sa.Subquery:
    """What the offer of each contract `keep(contract id)` admits is computed from, in
    kopecks: its balance, its monthly charges today (Σ monthly fees of today's items,
    resolvers/charges.py), the next `promised_lookahead_days` of them (monthly × lookahead
    / days in the current month, half-up), the average monthly SUCCEEDED top-ups since
    `promised_since` (by the time they were confirmed; their sum / promised_average_months,
    half-up), the limit (the larger of the two, capped at `promised_max_amount`, rounded
    down to whole roubles), and whether it has an OPEN and an OVERDUE promise."""
    contract = _contracts.alias("offer_contract")
    row = RowRef(contract)  # by name: the nested selects below do not take it into their FROM
    items = charge_items(_TODAY, lambda column: column == row.c.id)
    confirmed_at = sa.func.coalesce(_payments.c.confirmed_at, _payments.c.created_at)
    top_ups = sa.select(_sum_of_kopecks(_payments.c.amount)).where(
        _payments.c.contract_id == row.c.id,
        _payments.c.status == _text("'SUCCEEDED'"),
        confirmed_at >= _SINCE,
    )

    def promise_with(status: str) -> Any:
        return (
            sa.select(_promises.c.id)
            .where(_promises.c.contract_id == row.c.id, _promises.c.status == _text(f"'{status}'"))
            .exists()
        )

    facts = (
        sa.select(
            contract.c.id.label("contract_id"),
            contract.c.status,
            contract.c.opened_on,
            _kopecks(contract.c.balance).label("balance"),
            sa.select(_sum_of_kopecks(items.c.monthly_fee)).scalar_subquery().label("monthly"),
            top_ups.scalar_subquery().label("top_ups"),
            promise_with("OPEN").label("open"),
            promise_with("OVERDUE").label("overdue"),
        )
        .where(keep(contract.c.id))
        # OFFSET 0: a subquery PostgreSQL keeps as it is, so that each fact (the charges, the
        # top-ups) is computed once, not once per use below.
        .offset(0)
        .subquery("offer_facts")
    )
    f = facts.c
    days = sa.cast(days_in_month_sql(_TODAY), sa.BigInteger)
    average = _half_up(f.top_ups, _MONTHS)
    capped = _smaller(_larger(f.monthly, average), _kopecks(_MAX_AMOUNT))
    return (
        sa.select(
            f.contract_id,
            f.status,
            f.opened_on,
            f.balance,
            f.monthly,
            f.open,
            f.overdue,
            _half_up(f.monthly * _LOOKAHEAD, days).label("next_charges"),
            average.label("average_top_ups"),
            (capped // _integer(100) * _integer(100)).label("limit"),
        )
        .offset(0)
        .subquery("offer_values")
    )


# Why not, in the order the reasons are listed: each a condition on a row of _offer_values.
_REASONS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    (CONTRACT_CLOSED, lambda v: v.c.status == _text("'CLOSED'")),
    (CONTRACT_TOO_NEW, lambda v: v.c.opened_on > _OPENED_BY),
    (PROMISE_OPEN, lambda v: v.c.open),
    (PROMISE_OVERDUE, lambda v: v.c.overdue),
    (BALANCE_SUFFICIENT, lambda v: v.c.balance >= v.c.next_charges),
    (NOTHING_TO_PROMISE, lambda v: v.c.limit < _integer(100)),
)


def offer_rows(keep: Filter) -> sa.Select[Any]:
    """The promised payment each contract `keep(contract id)` admits may take today (SPEC §3
    "promised payment"): one row per contract with `available` (no reason against it) and
    `max_amount` (the limit, 0.00 when not available), and in money what they were computed
    from. `Contract.promisedPaymentOffer` (resolvers/views.py) and the check of
    `activate_promised_payment` both read these rows."""
    v = _offer_values(keep)
    refused = sa.or_(*(condition(v) for _, condition in _REASONS))
    return sa.select(
        v.c.contract_id,
        sa.not_(refused).label("available"),
        _money_of(sa.case((refused, _integer(0)), else_=v.c.limit)).label("max_amount"),
        _money_of(v.c.balance).label("balance"),
        _money_of(v.c.monthly).label("monthly_charges"),
        _money_of(v.c.next_charges).label("next_charges"),
        _money_of(v.c.average_top_ups).label("average_top_ups"),
    )


def reason_rows(keep: Filter) -> sa.Select[Any]:
    """Why each contract `keep(contract id)` admits may not take a promised payment: one row
    per reason (contract_id, position, code, message), `position` the order of _REASONS."""
    listed = sa.union_all(
        *(
            sa.select(
                _integer(n).label("position"),
                _text(f"'{code}'").label("code"),
                sa.bindparam(f"promised_reason_{code}", type_=sa.Text).label("message"),
            )
            for n, (code, _) in enumerate(_REASONS)
        )
    ).subquery("reason")
    v = _offer_values(keep)
    applies = sa.case(
        *(
            (listed.c.position == _integer(n), condition(v))
            for n, (_, condition) in enumerate(_REASONS)
        ),
        else_=sa.false(),
    )
    return sa.select(
        v.c.contract_id, listed.c.position, listed.c.code, listed.c.message
    ).select_from(v.join(listed, applies))


def fee_tier_rows(_keep: Filter) -> sa.Select[Any]:
    """The fee tiers (position, up_to, fee), the same for every contract."""
    tiers = sa.union_all(
        *(
            sa.select(
                _integer(n).label("position"),
                sa.bindparam(f"promised_fee_up_to_{n}", type_=MONEY).label("up_to"),
                sa.bindparam(f"promised_fee_{n}", type_=MONEY).label("fee"),
            )
            for n in range(len(_FEE_TIER_SETTINGS))
        )
    ).subquery("fee_tier")
    return sa.select(tiers)


def _of_one_contract(column: Any) -> Any:
    return column == sa.bindparam("contract_id", type_=sa.Integer)


def _reasons_in_order(keep: Filter) -> sa.Select[Any]:
    rows = reason_rows(keep).subquery("reasons")
    return sa.select(rows).order_by(rows.c.position)


# Built once: they run in every activation's transaction.
_OFFER_OF_ONE = offer_rows(_of_one_contract)
_REASONS_OF_ONE = _reasons_in_order(_of_one_contract)


async def promised_payment_offer(
    session: AsyncSession, *, settings: Settings, contract_id: int, today: date | None = None
) -> Offer:
    """What the contract may take as a promised payment on `today` (default: today, UTC),
    from `offer_rows` and `reason_rows`; NOT_FOUND when there is no such contract. Used in
    `activate_promised_payment`'s transaction, with the contract locked."""
    values = {
        **offer_parameters(settings, today or utcnow().date()),
        "contract_id": contract_id,
    }
    offer = (await session.execute(_OFFER_OF_ONE, values)).first()
    if offer is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such contract.", field="contractNumber")
    reasons = (await session.execute(_REASONS_OF_ONE, values)).all()
    return Offer(
        available=bool(offer.available),
        max_amount=offer.max_amount,
        term_days=settings.promised_term_days,
        fee_tiers=fee_tiers(settings),
        reasons=[reason.code for reason in reasons],
        messages=[reason.message for reason in reasons],
        balance=offer.balance,
        monthly_charges=offer.monthly_charges,
        next_charges=offer.next_charges,
        average_top_ups=offer.average_top_ups,
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
    suspension is lifted when the balance is then ≥ 0.

    One open promise per contract whatever the concurrency: the contract's row lock
    (PostgreSQL) or BEGIN IMMEDIATE (SQLite) queues concurrent activations, the second sees
    the first's promise; the unique partial index is the last line of defence."""
    amount = _check_amount(amount)
    await begin_write(session)
    try:
        return await _activate(
            session, settings=settings, contract_id=contract_id, amount=amount, actor=actor
        )
    except IntegrityError:
        raise _not_eligible([REASON_TEXT[PROMISE_OPEN]]) from None


async def _activate(
    session: AsyncSession, *, settings: Settings, contract_id: int, amount: Decimal, actor: str
) -> PromiseResult:
    number = await session.scalar(
        sa.select(_contracts.c.number).where(_contracts.c.id == contract_id).with_for_update()
    )
    if number is None:
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
    await record_event(
        session,
        "promised_payment.activated",
        contract_number=number,
        data={
            "promisedPaymentId": to_global_id("PromisedPayment", promise_id),
            "amount": amount,
            "fee": fee,
            "dueAt": due_at,
        },
        at=now,
    )
    lifted = await lift_if_paid(session, settings=settings, contract_id=contract_id)
    promise = (
        await session.execute(sa.select(*PROMISE_COLUMNS).where(_promises.c.id == promise_id))
    ).one()
    return PromiseResult(
        promise=promise, balance_after=posted.balance_after, suspension_lifted=lifted
    )


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #


def promises_where(contracts: Any) -> sa.Select[Any]:
    """Every promise of the contracts `contracts(contract_id)` admits
    (`Contract.promisedPayments`, newest first: resolvers/views.py)."""
    return sa.select(*PROMISE_COLUMNS).where(contracts(_promises.c.contract_id))


async def promises_of_contract(source: Any, contract_ids: Sequence[int]) -> dict[int, list[Any]]:
    """Every promise of each contract, newest first."""
    found: dict[int, list[Any]] = defaultdict(list)
    if not contract_ids:
        return found
    rows = promises_where(lambda column: column.in_(list(contract_ids))).subquery()
    statement = sa.select(rows).order_by(
        rows.c.contract_id, rows.c.issued_at.desc(), rows.c.id.desc()
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
