"""Faults: PostgreSQL serialization failures and deadlocks are retried (issue 7, item 3;
SPEC §5 "Nothing is lost under concurrency").

The faults come from the server itself, so they travel the whole way a real one does
(asyncpg → SQLAlchemy's DBAPIError with `orig.sqlstate`):

* a trigger on `ledger_entries` raises a chosen SQLSTATE for the first `times` inserts of a
  chosen ledger kind: the transaction has done real work by then (payment locked and moved,
  event written, balance updated) and must be rolled back whole and redone once. Its counter
  is a sequence, which a rollback does not undo, so the number of attempts is measured;
* a real deadlock between the webhook and a second connection, made with row locks.

Covered: the webhook (`kabinet/web/payments.py` `process_webhook`, 5 attempts on 40001 and
40P01) and the billing day's transactions (`resolvers/billing.py` `_in_write_transaction`,
the charge ranges and the promise settlement).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from core.db import begin_write, create_engine, unit_of_work
from core.settings import Settings
from kabinet.web.payments import WEBHOOK_ATTEMPTS
from models import (
    BillingCharge,
    BonusEntry,
    LedgerEntry,
    OutboxMessage,
    PaymentEvent,
    PromisedPayment,
    Receipt,
)
from models.base import utcnow
from resolvers.billing import RETRIES, run_billing_day
from resolvers.promised import activate_promised_payment
from tests.conftest import fresh_database
from tests.factories import make_subscriber
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import balance_of, count, event_body, payment_row, post_event, top_up

SERIALIZATION_FAILURE, DEADLOCK = "40001", "40P01"
INSTALL_FAULTS = [
    "CREATE SEQUENCE fault_counter",
    "CREATE TABLE fault_plan (kind text PRIMARY KEY, sqlstate text NOT NULL, times int NOT NULL)",
    """
    CREATE FUNCTION fault_inject() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        plan fault_plan%ROWTYPE;
    BEGIN
        SELECT * INTO plan FROM fault_plan WHERE kind = NEW.kind;
        IF FOUND THEN
            IF nextval('fault_counter') <= plan.times THEN
                RAISE EXCEPTION 'injected fault %', plan.sqlstate USING ERRCODE = plan.sqlstate;
            END IF;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    "CREATE TRIGGER fault_inject BEFORE INSERT ON ledger_entries "
    "FOR EACH ROW EXECUTE FUNCTION fault_inject()",
]


