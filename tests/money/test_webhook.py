"""`POST /webhooks/payments` over HTTP, and the sandbox page that sends it (SPEC §3 "Money",
§4 "Payment provider webhook"): a confirmation is applied exactly once, whatever the
retries and races, and a successful one does everything a top-up does in one transaction."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.db import STATEMENT_LISTENERS, begin_write, unit_of_work
from core.ids import to_global_id
from core.payment_providers import payment_global_id, sign
from core.settings import Settings
from kabinet.app import create_app
from models import (
    BonusAccount,
    BonusEntry,
    Contract,
    LedgerEntry,
    OutboxMessage,
    Payment,
    PaymentEvent,
    PromisedPayment,
    Receipt,
)
from models.base import utcnow
from resolvers import payments
from resolvers.bonus import add_months
from resolvers.payments import EventOutcome, apply_provider_event
from tests.conftest import fast_settings
from tests.factories import make_subscriber
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import (
    RACES_NEED_POSTGRESQL,
    balance_of,
    count,
    deliver,
    event_body,
    mount_payment_routes,
    payment_row,
    post_event,
    post_ledger,
    top_up,
)
from tests.money.test_promised import activate


@pytest.fixture
def http(app: Any, settings: Settings, client: httpx.AsyncClient) -> httpx.AsyncClient:
    mount_payment_routes(app, settings)
    return client


async def _unchanged(session_factory: Any, payment_id: int, contract_id: int) -> None:
    """Nothing moved: the payment is PENDING and no money, event or receipt exists."""
    assert (await payment_row(session_factory, payment_id)).status == "PENDING"
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    for model in (LedgerEntry, PaymentEvent, Receipt, BonusEntry, OutboxMessage):
        assert await count(session_factory, model) == 0, model


# -- a successful confirmation ------------------------------------------------------------


async def test_a_confirmation_credits_once_with_points_receipt_and_letter(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="503.00")
    # when
    response = await deliver(http, settings, payment.id, reference="prov-abc-1")
    # then: the answer
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "applied", "paymentStatus": "SUCCEEDED"}
    # the payment
    row = await payment_row(session_factory, payment.id)
    assert (row.status, row.provider_reference) == ("SUCCEEDED", "prov-abc-1")
    assert row.confirmed_at is not None
    # the balance and its ledger row
    assert await balance_of(session_factory, contract_id) == Decimal("503.00")
    async with session_factory() as session:
        (entry,) = (await session.scalars(sa.select(LedgerEntry))).all()
        (event,) = (await session.scalars(sa.select(PaymentEvent))).all()
        (accrual,) = (await session.scalars(sa.select(BonusEntry))).all()
        account = await session.get(BonusAccount, made.id)
        (receipt,) = (await session.scalars(sa.select(Receipt))).all()
        (letter,) = (await session.scalars(sa.select(OutboxMessage))).all()
    assert (entry.kind, entry.amount, entry.balance_after) == (
        "TOP_UP",
        Decimal("503.00"),
        Decimal("503.00"),
    )
    assert (entry.reference, entry.actor) == (f"payment:{payment.id}", "provider:sandbox")
    assert (event.payment_id, event.status, event.provider_reference) == (
        payment.id,
        "SUCCEEDED",
        "prov-abc-1",
    )
    # points: one per full 5 RUB, expiring 12 calendar months later
    assert account is not None and account.points == 100
    assert (accrual.kind, accrual.points, accrual.remaining, accrual.payment_id) == (
        "ACCRUAL",
        100,
        100,
        payment.id,
    )
    assert accrual.expires_at == add_months(accrual.created_at, 12)
    # the receipt
    assert receipt.payment_id == payment.id and receipt.total == Decimal("503.00")
    # VAT 22% since 2026-01-01 (was 20%: 83.83): 503 × 22 / 122 = 90.7049…
    assert (receipt.vat_rate, receipt.vat_amount) == (Decimal("22.00"), Decimal("90.70"))
    assert receipt.contract_number == made.contract_numbers[0]
    assert receipt.payer_email == made.email and receipt.provider_reference == "prov-abc-1"
    # the letter, in the outbox, linking to the printable receipt
    assert (letter.kind, letter.recipient, letter.sent_at) == ("RECEIPT", made.email, None)
    assert receipt.number in letter.subject
    assert f"http://testserver/receipts/{to_global_id('Payment', payment.id)}" in letter.body_text
    await assert_ledger_balanced(session_factory)


async def test_a_replayed_confirmation_credits_once(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    body = event_body(payment.id, "SUCCEEDED", "prov-1")
    # when: the provider delivers it five times
    answers = [await post_event(http, settings, body) for _ in range(5)]
    # then
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["status"] for a in answers] == ["applied"] + ["already-applied"] * 4
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    for model, expected in (
        (LedgerEntry, 1),
        (PaymentEvent, 1),
        (Receipt, 1),
        (BonusEntry, 1),
        (OutboxMessage, 1),
    ):
        assert await count(session_factory, model) == expected, model
    async with session_factory() as session:
        account = await session.get(BonusAccount, made.id)
    assert account is not None and account.points == 100
    await assert_ledger_balanced(session_factory)


async def test_50_concurrent_deliveries_of_one_event_credit_once(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip(RACES_NEED_POSTGRESQL)
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], amount="777.77"
    )
    body = event_body(payment.id, "SUCCEEDED", "prov-race")
    # when
    answers = await asyncio.gather(*(post_event(http, settings, body) for _ in range(50)))
    # then
    assert [a.status_code for a in answers] == [200] * 50
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("applied") == 1 and statuses.count("already-applied") == 49
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("777.77")
    for model in (LedgerEntry, PaymentEvent, Receipt, BonusEntry, OutboxMessage):
        assert await count(session_factory, model) == 1, model
    await assert_ledger_balanced(session_factory)


async def test_one_provider_reference_raced_by_several_payments_credits_one(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, backend: str
) -> None:
    """The one-statement way checks the reference without a lock (its read takes none): two
    payments confirmed at once with the same reference both pass that check, and the unique
    (provider, reference) stops the second at its write. The driver's unique violation
    must reach the webhook as SQLAlchemy's IntegrityError, so that it is retried and then
    refused as the conflict it is, never a 500 and never a second credit."""
    if backend != "postgresql":
        pytest.skip(RACES_NEED_POSTGRESQL)
    # given: pending payments on different contracts (no contract lock orders them)
    subscribers = [await make_subscriber(session_factory, settings) for _ in range(8)]
    payments = [
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount="250.00")
        for made in subscribers
    ]
    # when: every one is confirmed at once with the same provider reference
    answers = await asyncio.gather(
        *(
            post_event(http, settings, event_body(p.id, "SUCCEEDED", "prov-shared"))
            for p in payments
        )
    )
    # then: one applied, the others refused as a conflict; the money moved once
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [400] * 7, [a.text for a in answers]
    assert all("another payment" in a.json()["message"] for a in answers if a.status_code == 400)
    credited = [await balance_of(session_factory, made.contract_ids[0]) for made in subscribers]
    assert sorted(credited) == [Decimal("0.00")] * 7 + [Decimal("250.00")]
    assert await count(session_factory, LedgerEntry) == 1
    assert await count(session_factory, PaymentEvent) == 1
    await assert_ledger_balanced(session_factory)


async def test_concurrent_confirmations_are_read_and_written_in_batches_each_once(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, backend: str
) -> None:
    """PostgreSQL: the confirmations that arrive while one is read or written are read, and
    then written, together (one statement each), and each is credited once with everything
    a top-up does."""
    if backend != "postgresql":
        pytest.skip(RACES_NEED_POSTGRESQL)
    # given: 12 subscribers with a pending top-up each
    subscribers = [await make_subscriber(session_factory, settings) for _ in range(12)]
    pending = [
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount="120.00")
        for made in subscribers
    ]
    statements: list[str] = []
    STATEMENT_LISTENERS.append(statements.append)
    try:
        # when: all of them are confirmed at once
        answers = await asyncio.gather(*(deliver(http, settings, p.id) for p in pending))
    finally:
        STATEMENT_LISTENERS.remove(statements.append)
    # then: fewer writes than confirmations, and every one applied once
    assert {a.json()["status"] for a in answers} == {"applied"}
    writes = [s for s in statements if s.lstrip().startswith("WITH plain AS")]
    assert 1 <= len(writes) < 12, len(writes)
    for made in subscribers:
        assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("120.00")
    for model in (LedgerEntry, PaymentEvent, Receipt, BonusEntry, OutboxMessage):
        assert await count(session_factory, model) == 12, model
    async with session_factory() as session:
        accounts = (await session.scalars(sa.select(BonusAccount))).all()
    assert sorted(account.points for account in accounts) == [24] * 12
    await assert_ledger_balanced(session_factory)


async def test_100_concurrent_confirmations_on_one_contract_add_up(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip(RACES_NEED_POSTGRESQL)
    # given: 100 pending payments of different amounts on one contract
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    amounts = [Decimal("10.01") + Decimal(i) * Decimal("3.37") for i in range(100)]
    payments = [
        await top_up(session_factory, settings, contract_id=contract_id, amount=amount)
        for amount in amounts
    ]
    # when
    answers = await asyncio.gather(*(deliver(http, settings, p.id) for p in payments))
    # then
    assert [a.status_code for a in answers] == [200] * 100
    assert {a.json()["status"] for a in answers} == {"applied"}
    assert await balance_of(session_factory, contract_id) == sum(amounts)
    assert await count(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP") == 100
    async with session_factory() as session:
        numbers = (await session.scalars(sa.select(Receipt.number))).all()
        account = await session.get(BonusAccount, made.id)
        afters = (await session.scalars(sa.select(LedgerEntry.balance_after))).all()
    assert len(set(numbers)) == 100
    assert account is not None
    assert account.points == sum(int(a // 5) for a in amounts)
    # every credit saw the one before it: the running balances are all distinct
    assert len(set(afters)) == 100 and max(afters) == sum(amounts)
    await assert_ledger_balanced(session_factory)


# -- refused deliveries -------------------------------------------------------------------


async def test_a_bad_signature_is_401_and_changes_nothing(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    body = event_body(payment.id)
    other_secret = fast_settings(settings.database_url, webhook_secret="another-secret-" * 3)
    for signature in (
        None,
        "",
        "0" * 64,
        sign(settings, body + b" "),  # a signature of other bytes
        sign(other_secret, body),
        sign(settings, body)[:-2],
        "sha256=" + sign(settings, body),
    ):
        response = await post_event(http, settings, body, signature=signature)
        assert response.status_code == 401, signature
        assert response.json() == {"error": "bad-signature"}
    await _unchanged(session_factory, payment.id, made.contract_ids[0])


async def test_the_signature_is_checked_before_the_body_is_parsed(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    response = await post_event(http, settings, b"not json at all", signature="0" * 64)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"SUCCEEDED"',
        b"{}",
        b'{"status": "SUCCEEDED", "providerReference": "r"}',
        b'{"paymentId": 1, "status": "SUCCEEDED", "providerReference": "r"}',
        b'{"paymentId": "not-an-id", "status": "SUCCEEDED", "providerReference": "r"}',
        b'{"paymentId": "%(contract)s", "status": "SUCCEEDED", "providerReference": "r"}',
        b'{"paymentId": "%(payment)s", "status": "PAID", "providerReference": "r"}',
        b'{"paymentId": "%(payment)s", "status": "succeeded", "providerReference": "r"}',
        b'{"paymentId": "%(payment)s", "status": "PENDING", "providerReference": "r"}',
        b'{"paymentId": "%(payment)s", "status": "SUCCEEDED", "providerReference": 5}',
        b'{"paymentId": "%(payment)s", "status": "SUCCEEDED"}',
        b'{"paymentId": "%(payment)s", "status": "SUCCEEDED", "providerReference": "%(long)s"}',
    ],
)
async def test_a_malformed_body_is_400_and_changes_nothing(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, payload: bytes
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    body = payload.replace(b"%(payment)s", payment_global_id(payment.id).encode())
    body = body.replace(b"%(contract)s", str(to_global_id("Contract", payment.id)).encode())
    body = body.replace(b"%(long)s", b"r" * 101)
    response = await post_event(http, settings, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad-body"
    await _unchanged(session_factory, payment.id, made.contract_ids[0])


async def test_an_unknown_payment_is_404(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    response = await deliver(http, settings, payment.id + 1000)
    assert response.status_code == 404
    assert response.json() == {"error": "unknown-payment"}
    await _unchanged(session_factory, payment.id, made.contract_ids[0])


async def test_a_large_body_is_413(http: httpx.AsyncClient, settings: Settings) -> None:
    body = json.dumps({"paymentId": "x", "pad": "x" * 17_000}).encode()
    response = await post_event(http, settings, body)
    assert response.status_code == 413


async def test_only_post_is_allowed(http: httpx.AsyncClient) -> None:
    response = await http.get("/webhooks/payments")
    assert response.status_code == 405


# -- final is final -----------------------------------------------------------------------


async def test_a_success_after_a_failure_is_ignored(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    failed = await deliver(http, settings, payment.id, "FAILED", reference="prov-f")
    assert failed.json() == {"status": "applied", "paymentStatus": "FAILED"}
    # when
    late = await deliver(http, settings, payment.id, "SUCCEEDED", reference="prov-s")
    # then: acknowledged, no effect
    assert late.status_code == 200
    assert late.json() == {"status": "already-applied", "paymentStatus": "FAILED"}
    row = await payment_row(session_factory, payment.id)
    assert (row.status, row.provider_reference) == ("FAILED", "prov-f")
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("0.00")
    for model in (LedgerEntry, Receipt, BonusEntry, OutboxMessage):
        assert await count(session_factory, model) == 0, model
    assert await count(session_factory, PaymentEvent) == 1
    await assert_ledger_balanced(session_factory)


async def test_a_failure_after_a_success_is_ignored(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await deliver(http, settings, payment.id, "SUCCEEDED")
    late = await deliver(http, settings, payment.id, "FAILED")
    assert late.json() == {"status": "already-applied", "paymentStatus": "SUCCEEDED"}
    assert (await payment_row(session_factory, payment.id)).status == "SUCCEEDED"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


# -- promised payment and suspension ------------------------------------------------------


async def test_a_top_up_repays_an_open_promised_payment(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given: an open promise of 300, credited as its own ledger entry
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        promise = PromisedPayment(
            contract_id=contract_id,
            amount=Decimal("300.00"),
            fee=Decimal("10.00"),
            due_at=utcnow() + timedelta(days=3),
        )
        session.add(promise)
        await session.commit()
    await post_ledger(session_factory, contract_id, "PROMISED_PAYMENT", "300.00")
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="500.00")
    # when
    response = await deliver(http, settings, payment.id)
    # then: credited, then the promise is repaid in full
    assert response.status_code == 200
    async with session_factory() as session:
        repaid = await session.get(PromisedPayment, promise.id)
        entries = (await session.scalars(sa.select(LedgerEntry).order_by(LedgerEntry.id))).all()
    assert repaid is not None and repaid.status == "REPAID" and repaid.settled_at is not None
    assert [(e.kind, e.amount) for e in entries] == [
        ("PROMISED_PAYMENT", Decimal("300.00")),
        ("TOP_UP", Decimal("500.00")),
        ("PROMISED_PAYMENT_REPAYMENT", Decimal("-300.00")),
    ]
    assert entries[-1].actor == "provider:sandbox"
    assert await balance_of(session_factory, contract_id) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


async def _suspend_with_debt(session_factory: Any, contract_id: int, debt: str) -> None:
    await post_ledger(session_factory, contract_id, "CHARGE", f"-{debt}")
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract).where(Contract.id == contract_id).values(status="SUSPENDED")
        )
        await session.commit()


async def _status(session_factory: Any, contract_id: int) -> str:
    async with session_factory() as session:
        return str(
            await session.scalar(sa.select(Contract.status).where(Contract.id == contract_id))
        )


async def test_a_top_up_lifts_a_suspension_only_at_zero_or_more(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given: suspended with a debt of 200
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await _suspend_with_debt(session_factory, contract_id, "200.00")
    # when: 150 arrive, the balance stays below zero
    first = await top_up(session_factory, settings, contract_id=contract_id, amount="150.00")
    await deliver(http, settings, first.id)
    # then
    assert await balance_of(session_factory, contract_id) == Decimal("-50.00")
    assert await _status(session_factory, contract_id) == "SUSPENDED"
    # when: 50 more bring it to exactly zero
    second = await top_up(session_factory, settings, contract_id=contract_id, amount="50.00")
    await deliver(http, settings, second.id)
    # then
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    assert await _status(session_factory, contract_id) == "ACTIVE"
    await assert_ledger_balanced(session_factory)


async def test_a_top_up_repays_the_promise_before_deciding_on_the_suspension(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given: suspended at -100 with an open promise of 200 (balance -100 includes it)
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            PromisedPayment(
                contract_id=contract_id,
                amount=Decimal("200.00"),
                fee=Decimal("0.00"),
                due_at=utcnow() + timedelta(days=3),
            )
        )
        await session.commit()
    await post_ledger(session_factory, contract_id, "PROMISED_PAYMENT", "200.00")
    await _suspend_with_debt(session_factory, contract_id, "300.00")
    # when: 250 arrive: -100 + 250 - 200 = -50
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="250.00")
    await deliver(http, settings, payment.id)
    # then: still suspended
    assert await balance_of(session_factory, contract_id) == Decimal("-50.00")
    assert await _status(session_factory, contract_id) == "SUSPENDED"
    await assert_ledger_balanced(session_factory)


async def test_a_top_up_clears_an_overdue_promise_only_at_zero_or_more(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    """An OVERDUE promise was debited at settlement; money that brings the balance back to
    ≥ 0 marks it REPAID (and lifts the suspension), money that does not leaves both."""
    # given: suspended with a debt of 200 and an overdue promise
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            PromisedPayment(
                contract_id=contract_id,
                amount=Decimal("200.00"),
                fee=Decimal("0.00"),
                due_at=utcnow() - timedelta(days=1),
                status="OVERDUE",
            )
        )
        await session.commit()
    await _suspend_with_debt(session_factory, contract_id, "200.00")

    async def promise_status() -> str:
        async with session_factory() as session:
            return str(
                await session.scalar(
                    sa.select(PromisedPayment.status).where(
                        PromisedPayment.contract_id == contract_id
                    )
                )
            )

    # when: 150 arrive, the balance stays below zero
    first = await top_up(session_factory, settings, contract_id=contract_id, amount="150.00")
    await deliver(http, settings, first.id)
    # then: nothing is cleared
    assert await promise_status() == "OVERDUE"
    assert await _status(session_factory, contract_id) == "SUSPENDED"
    # when: 50 more bring it to zero
    second = await top_up(session_factory, settings, contract_id=contract_id, amount="50.00")
    await deliver(http, settings, second.id)
    # then
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    assert await promise_status() == "REPAID"
    assert await _status(session_factory, contract_id) == "ACTIVE"
    await assert_ledger_balanced(session_factory)


async def test_no_letter_without_an_email(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, email=None)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    assert (await deliver(http, settings, payment.id)).status_code == 200
    assert await count(session_factory, Receipt, Receipt.payer_email.is_(None)) == 1
    assert await count(session_factory, OutboxMessage) == 0
    await assert_ledger_balanced(session_factory)


async def test_a_subscriber_without_a_bonus_account_gets_one(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, registered=False)
    payment = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], amount="24.99"
    )
    await deliver(http, settings, payment.id)
    async with session_factory() as session:
        account = await session.get(BonusAccount, made.id)
    assert account is not None and account.points == 4
    await assert_ledger_balanced(session_factory)


# -- the sandbox --------------------------------------------------------------------------


async def test_the_sandbox_page_shows_the_payment(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(
        session_factory, settings, contract_id=made.contract_ids[0], amount="1234.50"
    )
    response = await http.get(payment.confirmation_url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    assert made.contract_numbers[0] in page and "1\u00a0234,50" in page
    assert 'value="pay"' in page and 'value="fail"' in page
    assert "<script" not in page and "http" not in page.split("</title>", 1)[1]
    await _unchanged(session_factory, payment.id, made.contract_ids[0])


async def test_the_sandbox_pay_button_credits_through_the_webhook(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    url = payment.confirmation_url
    # when: the form is submitted from the page itself
    response = await http.post(
        url,
        data={"outcome": "pay"},
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    )
    # then
    assert response.status_code == 200, response.text
    assert f'href="/receipts/{payment_global_id(payment.id)}"' in response.text
    row = await payment_row(session_factory, payment.id)
    assert row.status == "SUCCEEDED" and row.provider_reference.startswith("sandbox-")
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    assert await count(session_factory, Receipt) == 1
    # a second click changes nothing
    again = await http.post(url, data={"outcome": "pay"})
    assert again.status_code == 200 and "ничего не изменило" in again.text
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    # the page now says it is paid, without buttons
    page = await http.get(url)
    assert 'value="pay"' not in page.text
    await assert_ledger_balanced(session_factory)


async def test_the_sandbox_fail_button_and_json(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    failed = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    paid = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    response = await http.post(failed.confirmation_url, json={"outcome": "fail"})
    assert response.status_code == 200
    assert response.json() == {"status": "applied", "paymentStatus": "FAILED", "receiptUrl": None}
    response = await http.post(paid.confirmation_url, json={"outcome": "pay"})
    gid = payment_global_id(paid.id)
    assert response.json() == {
        "status": "applied",
        "paymentStatus": "SUCCEEDED",
        "receiptUrl": f"/receipts/{gid}",
    }
    assert (await payment_row(session_factory, failed.id)).status == "FAILED"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


async def test_the_sandbox_refuses_cross_site_and_bad_input(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    url = payment.confirmation_url
    cross = await http.post(url, data={"outcome": "pay"}, headers={"Sec-Fetch-Site": "cross-site"})
    foreign = await http.post(
        url, data={"outcome": "pay"}, headers={"Origin": "https://evil.example"}
    )
    bad = await http.post(url, data={"outcome": "steal"})
    empty = await http.post(url)
    twice = await http.post(
        url,
        content=b"outcome=pay&outcome=fail",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (cross.status_code, foreign.status_code) == (403, 403)
    assert (bad.status_code, empty.status_code, twice.status_code) == (400, 400, 400)
    unknown = await http.get(f"/sandbox/pay/{payment_global_id(payment.id + 1000)}")
    garbage = await http.get("/sandbox/pay/not-an-id")
    assert (unknown.status_code, garbage.status_code) == (404, 404)
    await _unchanged(session_factory, payment.id, made.contract_ids[0])


async def test_there_is_no_sandbox_with_an_external_provider(
    migrated_url: str, engine: Any
) -> None:
    settings = fast_settings(
        migrated_url,
        payment_provider="external",
        payment_provider_url="https://pay.example/{payment_id}",
    )
    app = create_app(settings)
    mount_payment_routes(app, settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get(f"/sandbox/pay/{payment_global_id(1)}")
            webhook = await client.post("/webhooks/payments", content=b"{}")
    finally:
        await app.state.engine.dispose()
    assert response.status_code == 404
    assert webhook.status_code == 401  # the webhook itself is there


def test_there_is_no_sandbox_in_production() -> None:
    from kabinet.web.payments import payment_routes

    settings = Settings(env="production", secret_key="k" * 40, webhook_secret="w" * 40)
    paths = {route.path for route in payment_routes(settings)}
    assert paths == {"/webhooks/payments", "/receipts/{payment_id}"}


async def test_the_sandbox_runs_the_webhook_signature_check(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, monkeypatch: Any
) -> None:
    """The sandbox signs with the secret and the webhook checks it: a sandbox whose
    signature were wrong would be refused like any forged call."""
    import kabinet.web.payments as web

    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    monkeypatch.setattr(web, "sign", lambda _settings, _body: "0" * 64)
    response = await http.post(payment.confirmation_url, json={"outcome": "pay"})
    assert response.status_code == 401
    await _unchanged(session_factory, payment.id, made.contract_ids[0])


async def test_the_payments_table_keeps_one_row_per_event(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await deliver(http, settings, payment.id)
    assert await count(session_factory, Payment) == 1
    assert await count(session_factory, PaymentEvent, PaymentEvent.payment_id == payment.id) == 1


# -- database conflicts -------------------------------------------------------------------


class _FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


async def test_serialization_failures_and_deadlocks_are_retried(
    session_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kabinet.web.payments as web

    # given: the first two attempts lose to PostgreSQL's conflict detection
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    failures = iter(["40001", "40P01"])
    real_apply = web.apply_provider_event

    async def flaky(session: Any, **kwargs: Any) -> Any:
        code = next(failures, None)
        if code is not None:
            raise sa.exc.OperationalError("UPDATE …", {}, _FakeDriverError(code))
        return await real_apply(session, **kwargs)

    monkeypatch.setattr(web, "apply_provider_event", flaky)
    body = event_body(payment.id)
    # when
    answer = await web.process_webhook(
        session_factory, settings, body=body, signature=sign(settings, body)
    )
    # then
    assert (answer.status_code, answer.body["status"]) == (200, "applied")
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("500.00")
    await assert_ledger_balanced(session_factory)


async def test_other_database_errors_are_not_retried(
    session_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kabinet.web.payments as web

    calls = 0

    async def broken(session: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise sa.exc.OperationalError("SELECT …", {}, _FakeDriverError("53300"))

    monkeypatch.setattr(web, "apply_provider_event", broken)
    body = event_body(1)
    with pytest.raises(sa.exc.OperationalError):
        await web.process_webhook(
            session_factory, settings, body=body, signature=sign(settings, body)
        )
    assert calls == 1  # the provider gets a 500 and retries later; nothing was applied


async def test_a_payment_of_a_contract_closed_meanwhile_is_still_credited(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    """The provider has taken the money: it lands on the contract (a refund is staff's
    decision), never in nowhere."""
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id)
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Contract).where(Contract.id == contract_id).values(status="CLOSED")
        )
        await session.commit()
    assert (await deliver(http, settings, payment.id)).status_code == 200
    assert await balance_of(session_factory, contract_id) == Decimal("500.00")
    assert await _status(session_factory, contract_id) == "CLOSED"
    await assert_ledger_balanced(session_factory)


# -- the common case in one statement (PostgreSQL) ----------------------------------------


async def _confirm(session_factory: Any, settings: Settings, payment_id: int) -> EventOutcome:
    async with unit_of_work(session_factory) as session:
        return await apply_provider_event(
            session,
            settings=settings,
            payment_id=payment_id,
            status="SUCCEEDED",
            provider_reference=f"prov-{payment_id}",
        )


async def _written_for(session_factory: Any, payment_id: int, contract_id: int) -> dict[str, Any]:
    """What a confirmation wrote, without ids, times and the payment's own numbers."""
    async with session_factory() as session:
        entries = (
            await session.scalars(
                sa.select(LedgerEntry)
                .where(LedgerEntry.contract_id == contract_id)
                .order_by(LedgerEntry.id)  # type: ignore[arg-type]
            )
        ).all()
        (event,) = (
            await session.scalars(
                sa.select(PaymentEvent).where(PaymentEvent.payment_id == payment_id)
            )
        ).all()
        (accrual,) = (
            await session.scalars(sa.select(BonusEntry).where(BonusEntry.payment_id == payment_id))
        ).all()
        (receipt,) = (
            await session.scalars(sa.select(Receipt).where(Receipt.payment_id == payment_id))
        ).all()
        (letter,) = (
            await session.scalars(
                sa.select(OutboxMessage).where(OutboxMessage.subject.contains(receipt.number))  # type: ignore[attr-defined]
            )
        ).all()
        payment = await session.get(Payment, payment_id)
    assert payment is not None
    return {
        "entries": [
            (
                e.kind,
                e.amount,
                e.balance_after,
                e.description,
                e.actor,
                e.reference == f"payment:{payment_id}",
            )
            for e in entries
        ],
        "payment": (
            payment.status,
            payment.provider_reference == f"prov-{payment_id}",
            payment.confirmed_at == event.received_at,
        ),
        "event": (event.status, event.provider_reference == f"prov-{payment_id}"),
        "accrual": (
            accrual.kind,
            accrual.points,
            accrual.remaining,
            accrual.description,
            accrual.expires_at == add_months(accrual.created_at, 12),
        ),
        "receipt": (
            receipt.seller_name,
            receipt.seller_inn,
            receipt.item,
            receipt.vat_rate,
            receipt.vat_amount,
            receipt.total,
            receipt.method,
            receipt.provider_reference == f"prov-{payment_id}",
            receipt.issued_at == event.received_at,
        ),
        "letter": (
            letter.kind,
            letter.channel,
            letter.attempts,
            letter.sent_at,
            letter.subject.replace(receipt.number, "N").replace(receipt.contract_number, "C"),
            letter.body_text.replace(receipt.number, "N")
            .replace(receipt.contract_number, "C")
            .replace(to_global_id("Payment", payment_id), "P"),
        ),
    }


