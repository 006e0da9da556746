"""Promised payments (resolvers/promised.py): the offer's rules, the fee, activation, one
open promise under concurrency, and settlement by the billing day.

The test contracts are on MOW "home-100" (590.00 a month), so with no other item the next
30 days of charges are 590.00 × 30 / days in the current month."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from models import Contract, LedgerEntry, Payment, PromisedPayment
from models.base import utcnow
from resolvers import ledger
from resolvers.billing import BillingProgress, run_billing_day
from resolvers.charges import daily_share, days_in_month
from resolvers.promised import (
    BALANCE_SUFFICIENT,
    CONTRACT_CLOSED,
    CONTRACT_TOO_NEW,
    NOTHING_TO_PROMISE,
    PROMISE_OPEN,
    PROMISE_OVERDUE,
    FeeTier,
    activate_promised_payment,
    clear_overdue_if_paid,
    open_promises,
    promise_fee,
    promised_payment_offer,
    promises_of_contract,
    repay_open_promise,
)
from resolvers.suspension import lift_if_paid
from tests.factories import make_subscriber
from tests.money.test_charges import fund, on_a_free_tariff
from tests.money.test_ledger import assert_ledger_balanced

TARIFF_FEE = Decimal("590.00")
CENT = Decimal("0.01")


def _next_30_days() -> Decimal:
    today = utcnow().date()
    return (TARIFF_FEE * 30 / days_in_month(today)).quantize(CENT)


async def _contract(
    session_factory: Any, settings: Any, *, balance: Decimal = Decimal("0"), days: int = 120
) -> int:
    made = await make_subscriber(session_factory, settings, opened_days_ago=days)
    if balance:
        await fund(session_factory, made.contract_ids[0], balance, kind="ADJUSTMENT")
    return made.contract_ids[0]


async def _offer(session_factory: Any, settings: Any, cid: int) -> Any:
    async with session_factory() as session:
        return await promised_payment_offer(session, settings=settings, contract_id=cid)


async def activate(session_factory: Any, settings: Any, cid: int, amount: str) -> Any:
    async with unit_of_work(session_factory) as session:
        return await activate_promised_payment(
            session, settings=settings, contract_id=cid, amount=Decimal(amount), actor="test"
        )


async def _top_ups(session_factory: Any, cid: int, *amounts_and_days: tuple[str, int, str]) -> None:
    """Payments (amount, days ago, status) as the webhook leaves them."""
    async with session_factory() as session:
        await begin_write(session)
        for n, (amount, days_ago, status) in enumerate(amounts_and_days):
            at = datetime.now(UTC) - timedelta(days=days_ago)
            session.add(
                Payment(
                    contract_id=cid,
                    amount=Decimal(amount),
                    method="BANK_CARD",
                    status=status,
                    idempotency_scope=f"test:{cid}",
                    idempotency_key=f"k{n}",
                    request_fingerprint="f",
                    created_at=at,
                    confirmed_at=at if status == "SUCCEEDED" else None,
                )
            )
        await session.commit()


async def _promises(session_factory: Any, cid: int) -> list[Any]:
    async with session_factory() as session:
        return (await promises_of_contract(session, [cid]))[cid]


async def _kinds(session_factory: Any, cid: int) -> list[tuple[str, Decimal]]:
    async with session_factory() as session:
        rows = (
            await session.execute(
                sa.select(LedgerEntry.kind, LedgerEntry.amount)
                .where(LedgerEntry.contract_id == cid)
                .order_by(LedgerEntry.id)
            )
        ).all()
    return [(r.kind, r.amount) for r in rows]


async def _contract_row(session_factory: Any, cid: int) -> Any:
    async with session_factory() as session:
        row = (
            await session.execute(
                sa.select(Contract.status, Contract.balance).where(Contract.id == cid)
            )
        ).one()
    return row.status, Decimal(str(row.balance)).quantize(CENT)


async def _set(session_factory: Any, statement: Any) -> None:
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(statement)
        await session.commit()


# -- the fee -------------------------------------------------------------------------------


def test_fee_tiers_at_their_boundaries(settings: Any) -> None:
    fees = {
        amount: promise_fee(settings, Decimal(amount))
        for amount in ("0.01", "100.00", "100.01", "499.99", "500.00", "500.01", "5000.00")
    }
    assert fees == {
        "0.01": Decimal("0.00"),
        "100.00": Decimal("0.00"),
        "100.01": Decimal("10.00"),
        "499.99": Decimal("10.00"),
        "500.00": Decimal("10.00"),
        "500.01": Decimal("25.00"),
        "5000.00": Decimal("25.00"),
    }


# -- the offer, rule by rule -----------------------------------------------------------------


async def test_offer_for_an_eligible_contract(session_factory: Any, settings: Any) -> None:
    # given a 120-day-old contract at zero, no top-ups
    cid = await _contract(session_factory, settings)

    # when
    offer = await _offer(session_factory, settings, cid)

    # then the monthly charges set the maximum
    assert offer.available and offer.reasons == [] and offer.messages == []
    assert offer.max_amount == Decimal("590.00") and offer.term_days == 3
    assert offer.monthly_charges == TARIFF_FEE and offer.next_charges == _next_30_days()
    assert offer.fee_tiers == [
        FeeTier(Decimal("100.00"), Decimal("0.00")),
        FeeTier(Decimal("500.00"), Decimal("10.00")),
        FeeTier(None, Decimal("25.00")),
    ]


async def test_offer_needs_a_contract_60_days_old(session_factory: Any, settings: Any) -> None:
    young = await _contract(session_factory, settings, days=59)
    old_enough = await _contract(session_factory, settings, days=60)

    offer = await _offer(session_factory, settings, young)
    assert not offer.available and offer.reasons == [CONTRACT_TOO_NEW]
    assert offer.max_amount == 0 and "60" in offer.messages[0]
    assert (await _offer(session_factory, settings, old_enough)).available


async def test_offer_refused_while_a_promise_is_open_or_overdue(
    session_factory: Any, settings: Any
) -> None:
    # given a contract with an open promise
    cid = await _contract(session_factory, settings)
    await activate(session_factory, settings, cid, "50")
    assert (await _offer(session_factory, settings, cid)).reasons == [PROMISE_OPEN]

    # when it is overdue instead (and the balance still below zero)
    await _set(
        session_factory,
        sa.update(PromisedPayment)
        .where(PromisedPayment.contract_id == cid)
        .values(status="OVERDUE"),
    )
    await fund(session_factory, cid, Decimal("-100.00"), kind="ADJUSTMENT")

    # then
    assert (await _offer(session_factory, settings, cid)).reasons == [PROMISE_OVERDUE]

    # and once the debt is paid the overdue promise no longer blocks
    await fund(session_factory, cid, Decimal("60.00"))
    async with session_factory() as session:
        await begin_write(session)
        assert await clear_overdue_if_paid(session, contract_id=cid)
        await session.commit()
    (promise,) = await _promises(session_factory, cid)
    assert promise.status == "REPAID"
    assert (await _offer(session_factory, settings, cid)).available


async def test_offer_needs_a_balance_below_the_next_30_days(
    session_factory: Any, settings: Any
) -> None:
    enough = await _contract(session_factory, settings, balance=_next_30_days())
    short = await _contract(session_factory, settings, balance=_next_30_days() - CENT)

    offer = await _offer(session_factory, settings, enough)
    assert offer.reasons == [BALANCE_SUFFICIENT] and offer.balance == _next_30_days()
    assert (await _offer(session_factory, settings, short)).available


async def test_offer_max_is_the_larger_of_charges_and_average_top_ups(
    session_factory: Any, settings: Any
) -> None:
    # given top-ups of the last 3 months: 2,000.00 succeeded (average 666.67), plus a failed
    # one and one older than 3 months that do not count
    cid = await _contract(session_factory, settings)
    await _top_ups(
        session_factory,
        cid,
        ("1500.00", 10, "SUCCEEDED"),
        ("500.00", 80, "SUCCEEDED"),
        ("3000.00", 5, "FAILED"),
        ("4000.00", 100, "SUCCEEDED"),
    )

    offer = await _offer(session_factory, settings, cid)

    # then the average beats the monthly charges, rounded down to whole roubles
    assert offer.average_top_ups == Decimal("666.67")
    assert offer.available and offer.max_amount == Decimal("666.00")


async def test_offer_max_is_capped_at_5000(session_factory: Any, settings: Any) -> None:
    cid = await _contract(session_factory, settings)
    await _top_ups(session_factory, cid, ("30000.00", 3, "SUCCEEDED"))
    offer = await _offer(session_factory, settings, cid)
    assert offer.average_top_ups == Decimal("10000.00") and offer.max_amount == Decimal("5000.00")


async def test_offer_for_closed_contracts_and_nothing_to_promise(
    session_factory: Any, settings: Any
) -> None:
    closed = await _contract(session_factory, settings)
    await _set(
        session_factory, sa.update(Contract).where(Contract.id == closed).values(status="CLOSED")
    )
    assert (await _offer(session_factory, settings, closed)).reasons == [CONTRACT_CLOSED]

    # a contract that pays nothing and never topped up, below zero: nothing to promise
    free = await _contract(session_factory, settings, balance=Decimal("-5.00"))
    async with on_a_free_tariff(session_factory, free):
        offer = await _offer(session_factory, settings, free)
    assert offer.reasons == [NOTHING_TO_PROMISE] and offer.monthly_charges == 0


async def test_offer_of_an_unknown_contract(session_factory: Any, settings: Any) -> None:
    with pytest.raises(DomainError) as error:
        await _offer(session_factory, settings, 987_654)
    assert error.value.code == ErrorCode.NOT_FOUND


# -- activation ------------------------------------------------------------------------------


async def test_activation_credits_and_charges_the_fee_as_separate_entries(
    session_factory: Any, settings: Any
) -> None:
    # given an eligible contract at zero
    cid = await _contract(session_factory, settings)
    before = utcnow()

    # when 300.00 is promised
    result = await activate(session_factory, settings, cid, "300.00")

    # then the promise is open for 3 days, the amount and the fee are two entries
    promise = result.promise
    assert (promise.status, promise.amount, promise.fee) == (
        "OPEN",
        Decimal("300.00"),
        Decimal("10.00"),
    )
    assert before + timedelta(days=3) <= promise.due_at <= utcnow() + timedelta(days=3)
    assert result.balance_after == Decimal("290.00")
    assert await _kinds(session_factory, cid) == [
        ("PROMISED_PAYMENT", Decimal("300.00")),
        ("PROMISED_PAYMENT_FEE", Decimal("-10.00")),
    ]
    assert await _contract_row(session_factory, cid) == ("ACTIVE", Decimal("290.00"))
    async with session_factory() as session:
        assert (await open_promises(session, [cid]))[cid].id == promise.id
    await assert_ledger_balanced(session_factory)

    # and a second one is refused
    with pytest.raises(DomainError) as error:
        await activate(session_factory, settings, cid, "10")
    assert error.value.code == ErrorCode.NOT_ELIGIBLE
    assert "open already" in error.value.message
    assert len(await _promises(session_factory, cid)) == 1


async def test_a_free_promise_has_no_fee_entry(session_factory: Any, settings: Any) -> None:
    cid = await _contract(session_factory, settings)
    result = await activate(session_factory, settings, cid, "100.00")
    assert result.promise.fee == 0 and result.balance_after == Decimal("100.00")
    assert await _kinds(session_factory, cid) == [("PROMISED_PAYMENT", Decimal("100.00"))]
    await assert_ledger_balanced(session_factory)


@pytest.mark.parametrize("amount", ["0", "-5", "10.001", "591", "NaN"])
async def test_activation_refuses_a_bad_amount(
    session_factory: Any, settings: Any, amount: str
) -> None:
    cid = await _contract(session_factory, settings)
    with pytest.raises(DomainError) as error:
        await activate(session_factory, settings, cid, amount)
    assert (error.value.code, error.value.field) == (ErrorCode.INVALID, "amount")
    assert await _promises(session_factory, cid) == []
    assert await _kinds(session_factory, cid) == []


async def test_activation_refuses_an_ineligible_contract(
    session_factory: Any, settings: Any
) -> None:
    cid = await _contract(session_factory, settings, days=10)
    with pytest.raises(DomainError) as error:
        await activate(session_factory, settings, cid, "100")
    assert error.value.code == ErrorCode.NOT_ELIGIBLE and "60" in error.value.message
    assert await _promises(session_factory, cid) == []


async def test_a_suspended_contract_may_take_a_promise_and_is_lifted(
    session_factory: Any, settings: Any
) -> None:
    # given a suspended contract at -50.00
    cid = await _contract(session_factory, settings, balance=Decimal("-50.00"))
    await _set(
        session_factory, sa.update(Contract).where(Contract.id == cid).values(status="SUSPENDED")
    )

    # when 100.00 is promised
    result = await activate(session_factory, settings, cid, "100")

    # then
    assert result.suspension_lifted and result.balance_after == Decimal("50.00")
    assert await _contract_row(session_factory, cid) == ("ACTIVE", Decimal("50.00"))
    await assert_ledger_balanced(session_factory)


async def test_20_concurrent_activations_give_one_promise(
    session_factory: Any, settings: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("a race needs concurrent writers: PostgreSQL only (SQLite has one writer)")
    cid = await _contract(session_factory, settings)

    async def one() -> str:
        try:
            await activate(session_factory, settings, cid, "200")
        except DomainError as error:
            return error.code
        return "OK"

    outcomes = await asyncio.gather(*(one() for _ in range(20)))

    assert sorted(outcomes) == ["NOT_ELIGIBLE"] * 19 + ["OK"]
    assert len(await _promises(session_factory, cid)) == 1
    assert await _contract_row(session_factory, cid) == ("ACTIVE", Decimal("190.00"))
    await assert_ledger_balanced(session_factory)


# -- settlement by the billing day -----------------------------------------------------------


async def _due_now(session_factory: Any, cid: int) -> None:
    await _set(
        session_factory,
        sa.update(PromisedPayment)
        .where(PromisedPayment.contract_id == cid)
        .values(due_at=utcnow() - timedelta(minutes=1)),
    )


async def test_a_due_promise_is_repaid_by_the_billing_day_when_the_balance_stays_positive(
    session_factory: Any, settings: Any
) -> None:
    # given a promise of 300 (fee 10) that fell due, and 500 more on the balance
    cid = await _contract(session_factory, settings)
    result = await activate(session_factory, settings, cid, "300")
    await fund(session_factory, cid, Decimal("500.00"), kind="ADJUSTMENT")
    await _due_now(session_factory, cid)
    today = utcnow().date()

    # when the day is billed
    summary = await run_billing_day(session_factory, settings=settings, day=today)

    # then it is charged, then the promise debited and REPAID
    charge = daily_share(TARIFF_FEE, today)
    assert (summary.promises_settled, summary.promises_overdue) == (1, 0)
    (promise,) = await _promises(session_factory, cid)
    assert promise.status == "REPAID" and promise.settled_at is not None
    assert (await _kinds(session_factory, cid))[-2:] == [
        ("CHARGE", -charge),
        ("PROMISED_PAYMENT_REPAYMENT", Decimal("-300.00")),
    ]
    assert await _contract_row(session_factory, cid) == ("ACTIVE", Decimal("490.00") - charge)
    assert result.promise.id == promise.id
    await assert_ledger_balanced(session_factory)

    # and a second run does not debit it again
    again = await run_billing_day(session_factory, settings=settings, day=today)
    assert again.promises_settled == 0
    assert await _contract_row(session_factory, cid) == ("ACTIVE", Decimal("490.00") - charge)


async def test_a_due_promise_not_covered_is_overdue_and_the_contract_suspended(
    session_factory: Any, settings: Any
) -> None:
    # given a promise of 300 (fee 10) that fell due and nothing else
    cid = await _contract(session_factory, settings)
    await activate(session_factory, settings, cid, "300")
    await _due_now(session_factory, cid)
    today = utcnow().date()

    # when the day is billed
    summary = await run_billing_day(session_factory, settings=settings, day=today)

    # then
    charge = daily_share(TARIFF_FEE, today)
    assert (summary.promises_settled, summary.promises_overdue) == (1, 1)
    assert summary.contracts_suspended == 1
    (promise,) = await _promises(session_factory, cid)
    assert promise.status == "OVERDUE"
    assert await _contract_row(session_factory, cid) == ("SUSPENDED", Decimal("-10.00") - charge)
    assert (await _offer(session_factory, settings, cid)).reasons == [PROMISE_OVERDUE]
    await assert_ledger_balanced(session_factory)

    # when the debt is paid (a credit lifts the suspension) and the next day is billed
    await fund(session_factory, cid, Decimal("100.00"))
    async with session_factory() as session:
        await begin_write(session)
        await lift_if_paid(session, settings=settings, contract_id=cid)
        await session.commit()
    later = await run_billing_day(session_factory, settings=settings, day=today + timedelta(days=1))

    # then the overdue promise is closed as REPAID
    assert later.overdue_cleared == 1
    (promise,) = await _promises(session_factory, cid)
    assert promise.status == "REPAID"
    await assert_ledger_balanced(session_factory)


async def test_a_promise_is_not_settled_before_it_is_due(
    session_factory: Any, settings: Any
) -> None:
    cid = await _contract(session_factory, settings)
    result = await activate(session_factory, settings, cid, "50")
    due_at = result.promise.due_at
    day = due_at.date()

    early = await run_billing_day(
        session_factory, settings=settings, day=day, now=due_at - timedelta(seconds=1)
    )
    assert early.promises_settled == 0
    assert (await _promises(session_factory, cid))[0].status == "OPEN"

    late = await run_billing_day(
        session_factory, settings=settings, day=day, now=due_at + timedelta(seconds=1)
    )
    assert late.promises_settled == 1
    assert (await _promises(session_factory, cid))[0].status in ("REPAID", "OVERDUE")
    await assert_ledger_balanced(session_factory)


async def test_a_top_up_and_the_settlement_racing_debit_a_promise_once(
    session_factory: Any, settings: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("a race needs concurrent writers: PostgreSQL only (SQLite has one writer)")
    # given 30 contracts, each with a due promise of 100
    made = await make_subscriber(session_factory, settings, contracts=30)
    for cid in made.contract_ids:
        await activate(session_factory, settings, cid, "100")
        await _due_now(session_factory, cid)

    settling = asyncio.Event()

    def progress(p: BillingProgress) -> None:
        if p.step == "charge" and p.done == p.total:
            settling.set()  # the charges are in: the settlement starts now

    async def top_up(cid: int, delay: float) -> None:
        # what a confirmed top-up does (resolvers/payments.py), in one transaction, started
        # as the settlement starts, staggered, holding the contract's lock a moment between
        # its steps
        await settling.wait()
        await asyncio.sleep(delay)
        async with session_factory() as session:
            await begin_write(session)
            await ledger.post(
                session, contract_id=cid, kind="TOP_UP", amount=Decimal("200.00"), actor="test"
            )
            await asyncio.sleep(0.01)
            await repay_open_promise(session, contract_id=cid, actor="test")
            await lift_if_paid(session, settings=settings, contract_id=cid)
            await session.commit()

    # when the top-ups and the billing day run at once
    await asyncio.gather(
        run_billing_day(
            session_factory,
            settings=settings,
            day=utcnow().date(),
            chunk_size=3,
            progress=progress,
        ),
        *(top_up(cid, 0.004 * n) for n, cid in enumerate(made.contract_ids)),
    )

    # then every promise was debited exactly once, by one or the other (REPAID by the top-up;
    # OVERDUE when the settlement came first and left the balance below zero until it)
    charge = daily_share(TARIFF_FEE, utcnow().date())
    winners = []
    for cid in made.contract_ids:
        async with session_factory() as session:
            repayments = (
                await session.execute(
                    sa.select(LedgerEntry.actor).where(
                        LedgerEntry.contract_id == cid,
                        LedgerEntry.kind == "PROMISED_PAYMENT_REPAYMENT",
                    )
                )
            ).all()
        assert len(repayments) == 1
        winners.append(repayments[0].actor)
        (promise,) = await _promises(session_factory, cid)
        if repayments[0].actor == "test":
            assert promise.status == "REPAID"
        else:  # OVERDUE, or REPAID again if the top-up came before the billing day's end
            assert promise.status in ("OVERDUE", "REPAID")
        assert await _contract_row(session_factory, cid) == (
            "ACTIVE",
            Decimal("200.00") - charge,
        )
    print("\nrepaid by:", {actor: winners.count(actor) for actor in set(winners)})
    await assert_ledger_balanced(session_factory)
