"""Autopay (SPEC §7 "Autopay"): saved payment methods, a contract's autopay rule, the autopay
payments made after each billing day, and what their outcome does.

* Saved methods (`payment_methods`) show by title only (`Contract.paymentMethods`);
  `forget_payment_method` hides one and switches off a rule that used it.
* A rule (`autopay_rules`, one per contract): BELOW_THRESHOLD pays `amount` after a billing
  day leaves the balance below `threshold`; MONTHLY pays `amount` on `day_of_month` (1..28).
  `set_autopay` writes it (enabled, no failures), `disable_autopay` switches it off. Every
  change is mailed to the subscriber, in the same transaction.
* After each billing day (`run_autopay`, called at the end of `billing.run_billing_day`):
  one set-based transaction makes an ordinary PENDING payment (`payments.autopay` true) for
  every contract whose rule fires, at most one per contract and day (the primary key
  (contract, day) of `autopay_runs`, and the payments' unique idempotency key
  "autopay:<contract>:<day>" in the scope "autopay") and `autopay_max_per_month` a month,
  and none while an autopay payment of the contract is still PENDING. It commits; then the
  provider is asked to charge each saved method (no transaction open over the network, the
  Idempotence-Key derived from the payment as for any top-up); then what it answered is
  applied through the webhook's own path (`payments.apply_provider_event`: credit, receipt,
  letter, exactly once) and `autopay_outcome` records the outcome. A provider that does not
  answer leaves the payment PENDING: its notification settles it, or a later run (a rerun
  of the day, or the next day's, within `RESUME_WITHIN`) asks again with the same
  Idempotence-Key (never a second provider payment), or the top-up expiry cancels it;
  the next run's `settle_autopay_outcomes` records the outcome of any autopay payment
  settled elsewhere. Two hosts running the same billing day at once make one payment per
  contract: the second host's insert finds the first one's key and inserts nothing.
* Outcomes (`autopay_outcome`, once per payment: the run's `outcome` is set from null): a
  success resets the failures in a row; a failure is mailed, and the third in a row
  switches the rule off (the letter says so).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import outbox
from core.db import begin_write, rowcount, unit_of_work
from core.errors import DomainError, ErrorCode, InputProblems
from core.payment_providers import (
    PaymentOrder,
    ProviderPayment,
    ProviderRefused,
    ProviderUnavailable,
    payment_idempotence_key,
    provider_for,
)
from core.settings import Settings
from models import AutopayRule, AutopayRun, Contract, Payment, PaymentMethod, Subscriber
from models.autopay import AUTOPAY_MODES
from models.base import table_of, utcnow
from resolvers import payments, receipts
from resolvers.accounts import may_see_contract
from resolvers.letters import autopay_changed_letter, autopay_failed_letter

log = logging.getLogger("kabinet.autopay")

_rules = table_of(AutopayRule)
_runs = table_of(AutopayRun)
_methods = table_of(PaymentMethod)
_payments = table_of(Payment)
_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)

BELOW_THRESHOLD, MONTHLY = AUTOPAY_MODES
FAILURES_TO_DISABLE = 3
DAY_OF_MONTH = (1, 28)
IDEMPOTENCY_SCOPE = "autopay"
ACTOR = "system:autopay"
AUTOPAY_DESCRIPTION = "Автоплатёж"
# Provider calls of one run at once (each its own HTTP request).
PROVIDER_CONCURRENCY = 8
CENT = Decimal("0.01")
# Every autopay payment's request fingerprint (no client replays it).
_FINGERPRINT = hashlib.sha256(b"autopay").hexdigest()

METHOD_COLUMNS = (
    _methods.c.id,
    _methods.c.contract_id,
    _methods.c.title,
    _methods.c.created_at,
)
RULE_COLUMNS = (
    _rules.c.contract_id,
    _rules.c.payment_method_id,
    _rules.c.mode,
    _rules.c.amount,
    _rules.c.threshold,
    _rules.c.day_of_month,
    _rules.c.enabled,
    _rules.c.failures_in_row,
    _rules.c.created_at,
    _rules.c.updated_at,
)


# -- reading (declared in resolvers/views.py) ---------------------------------------------


def methods_where(keep: Any) -> sa.Select[Any]:
    """The saved methods (not forgotten) of the contracts `keep(contract_id)` admits."""
    return sa.select(*METHOD_COLUMNS).where(
        keep(_methods.c.contract_id), _methods.c.forgotten_at.is_(None)
    )


def method_rows(keep: Any) -> sa.Select[Any]:
    """Saved methods (not forgotten) by id (`keep(id)`)."""
    return sa.select(*METHOD_COLUMNS).where(keep(_methods.c.id), _methods.c.forgotten_at.is_(None))


def rules_where(keep: Any) -> sa.Select[Any]:
    """The autopay rules of the contracts `keep(contract_id)` admits."""
    return sa.select(*RULE_COLUMNS).where(keep(_rules.c.contract_id))


# -- changing the rule --------------------------------------------------------------------


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def _checked_threshold(settings: Settings, threshold: Decimal | None) -> Decimal:
    limit = settings.top_up_max
    if threshold is None:
        raise _invalid("threshold", "BELOW_THRESHOLD needs a threshold.")
    if (
        not isinstance(threshold, Decimal)
        or not threshold.is_finite()
        or not Decimal(0) <= threshold <= limit
    ):
        raise _invalid("threshold", f"The threshold must be from 0.00 to {limit:.2f}.")
    try:
        rounded = threshold.quantize(CENT)
    except InvalidOperation:
        rounded = None
    if rounded != threshold:
        raise _invalid("threshold", "The threshold may have at most 2 decimal places.")
    return rounded


def _checked_day(day_of_month: int | None) -> int:
    low, high = DAY_OF_MONTH
    if day_of_month is None or not low <= day_of_month <= high:
        raise _invalid("dayOfMonth", f"MONTHLY needs a day of the month from {low} to {high}.")
    return day_of_month


@dataclass(frozen=True, slots=True)
class _Owner:
    """A contract's number, status and owner's address (for its letters)."""

    contract_id: int
    number: str
    status: str
    email: str | None


_OWNER = (
    sa.select(_contracts.c.id, _contracts.c.number, _contracts.c.status, _subscribers.c.email)
    .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
    .where(_contracts.c.id == sa.bindparam("contract_id", type_=sa.BigInteger))
)


async def _owner(session: AsyncSession, contract_id: int) -> _Owner:
    row = (await session.execute(_OWNER, {"contract_id": contract_id})).one()
    return _Owner(row.id, row.number, row.status, row.email)


async def _mail(session: AsyncSession, owner: _Owner, letter: Any, kind: str) -> None:
    """Queue a letter to the contract's owner in the caller's transaction (none without an
    address: the change stands all the same)."""
    if not owner.email:
        return
    try:
        await outbox.queue_letter(
            session,
            kind=kind,
            recipient=owner.email,
            subject=letter.subject,
            body_text=letter.body_text,
            body_html=letter.body_html,
        )
    except ValueError:
        log.error(
            "autopay letter not queued: bad address", extra={"contract_id": owner.contract_id}
        )


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def set_autopay(
    session: AsyncSession,
    *,
    settings: Settings,
    contract_id: int,
    payment_method_id: int,
    mode: str,
    amount: Decimal,
    threshold: Decimal | None = None,
    day_of_month: int | None = None,
) -> int:
    """Set the contract's autopay rule (a new one, or replacing the one it has): enabled,
    no failures. The caller has checked that the principal owns the contract. The field of
    the other mode is not kept (a MONTHLY rule has no threshold). Mailed to the subscriber.

    Raises DomainError: INVALID (fields mode, amount, threshold, dayOfMonth: every one at
    fault); NOT_FOUND (field paymentMethodId) for a method that is not the contract's saved
    one; NOT_ELIGIBLE (field contractNumber) for a closed contract."""
    problems = InputProblems()
    with problems:
        if mode not in AUTOPAY_MODES:
            raise _invalid("mode", f"The mode must be one of {', '.join(AUTOPAY_MODES)}.")
    with problems:
        amount = payments.checked_amount(settings, amount)
    if mode == BELOW_THRESHOLD:
        with problems:
            threshold = _checked_threshold(settings, threshold)
        day_of_month = None
    elif mode == MONTHLY:
        with problems:
            day_of_month = _checked_day(day_of_month)
        threshold = None
    problems.raise_found()

    await begin_write(session)
    owner = await _owner(session, contract_id)
    if owner.status == "CLOSED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE, "A closed contract has no autopay.", field="contractNumber"
        )
    method = (
        await session.execute(
            sa.select(_methods.c.id, _methods.c.title).where(
                _methods.c.id == payment_method_id,
                _methods.c.contract_id == contract_id,
                _methods.c.forgotten_at.is_(None),
            )
        )
    ).first()
    if method is None:
        raise DomainError(
            ErrorCode.NOT_FOUND, "No such saved payment method.", field="paymentMethodId"
        )
    now = utcnow()
    values = {
        "payment_method_id": payment_method_id,
        "mode": mode,
        "amount": amount,
        "threshold": threshold,
        "day_of_month": day_of_month,
        "enabled": True,
        "failures_in_row": 0,
        "updated_at": now,
    }
    statement = _insert(session)(_rules).values(contract_id=contract_id, created_at=now, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[_rules.c.contract_id], set_=values)
    )
    letter = autopay_changed_letter(
        settings,
        contract_number=owner.number,
        enabled=True,
        mode=mode,
        amount=amount,
        threshold=threshold,
        day_of_month=day_of_month,
        method_title=method.title,
    )
    await _mail(session, owner, letter, "AUTOPAY")
    log.info("autopay set", extra={"contract_id": contract_id})
    return contract_id


async def disable_autopay(session: AsyncSession, *, settings: Settings, contract_id: int) -> int:
    """Switch the contract's autopay off (the rule stays, shown with `enabled` false);
    mailed when it was on. The caller has checked that the principal owns the contract.

    Raises DomainError NOT_FOUND (field contractNumber) when the contract has no rule."""
    await begin_write(session)
    rule = (
        await session.execute(
            sa.select(_rules.c.enabled).where(_rules.c.contract_id == contract_id)
        )
    ).first()
    if rule is None:
        raise DomainError(
            ErrorCode.NOT_FOUND, "This contract has no autopay.", field="contractNumber"
        )
    switched = await session.execute(
        sa.update(_rules)
        .where(_rules.c.contract_id == contract_id, _rules.c.enabled.is_(True))
        .values(enabled=False, updated_at=utcnow())
    )
    if rowcount(switched):
        owner = await _owner(session, contract_id)
        letter = autopay_changed_letter(settings, contract_number=owner.number, enabled=False)
        await _mail(session, owner, letter, "AUTOPAY")
        log.info("autopay disabled", extra={"contract_id": contract_id})
    return contract_id


_METHOD_AND_OWNER = (
    sa.select(_methods.c.id, _methods.c.contract_id, _methods.c.title, _contracts.c.subscriber_id)
    .join(_contracts, _contracts.c.id == _methods.c.contract_id)
    .where(
        _methods.c.id == sa.bindparam("method_id", type_=sa.BigInteger),
        _methods.c.forgotten_at.is_(None),
    )
)


async def forget_payment_method(
    session: AsyncSession, *, settings: Settings, principal: Any, payment_method_id: int
) -> int:
    """Forget a saved method of one's own contract (it no longer shows nor pays; the
    provider's reference stays for the payments that name it); an autopay rule using it is
    switched off and that is mailed. The contract's id.

    Raises DomainError NOT_FOUND (field paymentMethodId) for no such method, another's, or
    one forgotten already."""
    await begin_write(session)
    method = (await session.execute(_METHOD_AND_OWNER, {"method_id": payment_method_id})).first()
    if method is None or not may_see_contract(principal, method):
        raise DomainError(
            ErrorCode.NOT_FOUND, "No such saved payment method.", field="paymentMethodId"
        )
    now = utcnow()
    forgotten = await session.execute(
        sa.update(_methods)
        .where(_methods.c.id == payment_method_id, _methods.c.forgotten_at.is_(None))
        .values(forgotten_at=now)
    )
    if not rowcount(forgotten):  # forgotten meanwhile
        raise DomainError(
            ErrorCode.NOT_FOUND, "No such saved payment method.", field="paymentMethodId"
        )
    switched = await session.execute(
        sa.update(_rules)
        .where(_rules.c.payment_method_id == payment_method_id, _rules.c.enabled.is_(True))
        .values(enabled=False, updated_at=now)
    )
    if rowcount(switched):
        owner = await _owner(session, method.contract_id)
        letter = autopay_changed_letter(
            settings, contract_number=owner.number, enabled=False, forgotten_title=method.title
        )
        await _mail(session, owner, letter, "AUTOPAY")
    log.info("payment method forgotten", extra={"contract_id": method.contract_id})
    return int(method.contract_id)


# -- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutopayOutcome:
    contract_id: int
    succeeded: bool
    failures_in_row: int
    switched_off: bool  # this failure was the third in a row: the rule is off now


_SETTLE_RUN = (
    sa.update(_runs)
    .where(
        _runs.c.payment_id == sa.bindparam("p_payment", type_=sa.BigInteger),
        _runs.c.outcome.is_(None),
    )
    .values(outcome=sa.bindparam("p_outcome"), settled_at=sa.bindparam("p_at"))
    .returning(_runs.c.contract_id)
)
_RULE_OF = (
    sa.select(
        _rules.c.enabled,
        _rules.c.failures_in_row,
        _methods.c.title,
    )
    .join(_methods, _methods.c.id == _rules.c.payment_method_id)
    .where(_rules.c.contract_id == sa.bindparam("contract_id", type_=sa.BigInteger))
    .with_for_update(of=_rules)
)


async def autopay_outcome(
    session: AsyncSession, *, settings: Settings, payment_id: int, succeeded: bool
) -> AutopayOutcome | None:
    """Record the outcome of an autopay payment, once, in the caller's transaction: call it
    wherever a payment's outcome is applied (the sandbox's charge at once here; YooKassa's
    notification after `apply_provider_event`; `settle_autopay_outcomes` catches up with
    any other). A success resets the failures in a row; a failure (FAILED or CANCELED) is
    mailed, and the third in a row switches autopay off, which the letter says. None when
    the payment is no autopay payment or its outcome is recorded already."""
    await begin_write(session)
    now = utcnow()
    run = (
        await session.execute(
            _SETTLE_RUN,
            {
                "p_payment": payment_id,
                "p_outcome": "SUCCEEDED" if succeeded else "FAILED",
                "p_at": now,
            },
        )
    ).first()
    if run is None:
        return None
    contract_id = int(run.contract_id)
    rule = (await session.execute(_RULE_OF, {"contract_id": contract_id})).first()
    if rule is None:  # cannot happen: rules are never deleted
        return None
    if succeeded:
        await session.execute(
            sa.update(_rules).where(_rules.c.contract_id == contract_id).values(failures_in_row=0)
        )
        log.info("autopay payment succeeded", extra={"payment_id": payment_id})
        return AutopayOutcome(contract_id, True, 0, False)
    failures = int(rule.failures_in_row) + 1
    switched_off = bool(rule.enabled) and failures >= FAILURES_TO_DISABLE
    values: dict[str, Any] = {"failures_in_row": failures}
    if switched_off:
        values.update(enabled=False, updated_at=now)
    await session.execute(
        sa.update(_rules).where(_rules.c.contract_id == contract_id).values(**values)
    )
    amount = (
        await session.execute(sa.select(_payments.c.amount).where(_payments.c.id == payment_id))
    ).scalar_one()
    owner = await _owner(session, contract_id)
    letter = autopay_failed_letter(
        settings,
        contract_number=owner.number,
        amount=Decimal(amount).quantize(CENT),
        method_title=rule.title,
        failures_in_row=failures,
        switched_off=switched_off,
        failures_to_disable=FAILURES_TO_DISABLE,
    )
    await _mail(session, owner, letter, "AUTOPAY_FAILED")
    log.warning(
        "autopay payment failed",
        extra={"payment_id": payment_id, "failures": failures, "switched_off": switched_off},
    )
    return AutopayOutcome(contract_id, False, failures, switched_off)


_FINAL_UNRECORDED = (
    sa.select(_runs.c.payment_id, _payments.c.status)
    .join(_payments, _payments.c.id == _runs.c.payment_id)
    .where(_runs.c.outcome.is_(None), _payments.c.status != "PENDING")
    .order_by(_runs.c.payment_id)
)


async def settle_autopay_outcomes(session: AsyncSession, *, settings: Settings) -> int:
    """Record the outcome of every autopay payment settled without it being recorded (by a
    notification, the top-up expiry, a host that stopped in between): how many."""
    await begin_write(session)
    found = (await session.execute(_FINAL_UNRECORDED)).all()
    recorded = 0
    for row in found:
        outcome = await autopay_outcome(
            session,
            settings=settings,
            payment_id=int(row.payment_id),
            succeeded=row.status == "SUCCEEDED",
        )
        recorded += outcome is not None
    return recorded


# -- after the billing day ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutopayCharge:
    """An autopay payment to charge at the provider."""

    payment_id: int
    contract_id: int
    amount: Decimal
    created_at: datetime
    method_reference: str
    email: str | None
    phone: str | None
    # Made by an earlier run: the provider may hold a payment under its Idempotence-Key
    # already (its answer lost), so a refusal is no decline (see `charge_at_provider`).
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class AutopaySummary:
    created: int = 0  # autopay payments made by this run
    succeeded: int = 0  # of those, credited at once
    failed: int = 0  # of those, refused by the provider
    pending: int = 0  # of those, waiting for the provider (or it did not answer)
    recorded: int = 0  # outcomes of earlier autopay payments recorded by this run


def _month(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following


def _fires(day: date, settings: Settings, provider: str) -> sa.Select[Any]:
    """(contract, amount, method) of every enabled rule that fires for `day`: BELOW_THRESHOLD
    when the balance is below the threshold now (after the day's charges), MONTHLY on its
    day; its method saved and of this provider; the contract not closed; no autopay for the
    contract that day yet, fewer than the month's cap, none of its autopay payments still
    PENDING."""
    first, following = _month(day)
    ran_today = sa.exists().where(_runs.c.contract_id == _rules.c.contract_id, _runs.c.day == day)
    this_month = (
        sa.select(sa.func.count())
        .select_from(_runs)
        .where(
            _runs.c.contract_id == _rules.c.contract_id,
            _runs.c.day >= first,
            _runs.c.day < following,
        )
        .scalar_subquery()
    )
    waiting = sa.exists().where(
        _payments.c.contract_id == _rules.c.contract_id,
        _payments.c.autopay.is_(True),
        _payments.c.status == "PENDING",
    )
    key = (
        sa.literal(f"{IDEMPOTENCY_SCOPE}:", sa.String)
        + sa.cast(_rules.c.contract_id, sa.String)
        + sa.literal(f":{day.isoformat()}", sa.String)
    )
    return (
        sa.select(
            _rules.c.contract_id,
            _rules.c.amount,
            sa.case((_methods.c.title == "SBP", "SBP"), else_="BANK_CARD").label("method"),
            sa.literal("PENDING", sa.String).label("status"),
            sa.literal(IDEMPOTENCY_SCOPE, sa.String).label("idempotency_scope"),
            key.label("idempotency_key"),
            sa.literal(_FINGERPRINT, sa.String).label("request_fingerprint"),
            _methods.c.provider,
            sa.literal(True, sa.Boolean).label("autopay"),
            sa.literal(False, sa.Boolean).label("save_payment_method"),
        )
        .select_from(
            _rules.join(_contracts, _contracts.c.id == _rules.c.contract_id).join(
                _methods, _methods.c.id == _rules.c.payment_method_id
            )
        )
        .where(
            _rules.c.enabled.is_(True),
            _methods.c.forgotten_at.is_(None),
            _methods.c.provider == provider,
            _contracts.c.status != "CLOSED",
            sa.or_(
                sa.and_(
                    _rules.c.mode == BELOW_THRESHOLD, _contracts.c.balance < _rules.c.threshold
                ),
                sa.and_(_rules.c.mode == MONTHLY, _rules.c.day_of_month == day.day),
            ),
            ~ran_today,
            this_month < settings.autopay_max_per_month,
            ~waiting,
        )
        .order_by(_rules.c.contract_id)
    )


_PAYMENT_INSERT_COLUMNS = [
    "contract_id",
    "amount",
    "method",
    "status",
    "idempotency_scope",
    "idempotency_key",
    "request_fingerprint",
    "provider",
    "autopay",
    "save_payment_method",
    "created_at",
]


async def _create_payments(
    session: AsyncSession, *, settings: Settings, day: date, now: datetime
) -> list[int]:
    """The day's autopay payments (PENDING) and their runs, set-based, in the caller's
    transaction; the ids of the payments this call made (another host's are not)."""
    await begin_write(session)
    provider = provider_for(settings).name
    fires = _fires(day, settings, provider).add_columns(
        sa.literal(now, _payments.c.created_at.type)
    )
    insert = _insert(session)
    made = (
        await session.execute(
            insert(_payments)
            .from_select(_PAYMENT_INSERT_COLUMNS, fires)
            .on_conflict_do_nothing(
                index_elements=[_payments.c.idempotency_scope, _payments.c.idempotency_key]
            )
            .returning(_payments.c.id)
        )
    ).all()
    if not made:
        return []
    # The runs of the payments of this day's key that have none yet: this call's (a host's
    # insert that found another's key inserted no payment, and finds its run there).
    key = (
        sa.literal(f"{IDEMPOTENCY_SCOPE}:", sa.String)
        + sa.cast(_rules.c.contract_id, sa.String)
        + sa.literal(f":{day.isoformat()}", sa.String)
    )
    ours = (
        sa.select(
            _payments.c.contract_id,
            sa.literal(day, sa.Date),
            _payments.c.id,
            _rules.c.payment_method_id,
            sa.literal(now, _runs.c.created_at.type),
        )
        .select_from(
            _rules.join(
                _payments,
                sa.and_(
                    _payments.c.idempotency_scope == IDEMPOTENCY_SCOPE,
                    _payments.c.idempotency_key == key,
                ),
            )
        )
        .where(
            ~sa.exists().where(_runs.c.contract_id == _payments.c.contract_id, _runs.c.day == day)
        )
        .order_by(_payments.c.contract_id)
    )
    await session.execute(
        insert(_runs)
        .from_select(["contract_id", "day", "payment_id", "payment_method_id", "created_at"], ours)
        .on_conflict_do_nothing(index_elements=[_runs.c.contract_id, _runs.c.day])
    )
    return sorted(int(row.id) for row in made)


_TO_CHARGE = (
    sa.select(
        _payments.c.id,
        _payments.c.contract_id,
        _payments.c.amount,
        _payments.c.created_at,
        _methods.c.reference,
        _subscribers.c.email,
        _subscribers.c.phone,
    )
    .select_from(
        _payments.join(_runs, _runs.c.payment_id == _payments.c.id)
        .join(_rules, _rules.c.contract_id == _payments.c.contract_id)
        .join(_methods, _methods.c.id == _runs.c.payment_method_id)
        .join(_contracts, _contracts.c.id == _payments.c.contract_id)
        .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
    )
    .where(
        _payments.c.status == "PENDING",
        _payments.c.provider_reference.is_(None),
        # the method the payment was made from, still saved, the rule still on: a method
        # forgotten or a rule switched off meanwhile is never charged (the top-up expiry
        # cancels the payment)
        _methods.c.forgotten_at.is_(None),
        _rules.c.enabled,
    )
    .order_by(_payments.c.id)
)
_MADE_BY_THIS_RUN = _TO_CHARGE.where(_payments.c.id.in_(sa.bindparam("ids", expanding=True)))
_LEFT_BY_AN_EARLIER_RUN = _TO_CHARGE.where(
    _payments.c.created_at < sa.bindparam("before", type_=_payments.c.created_at.type),
    _payments.c.created_at >= sa.bindparam("since", type_=_payments.c.created_at.type),
)
CHARGES_READ_AT_ONCE = 1000  # payment ids a statement reads
# An autopay payment with no provider reference this old was left by a run that stopped, or
# that the provider did not answer (another host's run at the same time charges its own at
# once)...
RESUME_AFTER = timedelta(minutes=2)
# ...and is charged again by any later run (a rerun of the day, or the next day's) while the
# provider still knows its Idempotence-Key (YooKassa keeps one for 24 hours): an older one
# is left to the top-up expiry, never charged with a key the provider may have forgotten.
RESUME_WITHIN = timedelta(hours=23)


async def _charges(
    session: AsyncSession, *, made: Sequence[int], started: datetime
) -> list[AutopayCharge]:
    """What to charge: the payments this run made, and the autopay payments an earlier run
    made but never got to the provider (it stopped in between, or the provider did not
    answer; the same Idempotence-Key makes the same provider payment, so asking again never
    charges twice)."""
    ours = set(made)
    left = await session.execute(
        _LEFT_BY_AN_EARLIER_RUN,
        {"before": started - RESUME_AFTER, "since": started - RESUME_WITHIN},
    )
    rows = [row for row in left.all() if row.id not in ours]
    for start in range(0, len(made), CHARGES_READ_AT_ONCE):
        ids = list(made[start : start + CHARGES_READ_AT_ONCE])
        rows.extend((await session.execute(_MADE_BY_THIS_RUN, {"ids": ids})).all())
    return [
        AutopayCharge(
            payment_id=int(row.id),
            contract_id=int(row.contract_id),
            amount=Decimal(row.amount).quantize(CENT),
            created_at=row.created_at,
            method_reference=row.reference,
            email=row.email,
            phone=row.phone,
            resumed=row.id not in ours,
        )
        for row in rows
    ]


async def charge_at_provider(settings: Settings, charge: AutopayCharge) -> ProviderPayment | None:
    """Ask the provider to charge the saved method (no transaction open). None when it did
    not answer, or refused a resumed charge (the payment stays PENDING); a CANCELED answer
    when it refused the charge."""
    try:
        return await provider_for(settings).create_payment(
            PaymentOrder(
                payment_id=charge.payment_id,
                amount=charge.amount,
                description=f"{AUTOPAY_DESCRIPTION}, платёж {charge.payment_id}",
                receipt=receipts.provider_receipt(
                    settings,
                    email=charge.email,
                    phone=charge.phone,
                    amount=charge.amount,
                    at=charge.created_at,
                ),
                method_reference=charge.method_reference,
                idempotence_key=payment_idempotence_key(charge.payment_id, charge.created_at),
            )
        )
    except ProviderUnavailable as error:
        log.warning(
            "autopay: the provider did not answer: %s",
            error,
            extra={"payment_id": charge.payment_id},
        )
        return None
    except ProviderRefused as error:
        if charge.resumed:
            # Asked before with this Idempotence-Key, the provider may have charged it (an
            # answer lost) and refuse this request as not the same (the subscriber's address
            # in the receipt, or the rule's method, changed since): never counted a decline
            # here, the notification settles it (or the top-up expiry).
            log.error(
                "autopay: the provider refused a resumed charge; left PENDING: %s",
                error,
                extra={"payment_id": charge.payment_id},
            )
            return None
        log.warning(
            "autopay: the provider refused the charge: %s",
            error,
            extra={"payment_id": charge.payment_id},
        )
        return ProviderPayment(
            reference=None, status="CANCELED", confirmation_url=None, saved_method=None
        )


async def apply_charge_answer(
    session: AsyncSession, *, settings: Settings, payment_id: int, answer: ProviderPayment
) -> str:
    """Apply what the provider answered for an autopay charge, in the caller's unit of work
    (untouched so far: on PostgreSQL a success may be written by the webhook's one
    statement, which locks the payment): a success or a refusal applied through the
    webhook's own path (exactly once, the provider's reference and receipt status kept) and
    its outcome recorded; a PENDING answer only keeps the reference (the notification
    settles it). The
    payment's status now."""
    if answer.status == "PENDING":
        if answer.reference is not None:
            await payments.record_provider_payment(
                session, settings=settings, payment_id=payment_id, answer=answer
            )
        return "PENDING"
    outcome = await payments.apply_provider_event(
        session,
        settings=settings,
        payment_id=payment_id,
        status="SUCCEEDED" if answer.status == "SUCCEEDED" else "FAILED",
        provider_reference=answer.reference,
    )
    await autopay_outcome(
        session,
        settings=settings,
        payment_id=payment_id,
        succeeded=outcome.payment_status == "SUCCEEDED",
    )
    if answer.reference is not None:
        # The provider's fiscal receipt status (as a top-up's notification keeps it): after
        # the event, which on PostgreSQL may have written the payment on its own connection.
        await payments.record_provider_payment(
            session, settings=settings, payment_id=payment_id, answer=answer
        )
    return outcome.payment_status


async def run_autopay(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    day: date,
    now: datetime | None = None,
) -> AutopaySummary:
    """The autopay step after the billing day `day` (see the module docstring): outcomes
    settled elsewhere recorded, the day's autopay payments made (committed), each charged at
    the provider, and what it answered applied. Safe on several hosts at once."""
    started = utcnow()
    now = now or started
    async with unit_of_work(session_factory) as session:
        recorded = await settle_autopay_outcomes(session, settings=settings)
    async with unit_of_work(session_factory) as session:
        made = await _create_payments(session, settings=settings, day=day, now=now)
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        charges = await _charges(session, made=made, started=started)

    limit = asyncio.Semaphore(PROVIDER_CONCURRENCY)

    async def charge(one: AutopayCharge) -> str:
        async with limit:
            answer = await charge_at_provider(settings, one)
        if answer is None:
            return "PENDING"
        try:
            async with unit_of_work(session_factory) as session:
                return await apply_charge_answer(
                    session, settings=settings, payment_id=one.payment_id, answer=answer
                )
        except DomainError as error:  # e.g. the reference is another payment's: logged
            log.error(
                "autopay: the provider's answer was not applied: %s",
                error,
                extra={"payment_id": one.payment_id},
            )
            return "PENDING"

    statuses = await asyncio.gather(*(charge(one) for one in charges))
    summary = AutopaySummary(
        created=len(made),
        succeeded=statuses.count("SUCCEEDED"),
        failed=statuses.count("FAILED"),
        pending=statuses.count("PENDING"),
        recorded=recorded,
    )
    if made or charges:
        log.info(
            "autopay: %s payments made, %s succeeded, %s failed, %s pending",
            summary.created,
            summary.succeeded,
            summary.failed,
            summary.pending,
        )
    return summary
