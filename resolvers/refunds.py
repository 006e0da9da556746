"""Refunds (SPEC §7): staff give back part or all of a SUCCEEDED top-up, with a reason.

1. `start_refund` (staff, audited, one transaction): the payment's row is locked, so two
   refunds of one payment racing are decided one after the other: never more than the
   payment minus its earlier refunds (PENDING ones count: they may still succeed). It
   writes a PENDING `refunds` row with its own Idempotence-Key.
2. `send_refund` (no transaction open): `POST /refunds` at the payment's provider with the
   refund's receipt and that key; no answer → PROVIDER_UNAVAILABLE, and the same
   `refundPayment` again resumes that refund (the same key: never a second refund).
3. `apply_refund_answer` (one transaction), also for the provider's `refund.succeeded`
   notification read back: a PENDING refund the provider calls SUCCEEDED debits the
   balance (a REFUND ledger entry), takes back the bonus points the refunded amount earned
   (never below zero) and queues a letter, exactly once (a conditional UPDATE from
   PENDING under the refund's row lock). The sandbox refunds at once.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from core import outbox
from core.db import RequestReader, begin_write, rowcount
from core.errors import DomainError, ErrorCode, InputProblems
from core.ids import to_global_id
from core.payment_providers import (
    ProviderRefund,
    ProviderRefused,
    ProviderUnavailable,
    RefundOrder,
    payment_global_id,
    provider_for,
)
from core.settings import Settings
from models import BonusAccount, BonusEntry, Contract, Payment, Refund, Subscriber
from models.base import table_of, utcnow
from resolvers import events, ledger, receipts
from resolvers.audit import checked_reason, record_audit
from resolvers.bonus import points_for
from resolvers.letters import refund_letter

log = logging.getLogger("kabinet.refunds")

_payments = table_of(Payment)
_refunds = table_of(Refund)
_contracts = table_of(Contract)
_subscribers = table_of(Subscriber)
_accounts = table_of(BonusAccount)
_entries = table_of(BonusEntry)

CENT = Decimal("0.01")
# Refunds still able to succeed, or succeeded: what a new refund must leave room for.
LIVE_STATUSES = ("PENDING", "SUCCEEDED")
REFUND_DESCRIPTION = "Возврат платежа"
REFUNDABLE_PROVIDERS = frozenset({"sandbox", "yookassa"})


@dataclass(frozen=True, slots=True)
class RefundStarted:
    refund_id: int
    payment_id: int
    contract_id: int
    status: str
    provider_request: RefundOrder | None  # None: the provider has answered already
    resumed: bool  # an earlier refundPayment's refund, sent again


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    refund_id: int
    payment_id: int
    contract_id: int
    status: str
    applied: bool  # False: nothing changed (already applied, or still pending)


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID, message, field=field)


def _check_amount(amount: Decimal) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or abs(amount) > Decimal("1e9"):
        raise _invalid("amount", "The amount must be a number.")
    if amount != amount.quantize(CENT):
        raise _invalid("amount", "The amount has at most two decimal places.")
    if amount <= 0:
        raise _invalid("amount", "The amount must be above zero.")
    return amount.quantize(CENT)


def _payment_reference(payment: Any) -> str:
    """The provider's id of the payment (a sandbox payment confirmed without one gets one)."""
    return str(payment.provider_reference or f"sandbox-payment-{payment.id}")


_LOCKED_PAYMENT = (
    sa.select(
        _payments.c.id,
        _payments.c.contract_id,
        _payments.c.amount,
        _payments.c.status,
        _payments.c.provider,
        _payments.c.provider_reference,
        _subscribers.c.email,
        _subscribers.c.phone,
    )
    .select_from(_payments)
    .join(_contracts, _contracts.c.id == _payments.c.contract_id)
    .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
    .where(_payments.c.id == sa.bindparam("payment_id", type_=sa.BigInteger))
    .with_for_update(of=_payments)
)