async def test_the_one_statement_confirmation_writes_what_the_step_by_step_one_does(
    session_factory: Any,
    settings: Settings,
    backend: str,
    engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "postgresql":
        pytest.skip("the one-statement confirmation is PostgreSQL's")
    # given two subscribers with a plain contract each (no promise, not suspended), each
    # with one earlier top-up on the balance
    one = await make_subscriber(session_factory, settings)
    two = await make_subscriber(session_factory, settings)
    firsts = [
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount="120.00")
        for made in (one, two)
    ]
    seconds = [
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount="503.00")
        for made in (one, two)
    ]
    statements: list[str] = []
    through_sqlalchemy: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        through_sqlalchemy.append(statement)

    # when: the first subscriber's payments are confirmed the one-statement way (counted) …
    sa.event.listen(engine.sync_engine, "before_cursor_execute", seen)
    STATEMENT_LISTENERS.append(statements.append)
    try:
        for payment in (firsts[0], seconds[0]):
            assert (await _confirm(session_factory, settings, payment.id)).applied
    finally:
        STATEMENT_LISTENERS.remove(statements.append)
        sa.event.remove(engine.sync_engine, "before_cursor_execute", seen)
    # … and the second's the step-by-step way
    monkeypatch.setattr(payments, "_credit_at_once", _never_at_once)
    for payment in (firsts[1], seconds[1]):
        assert (await _confirm(session_factory, settings, payment.id)).applied

    # then: a confirmation was a read and one statement, no transaction around them
    assert through_sqlalchemy == []
    assert len(statements) == 4, statements
    assert all(
        s.startswith("SELECT payments.id") and "FOR UPDATE" not in s for s in statements[0::2]
    )
    assert all(s.lstrip().startswith("WITH plain AS") for s in statements[1::2])
    # and both ways wrote the same
    fast = await _written_for(session_factory, seconds[0].id, one.contract_ids[0])
    slow = await _written_for(session_factory, seconds[1].id, two.contract_ids[0])
    assert fast == slow
    assert fast["entries"][-1][:3] == ("TOP_UP", Decimal("503.00"), Decimal("623.00"))
    async with session_factory() as session:
        points = {
            account.subscriber_id: account.points
            for account in (await session.scalars(sa.select(BonusAccount))).all()
        }
    assert points == {one.id: 24 + 100, two.id: 24 + 100}
    await assert_ledger_balanced(session_factory)


