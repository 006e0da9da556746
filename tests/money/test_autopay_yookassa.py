"""Autopay (SPEC §7) through YooKassa, against the local YooKassa on loopback
(tests/yookassa_server.py), on SQLite and PostgreSQL: a method saved with a paid top-up
charged by the billing day (the recorded `POST /payments`: the saved method, no
confirmation, an Idempotence-Key, the 54-FZ receipt) and credited once whatever the
notifications; three charges canceled at the provider switching autopay off; the provider
down while the day charges (resumed by a rerun: one provider payment); and two billing
runs at once (PostgreSQL): one provider payment per contract."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import create_engine, create_session_factory
from core.settings import Settings
from models import (
    AutopayRule,
    AutopayRun,
    LedgerEntry,
    OutboxMessage,
    Payment,
    PaymentMethod,
    Receipt,
    Subscriber,
)
from models.base import table_of
from resolvers.billing import run_billing_day
from tests.conftest import gql
from tests.factories import make_subscriber, sign_in
from tests.money import test_yookassa
from tests.money.test_autopay import (
    DAY,
    FORGET,
    SET_AUTOPAY,
    method_gid,
    rows,
    save_method,
    set_rule,
)
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_yookassa import balance_of, control, notify, start_top_up
from tests.yookassa_server import CARD_LAST4, YooKassaServer

_payments = table_of(Payment)

# The local YooKassa and the settings that use it (tests/money/test_yookassa.py's fixtures).
yookassa = test_yookassa.yookassa
settings = test_yookassa.settings

METHODS = """
query($number: String!) {
  contract(number: $number) {
    paymentMethods { id title }
    autopay { enabled failuresInRow paymentMethod { title } }
  }
}
"""


def autopay_posts(server: YooKassaServer) -> list[Any]:
    """The `POST /payments` that charge a saved method."""
    return [
        r
        for r in server.state.api_requests("POST", "/v3/payments")
        if "payment_method_id" in r.body
    ]


def provider_payment_of(server: YooKassaServer, payment_id: int) -> str:
    (reference,) = (
        ref
        for ref, p in server.state.payments.items()
        if p["metadata"]["kabinet_payment_id"] == str(payment_id)
    )
    return reference


async def saved_card(server: YooKassaServer, session_factory: Any, contract_id: int) -> int:
    """A card saved at the provider (as a paid top-up with `save_payment_method` saves it)
    and in Kabinet."""
    reference = str(uuid.uuid4())
    server.state.saved_methods[reference] = {
        "type": "bank_card",
        "id": reference,
        "saved": True,
        "title": f"Bank card *{CARD_LAST4}",
        "card": {"last4": CARD_LAST4, "card_type": "MasterCard"},
    }
    return await save_method(session_factory, contract_id, provider="yookassa", reference=reference)


async def test_a_saved_card_pays_the_billing_days_autopay_once(
    client: Any,
    settings: Settings,
    session_factory: Any,
    yookassa: YooKassaServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given: a 100.00 top-up paid with the card saved (its notification read back)
    made = await make_subscriber(session_factory, settings)
    number, contract_id = made.contract_numbers[0], made.contract_ids[0]
    me = await sign_in(client, str(made.login))
    await start_top_up(client, me, number, "100.00", savePaymentMethod=True)
    (top_up_ref,) = yookassa.state.payments
    paid = await notify(client, await control(yookassa, f"payments/{top_up_ref}/succeed"))
    assert paid.json() == {"status": "applied", "paymentStatus": "SUCCEEDED"}
    (method,) = await rows(session_factory, PaymentMethod)
    assert method.reference == yookassa.state.payments[top_up_ref]["payment_method"]["id"]
    # the contract shows it by title; autopay is set with it
    read = (await gql(client, METHODS, {"number": number}, headers=me))["contract"]
    (shown,) = read["paymentMethods"]
    assert shown["title"] == "Card *4444" and read["autopay"] is None
    variables = {
        "input": {
            "contractNumber": number,
            "paymentMethodId": shown["id"],
            "mode": "BELOW_THRESHOLD",
            "amount": "500.00",
            "threshold": "200.00",
        }
    }
    answer = (await gql(client, SET_AUTOPAY, variables, headers=me))["setAutopay"]
    assert answer["errors"] == []
    # two failures in a row before (a success resets them)
    async with session_factory() as session:
        await session.execute(sa.update(table_of(AutopayRule)).values(failures_in_row=2))
        await session.commit()

    # when: the billing day (100.00 less the day's charge is below 200.00)
    summary = await run_billing_day(session_factory, settings=settings, day=DAY)

    # then: one autopay payment, charged at YooKassa from the saved card
    assert (summary.autopay.created, summary.autopay.succeeded) == (1, 1)
    (payment,) = await rows(session_factory, Payment, _payments.c.autopay.is_(True))
    (request,) = autopay_posts(yookassa)
    assert request.headers["idempotence-key"].startswith(f"kabinet-payment-{payment.id}-")
    assert request.body == {
        "amount": {"value": "500.00", "currency": "RUB"},
        "capture": True,
        "description": f"Автоплатёж, платёж {payment.id}",
        "metadata": {"kabinet_payment_id": str(payment.id)},
        "payment_method_id": method.reference,
        "receipt": {
            "customer": {"email": made.email},
            "items": [
                {
                    "description": "Предоплата услуг связи",
                    "quantity": "1.00",
                    "amount": {"value": "500.00", "currency": "RUB"},
                    "vat_code": 12,
                    "payment_mode": "advance",
                    "payment_subject": "service",
                }
            ],
        },
    }
    assert "confirmation" not in request.body and "save_payment_method" not in request.body
    reference = provider_payment_of(yookassa, payment.id)
    # credited once, with its receipt; the outcome recorded, the failures reset
    assert payment.status == "SUCCEEDED" and payment.provider == "yookassa"
    assert payment.provider_reference == reference
    assert payment.receipt_status == "succeeded"
    assert payment.confirmation_url is None
    (run,) = await rows(session_factory, AutopayRun)
    assert (run.payment_id, run.outcome) == (payment.id, "SUCCEEDED")
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.failures_in_row == 0 and rule.enabled

    async def credited() -> None:
        entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
        assert sorted(e.amount for e in entries) == [Decimal("100.00"), Decimal("500.00")]
        receipts = await rows(session_factory, Receipt, Receipt.payment_id == payment.id)
        assert len(receipts) == 1
        letters = await rows(session_factory, OutboxMessage, OutboxMessage.kind == "RECEIPT")
        assert len(letters) == 2
        assert (
            await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY_FAILED") == []
        )
        await assert_ledger_balanced(session_factory)

    await credited()
    balance = await balance_of(session_factory, contract_id)

    # when: the provider's notification of the success (the card shown saved), twice
    notification = await control(yookassa, f"payments/{reference}/succeed")
    assert notification["object"]["payment_method"]["saved"] is True
    with caplog.at_level(logging.WARNING):
        answers = [await notify(client, notification) for _ in range(2)]
    # then: read back, acknowledged, nothing more (no second credit, no second saved card)
    assert [a.json() for a in answers] == [
        {"status": "already-applied", "paymentStatus": "SUCCEEDED"}
    ] * 2
    await credited()
    assert await balance_of(session_factory, contract_id) == balance
    assert len(await rows(session_factory, PaymentMethod)) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    (run,) = await rows(session_factory, AutopayRun)
    assert run.outcome == "SUCCEEDED"
    # and the same day again charges nothing more
    again = await run_billing_day(session_factory, settings=settings, day=DAY)
    assert again.autopay.created == 0 and len(autopay_posts(yookassa)) == 1


async def test_three_charges_canceled_at_the_provider_switch_autopay_off(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: autopay from a saved card that the bank answers later, and declines
    made = await make_subscriber(session_factory, settings)
    number, contract_id = made.contract_numbers[0], made.contract_ids[0]
    card = await saved_card(yookassa, session_factory, contract_id)
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    await control(yookassa, "charges", {"mode": "pending"})
    me = await sign_in(client, str(made.login))
    for offset in range(3):
        # when: the billing day charges; the provider cancels it and notifies
        summary = await run_billing_day(
            session_factory, settings=settings, day=DAY + timedelta(days=offset)
        )
        assert (summary.autopay.created, summary.autopay.pending) == (1, 1)
        (payment,) = await rows(
            session_factory, Payment, _payments.c.autopay.is_(True), Payment.status == "PENDING"
        )
        reference = provider_payment_of(yookassa, payment.id)
        assert payment.provider_reference == reference
        canceled = await notify(client, await control(yookassa, f"payments/{reference}/cancel"))
        # then: read back, FAILED, its failure recorded and mailed
        assert canceled.json() == {"status": "applied", "paymentStatus": "FAILED"}
        letters = sorted(
            await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY_FAILED"),
            key=lambda m: m.id,
        )
        assert len(letters) == offset + 1
        (rule,) = await rows(session_factory, AutopayRule)
        assert rule.failures_in_row == offset + 1
        assert rule.enabled is (offset < 2)
    # the third letter says autopay is off; the first two that it will be
    assert all(m.recipient == made.email for m in letters)
    assert "выключится" in letters[0].body_text and "выключен" not in letters[1].subject
    assert "выключен" in letters[2].subject and "3-я неудача подряд" in letters[2].body_text
    read = (await gql(client, METHODS, {"number": number}, headers=me))["contract"]
    assert read["autopay"] == {
        "enabled": False,
        "failuresInRow": 3,
        "paymentMethod": {"title": "Card *4444"},
    }
    runs = await rows(session_factory, AutopayRun)
    assert [r.outcome for r in runs] == ["FAILED"] * 3
    # nothing credited; the next day charges nothing
    await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=3))
    assert len(autopay_posts(yookassa)) == 3
    assert await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP") == []
    # a repeated notification changes nothing
    again = await notify(client, await control(yookassa, f"payments/{reference}/cancel"))
    assert again.json()["status"] == "already-applied"
    assert (
        len(await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY_FAILED")) == 3
    )


@pytest.mark.parametrize("fault", ["503", "lose"])
async def test_the_provider_down_while_the_day_charges_is_resumed_by_a_rerun(
    settings: Settings, session_factory: Any, yookassa: YooKassaServer, fault: str
) -> None:
    # given: autopay from a saved card; the provider fails (the charge not made, or made
    # but its answer lost)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await saved_card(yookassa, session_factory, contract_id)
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    await control(yookassa, "fault", {"mode": fault})
    # when: the billing day (its clock a few minutes back: a rerun comes later)
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    summary = await run_billing_day(session_factory, settings=settings, day=DAY, now=earlier)
    # then: the payment is PENDING, nothing credited
    assert (summary.autopay.created, summary.autopay.pending) == (1, 1)
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "PENDING" and payment.provider_reference is None
    assert await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP") == []
    assert (
        await rows(session_factory, AutopayRun, table_of(AutopayRun).c.outcome.is_not(None)) == []
    )

    # when: the provider is back; the day is run again
    await control(yookassa, "fault", {"mode": None})
    rerun = await run_billing_day(session_factory, settings=settings, day=DAY)
    # then: the same payment charged with the same Idempotence-Key: one provider payment
    assert (rerun.autopay.created, rerun.autopay.succeeded) == (0, 1)
    first, second = autopay_posts(yookassa)
    assert first.headers["idempotence-key"] == second.headers["idempotence-key"]
    assert first.body == second.body
    assert len(yookassa.state.payments) == 1
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "SUCCEEDED"
    assert payment.provider_reference == provider_payment_of(yookassa, payment.id)
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert [e.amount for e in entries] == [Decimal("500.00")]
    (run,) = await rows(session_factory, AutopayRun)
    assert run.outcome == "SUCCEEDED"
    await assert_ledger_balanced(session_factory)
    # when: once more: nothing asked, nothing charged
    await run_billing_day(session_factory, settings=settings, day=DAY)
    assert len(autopay_posts(yookassa)) == 2


async def test_two_billing_runs_at_once_make_one_provider_payment_per_contract(
    settings: Settings, session_factory: Any, yookassa: YooKassaServer, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("races are run on PostgreSQL; SQLite serialises writers")
    # given: eight contracts whose rule fires, each with a card saved at YooKassa
    contract_ids = []
    for _ in range(8):
        made = await make_subscriber(session_factory, settings)
        card = await saved_card(yookassa, session_factory, made.contract_ids[0])
        await set_rule(session_factory, settings, made.contract_ids[0], card)
        contract_ids.append(made.contract_ids[0])
    engines = [create_engine(settings) for _ in range(2)]
    try:
        # when: two hosts run the same billing day at once
        summaries = await asyncio.gather(
            *(
                run_billing_day(create_session_factory(engine), settings=settings, day=DAY)
                for engine in engines
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()
    # then: one payment per contract, one provider payment each, credited once
    assert sum(s.autopay.created for s in summaries) == 8
    made_payments = await rows(session_factory, Payment)
    assert sorted(p.contract_id for p in made_payments) == sorted(contract_ids)
    assert all(p.status == "SUCCEEDED" for p in made_payments)
    assert len(autopay_posts(yookassa)) == 8
    kabinet_ids = sorted(
        int(p["metadata"]["kabinet_payment_id"]) for p in yookassa.state.payments.values()
    )
    assert kabinet_ids == sorted(p.id for p in made_payments)
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert sorted(e.contract_id for e in entries) == sorted(contract_ids)
    await assert_ledger_balanced(session_factory)


async def test_the_next_days_run_resumes_a_charge_the_provider_did_not_answer(
    settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a day whose charge the provider did not answer (its clock minutes back)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await saved_card(yookassa, session_factory, contract_id)
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    await control(yookassa, "fault", {"mode": "503"})
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    await run_billing_day(session_factory, settings=settings, day=DAY, now=earlier)
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "PENDING" and payment.provider_reference is None
    # when: the provider is back; the next day is billed
    await control(yookassa, "fault", {"mode": None})
    summary = await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(1))
    # then: no new payment; the waiting one charged with its own Idempotence-Key, once
    assert (summary.autopay.created, summary.autopay.succeeded) == (0, 1)
    first, second = autopay_posts(yookassa)
    assert first.headers["idempotence-key"] == second.headers["idempotence-key"]
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "SUCCEEDED" and len(yookassa.state.payments) == 1
    (run,) = await rows(session_factory, AutopayRun)
    assert (run.day, run.outcome) == (DAY, "SUCCEEDED")
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert [e.amount for e in entries] == [Decimal("500.00")]
    await assert_ledger_balanced(session_factory)


async def test_a_resumed_charge_the_provider_refuses_waits_for_its_notification(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a charge made at the provider whose answer was lost (the day's clock minutes
    # back), then the subscriber's address changes (the receipt, so the request, differs)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await saved_card(yookassa, session_factory, contract_id)
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    await control(yookassa, "fault", {"mode": "lose"})
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    await run_billing_day(session_factory, settings=settings, day=DAY, now=earlier)
    await control(yookassa, "fault", {"mode": None})
    async with session_factory() as session:
        await session.execute(
            sa.update(table_of(Subscriber))
            .where(table_of(Subscriber).c.id == made.id)
            .values(email="moved@example.org")
        )
        await session.commit()
    # when: the next run asks again with the same Idempotence-Key
    summary = await run_billing_day(session_factory, settings=settings, day=DAY)
    # then: refused as another request; no decline counted, the payment waits
    assert (summary.autopay.failed, summary.autopay.pending) == (0, 1)
    first, second = autopay_posts(yookassa)
    assert first.headers["idempotence-key"] == second.headers["idempotence-key"]
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "PENDING"
    assert await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY_FAILED") == []
    # when: the provider's notification of the charge it made
    reference = provider_payment_of(yookassa, payment.id)
    paid = await notify(client, await control(yookassa, f"payments/{reference}/succeed"))
    # then: credited once, the outcome a success
    assert paid.json() == {"status": "applied", "paymentStatus": "SUCCEEDED"}
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert [e.amount for e in entries] == [Decimal("500.00")]
    (run,) = await rows(session_factory, AutopayRun)
    assert run.outcome == "SUCCEEDED"
    await assert_ledger_balanced(session_factory)


async def test_a_charge_left_waiting_is_not_resumed_once_its_card_is_forgotten(
    client: Any, settings: Settings, session_factory: Any, yookassa: YooKassaServer
) -> None:
    # given: a day whose charge the provider did not answer (its clock minutes back)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await saved_card(yookassa, session_factory, contract_id)
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    await control(yookassa, "fault", {"mode": "503"})
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    await run_billing_day(session_factory, settings=settings, day=DAY, now=earlier)
    (run,) = await rows(session_factory, AutopayRun)
    assert run.payment_method_id == card
    # when: the subscriber forgets the card; the provider is back; the next day is billed
    me = await sign_in(client, str(made.login))
    forget = {"input": {"paymentMethodId": method_gid(card)}}
    assert (await gql(client, FORGET, forget, headers=me))["forgetPaymentMethod"]["errors"] == []
    await control(yookassa, "fault", {"mode": None})
    summary = await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(1))
    # then: the card is never charged again; the payment waits for the top-up expiry
    assert (summary.autopay.created, summary.autopay.succeeded) == (0, 0)
    assert len(autopay_posts(yookassa)) == 1  # the first, unanswered, attempt only
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "PENDING" and payment.provider_reference is None