async def start_refund(
    session: AsyncSession,
    *,
    settings: Settings,
    staff_id: int,
    payment_id: int,
    amount: Decimal,
    reason: str,
    client_address: str | None,
) -> RefundStarted:
    """A PENDING refund of `amount` of the SUCCEEDED payment `payment_id`, audited. The
    caller has checked that `staff_id` is signed-in staff.

    Raises DomainError: INVALID (amount, reason; amount above what is left: field amount);
    NOT_FOUND (paymentId); NOT_ELIGIBLE (paymentId) for a payment that has not succeeded
    or whose provider takes no refunds here; CONFLICT (amount) when a refund of another
    amount of this payment is still waiting for the provider's answer (repeat that one
    first)."""
    problems = InputProblems()
    with problems:
        amount = _check_amount(amount)
    with problems:
        why = checked_reason(reason)
    problems.raise_found()

    await begin_write(session)
    payment = (await session.execute(_LOCKED_PAYMENT, {"payment_id": payment_id})).first()
    if payment is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such payment.", field="paymentId")
    if payment.status != "SUCCEEDED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE, "Only a SUCCEEDED payment can be refunded.", field="paymentId"
        )
    if payment.provider not in REFUNDABLE_PROVIDERS or payment.provider != (
        settings.payment_provider
    ):
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE,
            f"This payment was made through {payment.provider}, which takes no refunds here.",
            field="paymentId",
        )
    refunds = (
        await session.execute(
            sa.select(
                _refunds.c.id,
                _refunds.c.amount,
                _refunds.c.status,
                _refunds.c.provider_reference,
                _refunds.c.idempotency,
            ).where(_refunds.c.payment_id == payment_id)
        )
    ).all()
    total = Decimal(payment.amount).quantize(CENT)
    now = utcnow()
    unsent = next(
        (r for r in refunds if r.status == "PENDING" and r.provider_reference is None), None
    )
    if unsent is not None:
        if Decimal(unsent.amount) != amount:
            raise DomainError(
                ErrorCode.CONFLICT,
                f"A refund of {Decimal(unsent.amount):.2f} of this payment is still waiting "
                "for the provider: repeat it first.",
                field="amount",
            )
        log.info("refund resumed", extra={"refund_id": unsent.id, "payment_id": payment_id})
        return RefundStarted(
            refund_id=unsent.id,
            payment_id=payment_id,
            contract_id=payment.contract_id,
            status="PENDING",
            provider_request=_request(
                settings, payment, unsent.id, amount, unsent.idempotency, now
            ),
            resumed=True,
        )
    refunded = sum((Decimal(r.amount) for r in refunds if r.status in LIVE_STATUSES), Decimal(0))
    left = total - refunded
    if amount > left:
        raise _invalid(
            "amount",
            f"At most {left:.2f} of this payment is left to refund ({total:.2f} paid, "
            f"{refunded:.2f} refunded or being refunded).",
        )
    key = f"kabinet-refund-{secrets.token_hex(16)}"
    refund_id = (
        await session.execute(
            sa.insert(_refunds)
            .values(
                payment_id=payment_id,
                amount=amount,
                reason=why,
                status="PENDING",
                idempotency=key,
                actor=f"staff:{staff_id}",
                created_at=now,
            )
            .returning(_refunds.c.id)
        )
    ).scalar_one()
    await record_audit(
        session,
        actor_staff_id=staff_id,
        action="refundPayment",
        target_type="Payment",
        target_id=payment_id,
        before={"refunded": refunded, "amount": total},
        after={"refund_id": refund_id, "refund_amount": amount, "refunded": refunded + amount},
        reason=why,
        client_address=client_address,
    )
    log.info("refund started", extra={"refund_id": refund_id, "payment_id": payment_id})
    return RefundStarted(
        refund_id=refund_id,
        payment_id=payment_id,
        contract_id=payment.contract_id,
        status="PENDING",
        provider_request=_request(settings, payment, refund_id, amount, key, now),
        resumed=False,
    )


def _request(
    settings: Settings, payment: Any, refund_id: int, amount: Decimal, key: str, at: datetime
) -> RefundOrder:
    return RefundOrder(
        refund_id=refund_id,
        payment_reference=_payment_reference(payment),
        amount=amount,
        receipt=receipts.provider_receipt(
            settings,
            email=payment.email,
            phone=payment.phone,
            amount=amount,
            at=at,
        ),
        idempotence_key=key,
    )


async def send_refund(settings: Settings, request: RefundOrder) -> ProviderRefund:
    """`POST /refunds` at the provider (no transaction open). Raises DomainError
    PROVIDER_UNAVAILABLE when it did not answer (the refund stays PENDING: repeat
    `refundPayment` to resume it); a refusal answers a CANCELED refund."""
    try:
        return await provider_for(settings).create_refund(request)
    except ProviderUnavailable as error:
        log.warning("refund: provider did not answer: %s", error)
        raise DomainError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "The payment provider did not answer; the refund waits. Repeat the same refund "
            "to continue (it is never made twice).",
        ) from None
    except ProviderRefused as error:
        # A refusal is final: the refund is CANCELED (apply_refund_answer), so it neither
        # blocks nor counts against another refund of the payment.
        log.error("refund: provider refused: %s", error)
        return ProviderRefund(reference=None, status="CANCELED")