async def _never_at_once(*_args: Any, **_kwargs: Any) -> None:
    return None


async def test_a_contract_with_an_open_promise_is_confirmed_step_by_step(
    session_factory: Any, settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one statement is not tried when the contract has a promise to repay: the
    step-by-step way repays it in the same transaction as the credit."""
    # given
    made = await make_subscriber(session_factory, settings, opened_days_ago=120)
    contract_id = made.contract_ids[0]
    await activate(session_factory, settings, contract_id, "100.00")
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="300.00")
    tried: list[Any] = []
    at_once = payments._credit_at_once

    async def watched(*args: Any, **kwargs: Any) -> Any:
        tried.append(result := await at_once(*args, **kwargs))
        return result

    monkeypatch.setattr(payments, "_credit_at_once", watched)
    # when
    assert (await _confirm(session_factory, settings, payment.id)).applied
    # then
    assert tried == []
    await _assert_repaid_once(session_factory)


async def _assert_repaid_once(session_factory: Any) -> None:
    async with session_factory() as session:
        promise = (await session.scalars(sa.select(PromisedPayment))).one()
        kinds = (
            await session.scalars(
                sa.select(LedgerEntry.kind).order_by(LedgerEntry.id)  # type: ignore[arg-type]
            )
        ).all()
    assert promise.status == "REPAID"
    assert kinds[-2:] == ["TOP_UP", "PROMISED_PAYMENT_REPAYMENT"]
    assert kinds.count("TOP_UP") == 1
    assert await count(session_factory, PaymentEvent) == 1
    await assert_ledger_balanced(session_factory)


async def test_a_promise_taken_after_the_read_sends_the_confirmation_step_by_step(
    session_factory: Any, settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one statement checks the version of the contract's row that its read saw: a
    promise taken between the two (which credits the contract, so writes that row) makes it
    write nothing, and the step-by-step way repays the promise."""
    if backend != "postgresql":
        pytest.skip("the one-statement confirmation is PostgreSQL's")
    # given: a plain contract when the confirmation reads it
    made = await make_subscriber(session_factory, settings, opened_days_ago=120)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="300.00")
    tried: list[Any] = []
    at_once = payments._credit_at_once

    async def promise_first(*args: Any, **kwargs: Any) -> Any:
        assert kwargs["payment"].plain
        await activate(session_factory, settings, contract_id, "100.00")
        tried.append(result := await at_once(*args, **kwargs))
        return result

    monkeypatch.setattr(payments, "_credit_at_once", promise_first)
    # when
    assert (await _confirm(session_factory, settings, payment.id)).applied
    # then: declined, and the promise repaid by the step-by-step way
    assert tried == [None]
    await _assert_repaid_once(session_factory)