@pytest.fixture(scope="module")
def migrated_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own: the fault trigger never touches the
    database the rest of the suite shares."""
    with fresh_database("postgresql") as url:
        asyncio.run(_run(url, INSTALL_FAULTS))
        yield url


async def _run(url: str, statements: list[str]) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


class Faults:
    def __init__(self, engine: Any) -> None:
        self.engine = engine

    async def plan(self, kind: str, sqlstate: str, times: int) -> None:
        """The next `times` inserts of a `kind` ledger row fail with `sqlstate`."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM fault_plan"))
            await conn.execute(
                sa.text("INSERT INTO fault_plan VALUES (:kind, :sqlstate, :times)"),
                {"kind": kind, "sqlstate": sqlstate, "times": times},
            )
            await conn.execute(sa.text("SELECT setval('fault_counter', 1, false)"))

    async def attempts(self) -> int:
        """How many matching inserts were tried since `plan` (failed ones included)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.text("SELECT last_value, is_called FROM fault_counter"))
            ).one()
        return int(row.last_value) if row.is_called else 0


@pytest.fixture
async def faults(engine: Any) -> AsyncIterator[Faults]:
    found = Faults(engine)
    yield found
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM fault_plan"))


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Sees the 500 a server would send instead of the raised exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


EFFECTS = (LedgerEntry, PaymentEvent, Receipt, BonusEntry, OutboxMessage)


async def _credited_once(session_factory: Any, payment_id: int, contract_id: int) -> None:
    assert (await payment_row(session_factory, payment_id)).status == "SUCCEEDED"
    assert await balance_of(session_factory, contract_id) == Decimal("500.00")
    for model in EFFECTS:
        assert await count(session_factory, model) == 1, model.__name__
    await assert_ledger_balanced(session_factory)


async def _nothing_moved(session_factory: Any, payment_id: int, contract_id: int) -> None:
    assert (await payment_row(session_factory, payment_id)).status == "PENDING"
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    for model in EFFECTS:
        assert await count(session_factory, model) == 0, model.__name__
    await assert_ledger_balanced(session_factory)


def _retries_logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for record in caplog.records if text in record.getMessage())


# -- the webhook ----------------------------------------------------------------------------


@pytest.mark.parametrize("sqlstate", [SERIALIZATION_FAILURE, DEADLOCK])
async def test_the_webhook_retries_a_conflict_and_credits_once(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    faults: Faults,
    caplog: pytest.LogCaptureFixture,
    sqlstate: str,
) -> None:
    # given: the first TOP_UP insert fails with `sqlstate`, after the payment was locked
    # and moved, its event written and the balance updated in that transaction
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await faults.plan("TOP_UP", sqlstate, times=1)
    caplog.set_level(logging.INFO, logger="kabinet.webhooks")
    # when
    answer = await post_event(http, settings, event_body(payment.id, "SUCCEEDED", "prov-r1"))
    # then: retried inside the request, answered 200, credited once
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "applied", "paymentStatus": "SUCCEEDED"}
    assert await faults.attempts() == 2
    assert _retries_logged(caplog, "retrying after a database conflict") == 1
    await _credited_once(session_factory, payment.id, made.contract_ids[0])


async def test_the_webhook_gives_up_after_its_attempts_and_the_provider_retry_applies_once(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, faults: Faults
) -> None:
    # given: more conflicts in a row than the webhook tries
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    body = event_body(payment.id, "SUCCEEDED", "prov-r2")
    await faults.plan("TOP_UP", SERIALIZATION_FAILURE, times=WEBHOOK_ATTEMPTS)
    # when
    first = await post_event(http, settings, body)
    # then: not acknowledged, nothing kept
    assert first.status_code == 500, first.text
    assert "40001" not in first.text and "ledger" not in first.text
    assert await faults.attempts() == WEBHOOK_ATTEMPTS
    await _nothing_moved(session_factory, payment.id, made.contract_ids[0])
    # when: the provider retries
    second = await post_event(http, settings, body)
    # then
    assert second.status_code == 200 and second.json()["status"] == "applied", second.text
    await _credited_once(session_factory, payment.id, made.contract_ids[0])


async def test_the_webhook_does_not_retry_an_error_that_is_not_a_conflict(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, faults: Faults
) -> None:
    # given: a statement timeout (57014) is no conflict: retrying at once would not help
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    body = event_body(payment.id, "SUCCEEDED", "prov-r3")
    await faults.plan("TOP_UP", "57014", times=1)
    # when
    first = await post_event(http, settings, body)
    # then: one attempt, 500, nothing kept; the provider's retry applies it
    assert first.status_code == 500
    assert await faults.attempts() == 1
    await _nothing_moved(session_factory, payment.id, made.contract_ids[0])
    second = await post_event(http, settings, body)
    assert second.status_code == 200 and second.json()["status"] == "applied", second.text
    await _credited_once(session_factory, payment.id, made.contract_ids[0])


async def test_a_real_deadlock_on_the_webhook_path_is_retried(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The webhook locks the payment, then the contract (its first statement reads both
    `FOR UPDATE OF payments, contracts`, in that order). Another transaction holds the
    contract and then asks for the payment: a lock cycle. PostgreSQL breaks it by
    failing the webhook's transaction (its deadlock_timeout, 1 s, runs out first: the other
    side waits 10 s before checking); the webhook retries and credits once."""
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id)
    caplog.set_level(logging.INFO, logger="kabinet.webhooks")
    other = create_engine(settings.database_url, pool_size=2)
    try:
        async with other.connect() as blocker, other.connect() as watcher:
            # the other transaction takes the contract's row lock
            await blocker.execute(sa.text("SET deadlock_timeout = '10s'"))
            await blocker.execute(
                sa.text("UPDATE contracts SET balance = balance WHERE id = :id"),
                {"id": contract_id},
            )
            webhook = asyncio.create_task(
                post_event(http, settings, event_body(payment.id, "SUCCEEDED", "prov-dl"))
            )
            # until the webhook holds the payment and waits for the contract
            for _ in range(500):
                waiting = await watcher.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query ILIKE '%FOR UPDATE OF payments, contracts%' "
                        "AND datname = current_database()"
                    )
                )
                await watcher.rollback()
                if waiting:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the webhook never waited for the contract's lock")
            # the cycle: the other transaction now asks for the payment the webhook holds
            await blocker.execute(
                sa.text("SELECT id FROM payments WHERE id = :id FOR UPDATE"), {"id": payment.id}
            )
            await blocker.rollback()  # the webhook's retry may go on
            answer = await asyncio.wait_for(webhook, 60)
    finally:
        await other.dispose()
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "applied"
    assert _retries_logged(caplog, "retrying after a database conflict") == 1
    await _credited_once(session_factory, payment.id, contract_id)