_LOCKED_REFUND = (
    sa.select(
        _refunds.c.id,
        _refunds.c.payment_id,
        _refunds.c.amount,
        _refunds.c.status,
        _refunds.c.provider_reference,
        _refunds.c.actor,
        _payments.c.contract_id,
        _payments.c.amount.label("payment_amount"),
        _payments.c.confirmed_at,
        _payments.c.provider,
        _contracts.c.number,
        _contracts.c.subscriber_id,
        _subscribers.c.email,
    )
    .select_from(_refunds)
    .join(_payments, _payments.c.id == _refunds.c.payment_id)
    .join(_contracts, _contracts.c.id == _payments.c.contract_id)
    .join(_subscribers, _subscribers.c.id == _contracts.c.subscriber_id)
    .where(_refunds.c.id == sa.bindparam("refund_id", type_=sa.BigInteger))
    .with_for_update(of=_refunds)
)


async def apply_provider_refund(
    session: AsyncSession, *, settings: Settings, answer: ProviderRefund
) -> RefundOutcome | None:
    """Apply the provider's refund (read back from it) to Kabinet's refund of the same
    reference; None when Kabinet has none (not one of ours)."""
    await begin_write(session)
    if answer.reference is None:
        return None
    found = await session.scalar(
        sa.select(_refunds.c.id).where(_refunds.c.provider_reference == answer.reference)
    )
    if found is None:
        return None
    return await apply_refund_answer(
        session, settings=settings, refund_id=int(found), answer=answer
    )


async def apply_refund_answer(
    session: AsyncSession, *, settings: Settings, refund_id: int, answer: ProviderRefund
) -> RefundOutcome:
    """Apply the provider's word on a refund, exactly once (see the module docstring).
    Raises DomainError NOT_FOUND (refundId) for no such refund, CONFLICT when the provider's
    reference is not the one this refund has."""
    await begin_write(session)
    refund = (await session.execute(_LOCKED_REFUND, {"refund_id": refund_id})).first()
    if refund is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such refund.", field="refundId")
    if answer.reference is not None:
        if refund.provider_reference not in (None, answer.reference):
            raise DomainError(
                ErrorCode.CONFLICT,
                "The provider's reference is another refund's.",
                field="refundId",
            )
        if refund.provider_reference is None:
            await session.execute(
                sa.update(_refunds)
                .where(_refunds.c.id == refund_id)
                .values(provider_reference=answer.reference)
            )

    def outcome(status: str, applied: bool) -> RefundOutcome:
        return RefundOutcome(refund_id, refund.payment_id, refund.contract_id, status, applied)

    if refund.status != "PENDING" or answer.status == "PENDING":
        return outcome(refund.status, False)
    now = utcnow()
    new_status = "SUCCEEDED" if answer.status == "SUCCEEDED" else "CANCELED"
    moved = await session.execute(
        sa.update(_refunds)
        .where(_refunds.c.id == refund_id, _refunds.c.status == "PENDING")
        .values(status=new_status, succeeded_at=now if new_status == "SUCCEEDED" else None)
    )
    if rowcount(moved) != 1:  # cannot happen under the row lock
        return outcome(refund.status, False)
    if new_status == "CANCELED":
        log.warning("refund canceled by the provider", extra={"refund_id": refund_id})
        return outcome("CANCELED", True)

    amount = Decimal(refund.amount).quantize(CENT)
    await ledger.post(
        session,
        contract_id=refund.contract_id,
        kind="REFUND",
        amount=-amount,
        actor=refund.actor,
        description=f"{REFUND_DESCRIPTION} № {refund.payment_id}",
        reference=f"refund:{refund_id}",
        at=now,
    )
    refunded_before = Decimal(
        await session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(_refunds.c.amount), 0)).where(
                _refunds.c.payment_id == refund.payment_id,
                _refunds.c.status == "SUCCEEDED",
                _refunds.c.id != refund_id,
            )
        )
        or 0
    )
    # §9 "payment.refunded" (docs/events.md); the reason is staff's, not sent.
    await events.record_event(
        session,
        "payment.refunded",
        contract_number=refund.number,
        data={
            "paymentId": payment_global_id(refund.payment_id),
            "refundId": to_global_id("Refund", refund_id),
            "amount": amount,
            "currency": settings.currency,
            "provider": refund.provider,
            "refundedTotal": (refunded_before + amount).quantize(CENT),
        },
        at=now,
    )
    taken = await _take_back_points(
        session,
        settings=settings,
        subscriber_id=refund.subscriber_id,
        payment_id=refund.payment_id,
        payment_amount=Decimal(refund.payment_amount),
        refunded_before=refunded_before,
        amount=amount,
        now=now,
    )
    if refund.email:
        letter = refund_letter(
            settings,
            contract_number=refund.number,
            amount=amount,
            payment_amount=Decimal(refund.payment_amount).quantize(CENT),
            paid_at=refund.confirmed_at,
            points_taken=taken,
            refunded_at=now,
        )
        try:
            await outbox.queue_letter(
                session,
                kind="REFUND",
                recipient=refund.email,
                subject=letter.subject,
                body_text=letter.body_text,
                body_html=letter.body_html,
                at=now,
            )
        except ValueError:
            log.error("refund letter not queued: bad address", extra={"refund_id": refund_id})
    log.info("refund succeeded", extra={"refund_id": refund_id, "points_taken": taken})
    return outcome("SUCCEEDED", True)