async def test_a_contract_changed_while_the_one_statement_waits_for_its_lock_is_declined(
    session_factory: Any, settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change committed while the one statement waits for the contract's lock is seen:
    PostgreSQL re-reads the locked row, whose version is then not the one read."""
    if backend != "postgresql":
        pytest.skip("the one-statement confirmation is PostgreSQL's")
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="300.00")
    tried: list[Any] = []
    at_once = payments._credit_at_once

    async def behind_a_lock(*args: Any, **kwargs: Any) -> Any:
        async with session_factory() as other:
            await begin_write(other)
            await other.execute(  # a change of the contract, its row locked until COMMIT
                sa.update(Contract).where(Contract.id == contract_id).values(status="ACTIVE")
            )
            waiting = asyncio.ensure_future(at_once(*args, **kwargs))
            for _ in range(250):
                blocked = await other.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE '%WITH plain AS%'"
                    )
                )
                if blocked:
                    break
                await asyncio.sleep(0.02)
            assert blocked, "the one statement did not wait for the contract's lock"
            await other.commit()
        tried.append(result := await waiting)
        return result

    monkeypatch.setattr(payments, "_credit_at_once", behind_a_lock)
    # when
    outcome = await _confirm(session_factory, settings, payment.id)
    # then: declined, then credited once by the step-by-step way
    assert tried == [None]
    assert outcome.applied
    assert await balance_of(session_factory, contract_id) == Decimal("300.00")
    assert await count(session_factory, LedgerEntry) == 1
    assert await count(session_factory, PaymentEvent) == 1
    await assert_ledger_balanced(session_factory)