# -- the billing day --------------------------------------------------------------------------


@pytest.mark.parametrize("sqlstate", [SERIALIZATION_FAILURE, DEADLOCK])
async def test_a_billing_range_is_retried_whole_after_a_conflict(
    session_factory: Any,
    settings: Settings,
    faults: Faults,
    caplog: pytest.LogCaptureFixture,
    sqlstate: str,
) -> None:
    # given: three contracts in two ranges; the first CHARGE row written fails
    contracts = [
        (await make_subscriber(session_factory, settings)).contract_ids[0] for _ in range(3)
    ]
    await faults.plan("CHARGE", sqlstate, times=1)
    caplog.set_level(logging.WARNING, logger="kabinet.billing")
    today = utcnow().date()
    # when
    summary = await run_billing_day(session_factory, settings=settings, day=today, chunk_size=2)
    # then: the range was redone whole and every contract charged once
    assert summary.contracts_charged == 3
    assert _retries_logged(caplog, "billing: transaction retried") == 1
    assert await faults.attempts() == 1 + 3  # the failed first row, then all three
    assert await count(session_factory, BillingCharge) == 3
    assert await count(session_factory, LedgerEntry, LedgerEntry.kind == "CHARGE") == 3
    for contract_id in contracts:
        assert await balance_of(session_factory, contract_id) < 0
    await assert_ledger_balanced(session_factory)
    # and a second run of the day charges nothing more
    again = await run_billing_day(session_factory, settings=settings, day=today, chunk_size=2)
    assert again.contracts_charged == 0
    assert await count(session_factory, LedgerEntry, LedgerEntry.kind == "CHARGE") == 3


async def test_a_billing_run_that_keeps_failing_stops_and_a_rerun_charges_once(
    session_factory: Any, settings: Settings, faults: Faults
) -> None:
    contract_id = (await make_subscriber(session_factory, settings)).contract_ids[0]
    await faults.plan("CHARGE", DEADLOCK, times=RETRIES)
    today = utcnow().date()
    # when: every try of the range deadlocks
    with pytest.raises(DBAPIError) as raised:
        await run_billing_day(session_factory, settings=settings, day=today)
    # then: the run stops, nothing of the range was kept
    assert getattr(raised.value.orig, "sqlstate", None) == DEADLOCK
    assert await faults.attempts() == RETRIES
    assert await count(session_factory, BillingCharge) == 0
    assert await count(session_factory, LedgerEntry, LedgerEntry.kind == "CHARGE") == 0
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    # when: the run is started again (the scheduler or an operator)
    summary = await run_billing_day(session_factory, settings=settings, day=today)
    # then
    assert summary.contracts_charged == 1
    assert await count(session_factory, LedgerEntry, LedgerEntry.kind == "CHARGE") == 1
    await assert_ledger_balanced(session_factory)


async def test_a_promise_settlement_is_retried_after_a_conflict_and_debited_once(
    session_factory: Any, settings: Settings, faults: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a promise of 300 that fell due
    contract_id = (await make_subscriber(session_factory, settings)).contract_ids[0]
    async with unit_of_work(session_factory) as session:
        await activate_promised_payment(
            session,
            settings=settings,
            contract_id=contract_id,
            amount=Decimal("300.00"),
            actor="test",
        )
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(PromisedPayment)
            .where(PromisedPayment.contract_id == contract_id)  # type: ignore[arg-type]
            .values(due_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
    await faults.plan("PROMISED_PAYMENT_REPAYMENT", SERIALIZATION_FAILURE, times=1)
    caplog.set_level(logging.WARNING, logger="kabinet.billing")
    # when
    summary = await run_billing_day(session_factory, settings=settings, day=utcnow().date())
    # then
    assert summary.promises_settled == 1
    assert _retries_logged(caplog, "billing: transaction retried") == 1
    assert await faults.attempts() == 2
    repayments = await count(
        session_factory, LedgerEntry, LedgerEntry.kind == "PROMISED_PAYMENT_REPAYMENT"
    )
    assert repayments == 1
    async with session_factory() as session:
        (promise,) = (await session.scalars(sa.select(PromisedPayment))).all()
    assert promise.status in {"REPAID", "OVERDUE"} and promise.settled_at is not None
    await assert_ledger_balanced(session_factory)