async def _take_back_points(
    session: AsyncSession,
    *,
    settings: Settings,
    subscriber_id: int,
    payment_id: int,
    payment_amount: Decimal,
    refunded_before: Decimal,
    amount: Decimal,
    now: datetime,
) -> int:
    """Take back the points the refunded `amount` earned: what the payment's points come to
    without it (points are per full `bonus_rub_per_point`, so the earlier refunds count),
    from the payment's own accrual first, then the subscriber's other live points, never
    below zero (points spent already stay spent). An ADJUSTMENT entry; the number taken."""
    rate = settings.bonus_rub_per_point
    still_paid = payment_amount - refunded_before
    owed = points_for(still_paid, rub_per_point=rate) - points_for(
        still_paid - amount, rub_per_point=rate
    )
    if owed <= 0:
        return 0
    held = await session.scalar(
        sa.select(_accounts.c.points)
        .where(_accounts.c.subscriber_id == subscriber_id)
        .with_for_update()
    )
    if not held:
        return 0
    accruals = (
        await session.execute(
            sa.select(_entries.c.id, _entries.c.remaining)
            .where(
                _entries.c.subscriber_id == subscriber_id,
                _entries.c.kind == "ACCRUAL",
                _entries.c.remaining > 0,
            )
            .order_by(
                sa.case((_entries.c.payment_id == payment_id, 0), else_=1),
                _entries.c.expires_at,
                _entries.c.id,
            )
        )
    ).all()
    owed = min(owed, int(held))
    taken: dict[int, int] = {}
    for row in accruals:
        if owed == 0:
            break
        take = min(int(row.remaining), owed)
        taken[row.id] = take
        owed -= take
    total = sum(taken.values())
    if total == 0:
        return 0
    await session.execute(
        sa.update(_entries)
        .where(_entries.c.id.in_(list(taken)))
        .values(
            remaining=_entries.c.remaining
            - sa.case(taken, value=_entries.c.id, else_=sa.literal(0))
        )
    )
    await session.execute(
        sa.update(_accounts)
        .where(_accounts.c.subscriber_id == subscriber_id)
        .values(points=_accounts.c.points - total)
    )
    await session.execute(
        sa.insert(_entries).values(
            subscriber_id=subscriber_id,
            kind="ADJUSTMENT",
            points=-total,
            payment_id=payment_id,
            description="Баллы за возвращённый платёж",
            created_at=now,
        )
    )
    return total


async def refund_at_provider(
    reader: RequestReader, *, settings: Settings, started: RefundStarted
) -> str:
    """The second half of `refundPayment`, after the first unit of work has committed the
    PENDING refund: the provider is asked with no transaction open, then its answer is
    applied in a second unit of work. The refund's status; DomainError
    PROVIDER_UNAVAILABLE when the provider did not answer (repeat the same refund), and
    NOT_ELIGIBLE when it refused (the refund is CANCELED and blocks nothing)."""
    status = started.status
    if started.provider_request is not None:
        # No pooled connection waits idle on the provider (up to its timeout): the request
        # gives its own back and takes one again for the second unit of work.
        await reader.release()
        answer = await send_refund(settings, started.provider_request)
        async with reader.write() as session:
            outcome = await apply_refund_answer(
                session, settings=settings, refund_id=started.refund_id, answer=answer
            )
        status = outcome.status
    if status == "CANCELED":
        raise DomainError(
            ErrorCode.NOT_ELIGIBLE, "The payment provider refused this refund.", field="paymentId"
        )
    return status
