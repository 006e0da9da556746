"""Abandoned top-ups (SPEC §7, issue 16 item 5): a payment still PENDING after
KABINET_TOP_UP_EXPIRY_HOURS becomes CANCELED (one UPDATE, safe on several hosts at once),
the subscriber cancels a pending one (`cancelTopUp`), and a success from the provider still
credits a payment canceled here, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from core.db import unit_of_work
from core.payment_providers import payment_global_id
from core.settings import Settings
from kabinet.cli import main
from models import Contract, LedgerEntry, Payment, Receipt
from models.base import utcnow
from resolvers.payments import ExpiryReport, expire_abandoned_top_ups
from tests.conftest import gql
from tests.factories import make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import (
    balance_of,
    count,
    deliver,
    mount_payment_routes,
    payment_row,
    top_up,
)

CANCEL = """
mutation($input: CancelTopUpInput!) {
  cancelTopUp(input: $input) {
    payment { id status confirmationUrl receipt { number } }
    contract { number balance { amount } }
    errors { field code message }
  }
}
"""


@pytest.fixture
def http(app: Any, settings: Settings, client: httpx.AsyncClient) -> httpx.AsyncClient:
    mount_payment_routes(app, settings)
    return client


async def _age(session_factory: Any, payment_id: int, hours: float) -> None:
    """Make a payment `hours` old."""
    async with unit_of_work(session_factory) as session:
        await session.execute(
            sa.update(Payment)
            .where(Payment.id == payment_id)  # type: ignore[arg-type]
            .values(created_at=utcnow() - timedelta(hours=hours))
        )


async def _expire(session_factory: Any, settings: Settings) -> ExpiryReport:
    async with unit_of_work(session_factory) as session:
        return await expire_abandoned_top_ups(session, settings=settings, now=utcnow())


# -- expiry -------------------------------------------------------------------------------


async def test_a_top_up_pending_past_the_expiry_is_canceled_once(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given: one abandoned (25 h), one young (23 h), one paid long ago
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    old = await top_up(session_factory, settings, contract_id=contract_id)
    young = await top_up(session_factory, settings, contract_id=contract_id)
    paid = await top_up(session_factory, settings, contract_id=contract_id)
    assert (await deliver(http, settings, paid.id)).status_code == 200
    for payment, hours in ((old, 25), (young, 23), (paid, 48)):
        await _age(session_factory, payment.id, hours)
    # when
    first = await _expire(session_factory, settings)
    second = await _expire(session_factory, settings)
    # then
    assert first == ExpiryReport(canceled=1, pending=1)
    assert second == ExpiryReport(canceled=0, pending=1)
    statuses = [(await payment_row(session_factory, p.id)).status for p in (old, young, paid)]
    assert statuses == ["CANCELED", "PENDING", "SUCCEEDED"]
    assert (await payment_row(session_factory, old.id)).confirmed_at is None
    assert await balance_of(session_factory, contract_id) == Decimal("500.00")


async def test_the_expiry_follows_the_setting(session_factory: Any, settings: Settings) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await _age(session_factory, payment.id, 3)
    kept = await _expire(session_factory, settings)
    short = settings.model_copy(update={"top_up_expiry_hours": 2})
    canceled = await _expire(session_factory, short)
    assert (kept.canceled, canceled.canceled) == (0, 1)
    assert Settings.model_fields["top_up_expiry_hours"].default == 24


async def test_two_hosts_expiring_at_once_cancel_each_payment_once(
    session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, contracts=2)
    ids = [
        (await top_up(session_factory, settings, contract_id=made.contract_ids[i % 2])).id
        for i in range(12)
    ]
    for payment_id in ids:
        await _age(session_factory, payment_id, 30)
    reports = await asyncio.gather(*(_expire(session_factory, settings) for _ in range(4)))
    assert sum(report.canceled for report in reports) == 12
    assert await count(session_factory, Payment, Payment.status == "CANCELED") == 12  # type: ignore[arg-type]


async def test_the_cli_command_reports_the_counts(
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    made = await make_subscriber(session_factory, settings)
    for hours in (30, 40, 1):
        payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
        await _age(session_factory, payment.id, hours)
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)
    assert await asyncio.to_thread(main, ["payments", "expire"]) == 0
    assert "top-ups: 2 abandoned canceled, 1 still pending" in capsys.readouterr().out


# -- cancelTopUp --------------------------------------------------------------------------


async def test_the_subscriber_cancels_a_pending_top_up(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    me = await sign_in(http, made.login or "")
    payment_id = payment_global_id(payment.id)
    # when
    answer = (await gql(http, CANCEL, {"input": {"paymentId": payment_id}}, headers=me))[
        "cancelTopUp"
    ]
    again = (await gql(http, CANCEL, {"input": {"paymentId": payment_id}}, headers=me))[
        "cancelTopUp"
    ]
    # then
    assert answer == {
        "payment": {
            "id": payment_id,
            "status": "CANCELED",
            "confirmationUrl": None,
            "receipt": None,
        },
        "contract": {"number": made.contract_numbers[0], "balance": {"amount": "0.00"}},
        "errors": [],
    }
    assert again["payment"] is None and again["contract"] is None
    (error,) = again["errors"]
    assert (error["field"], error["code"]) == ("paymentId", "CONFLICT")
    assert "CANCELED" in error["message"]
    assert (await payment_row(session_factory, payment.id)).status == "CANCELED"


async def test_only_a_pending_top_up_and_only_ones_own(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    owner = await make_subscriber(session_factory, settings)
    stranger = await make_subscriber(session_factory, settings)
    pending = await top_up(session_factory, settings, contract_id=owner.contract_ids[0])
    paid = await top_up(session_factory, settings, contract_id=owner.contract_ids[0])
    assert (await deliver(http, settings, paid.id)).status_code == 200
    owner_headers = await sign_in(http, owner.login or "")
    stranger_headers = await sign_in(http, stranger.login or "")

    async def cancel(payment_id: str, headers: dict[str, str]) -> list[tuple[str, str]]:
        answer = await gql(http, CANCEL, {"input": {"paymentId": payment_id}}, headers=headers)
        return [(e["field"], e["code"]) for e in answer["cancelTopUp"]["errors"]]

    # another's payment is NOT_FOUND, like no payment at all or another type's id
    assert await cancel(payment_global_id(pending.id), stranger_headers) == [
        ("paymentId", "NOT_FOUND")
    ]
    assert await cancel(payment_global_id(pending.id + 1000), owner_headers) == [
        ("paymentId", "NOT_FOUND")
    ]
    assert await cancel("Q29udHJhY3Q6MQ==", owner_headers) == [("paymentId", "NOT_FOUND")]
    # a paid one is not PENDING
    assert await cancel(payment_global_id(paid.id), owner_headers) == [("paymentId", "CONFLICT")]
    assert (await payment_row(session_factory, pending.id)).status == "PENDING"
    assert (await payment_row(session_factory, paid.id)).status == "SUCCEEDED"


# -- the provider's success after a local cancel ---------------------------------------------


@pytest.mark.parametrize("suspended", [False, True], ids=["plain", "suspended"])
async def test_a_success_credits_a_canceled_top_up_exactly_once(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings, suspended: bool
) -> None:
    """Both ways of the confirmation: a plain contract (one statement on PostgreSQL) and a
    suspended one (step by step, lifted by the credit)."""
    # given: one canceled by the subscriber, one abandoned and expired
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    if suspended:
        async with unit_of_work(session_factory) as session:
            await session.execute(
                sa.update(Contract)
                .where(Contract.id == contract_id)  # type: ignore[arg-type]
                .values(status="SUSPENDED")
            )
    canceled = await top_up(session_factory, settings, contract_id=contract_id, amount="300.00")
    abandoned = await top_up(session_factory, settings, contract_id=contract_id, amount="200.00")
    me = await sign_in(http, made.login or "")
    await gql(http, CANCEL, {"input": {"paymentId": payment_global_id(canceled.id)}}, headers=me)
    await _age(session_factory, abandoned.id, 25)
    assert (await _expire(session_factory, settings)).canceled == 1
    # when: the provider says both were paid after all, three times each
    for _ in range(3):
        for payment in (canceled, abandoned):
            response = await deliver(http, settings, payment.id)
            assert response.status_code == 200, response.text
    # then: credited once each, with a receipt each
    assert await balance_of(session_factory, contract_id) == Decimal("500.00")
    for payment in (canceled, abandoned):
        row = await payment_row(session_factory, payment.id)
        assert row.status == "SUCCEEDED" and row.confirmed_at is not None
        assert await count(session_factory, Receipt, Receipt.payment_id == payment.id) == 1
        reference = f"payment:{payment.id}"
        assert await count(session_factory, LedgerEntry, LedgerEntry.reference == reference) == 1
    async with session_factory() as session:
        status = await session.scalar(
            sa.select(Contract.status).where(Contract.id == contract_id)  # type: ignore[call-overload]
        )
    assert status == "ACTIVE"
    await assert_ledger_balanced(session_factory)


async def test_a_failure_leaves_a_canceled_top_up_canceled(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await _age(session_factory, payment.id, 25)
    await _expire(session_factory, settings)
    response = await deliver(http, settings, payment.id, status="FAILED")
    assert response.status_code == 200, response.text
    assert (await payment_row(session_factory, payment.id)).status == "CANCELED"
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("0.00")
