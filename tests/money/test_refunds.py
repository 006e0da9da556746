"""Refunds with the sandbox (refunded at once), the sandbox's saved card, and two refunds of
one payment racing (PostgreSQL): never more than the payment."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import unit_of_work
from core.errors import DomainError, ErrorCode
from core.ids import from_global_id
from core.payment_providers import payment_global_id
from core.settings import Settings
from models import AuditEntry, BonusAccount, Contract, LedgerEntry, PaymentMethod, Refund
from models.base import table_of
from resolvers import refunds
from tests.conftest import gql
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_payments import event_body, post_event, top_up

TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) { payment { id confirmationUrl } errors { code } }
}
"""
REFUND = """
mutation($input: RefundPaymentInput!) {
  refundPayment(input: $input) {
    refundStatus contract { balance { amount } } errors { field code message }
  }
}
"""
REASON = "Абонент оплатил дважды"


async def balance_of(session_factory: Any, contract_id: int) -> Decimal:
    contracts = table_of(Contract)
    async with session_factory() as session:
        value = await session.scalar(
            sa.select(contracts.c.balance).where(contracts.c.id == contract_id)
        )
    return Decimal(value)


async def paid(client: Any, settings: Settings, session_factory: Any, contract_id: int) -> int:
    """A 500.00 sandbox top-up, confirmed through the signed webhook."""
    payment = await top_up(session_factory, settings, contract_id=contract_id)
    body = event_body(payment.id, reference=f"sandbox-{payment.id}")
    response = await post_event(client, settings, body)
    assert response.status_code == 200, response.text
    return payment.id


async def test_a_sandbox_refund_succeeds_at_once(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment_id = await paid(client, settings, session_factory, made.contract_ids[0])
    staff_id, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    variables = {
        "input": {"paymentId": payment_global_id(payment_id), "amount": "500.00", "reason": REASON}
    }
    # when
    answer = (await gql(client, REFUND, variables, headers=staff))["refundPayment"]
    # then: refunded in full at once; the points back to zero; audited
    assert answer == {
        "refundStatus": "SUCCEEDED",
        "contract": {"balance": {"amount": "0.00"}},
        "errors": [],
    }
    async with session_factory() as session:
        (refund,) = (await session.execute(sa.select(Refund))).scalars()
        (entry,) = (
            await session.execute(sa.select(LedgerEntry).where(col(LedgerEntry.kind) == "REFUND"))
        ).scalars()
        (account,) = (await session.execute(sa.select(BonusAccount))).scalars()
        (audit,) = (
            await session.execute(
                sa.select(AuditEntry).where(col(AuditEntry.action) == "refundPayment")
            )
        ).scalars()
    assert (
        refund.status == "SUCCEEDED" and refund.provider_reference == f"sandbox-refund-{refund.id}"
    )
    assert refund.actor == f"staff:{staff_id}" and refund.reason == REASON
    assert entry.amount == Decimal("-500.00") and entry.reference == f"refund:{refund.id}"
    assert account.points == 0
    assert audit.actor_staff_id == staff_id and audit.reason == REASON
    # when: again
    again = (await gql(client, REFUND, variables, headers=staff))["refundPayment"]
    # then: nothing left to refund
    assert [(e["field"], e["code"]) for e in again["errors"]] == [("amount", "INVALID")]
    assert await balance_of(session_factory, made.contract_ids[0]) == Decimal("0.00")


async def test_a_subscriber_cannot_refund(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await paid(client, settings, session_factory, made.contract_ids[0])
    me = await sign_in(client, str(made.login))
    variables = {
        "input": {"paymentId": payment_global_id(payment_id), "amount": "1.00", "reason": REASON}
    }
    response = await client.post(
        "/graphql", json={"query": REFUND, "variables": variables}, headers=me
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    async with session_factory() as session:
        assert (await session.execute(sa.select(Refund))).first() is None


async def test_the_sandbox_page_saves_its_card_when_asked(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    # given: a top-up asking to save the method
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, str(made.login))
    variables = {
        "input": {
            "contractNumber": made.contract_numbers[0],
            "amount": "100.00",
            "method": "BANK_CARD",
            "idempotencyKey": "save-card-0001",
            "savePaymentMethod": True,
        }
    }
    created = (await gql(client, TOP_UP, variables, headers=me))["createTopUp"]
    url = created["payment"]["confirmationUrl"]
    # when: the page offers to save the card; the payer pays and saves it
    page = await client.get(url)
    assert "Сохранить карту *4444" in page.text
    paid_answer = await client.post(url, json={"outcome": "pay", "saveMethod": True})
    # then
    assert paid_answer.status_code == 200, paid_answer.text
    async with session_factory() as session:
        (method,) = (await session.execute(sa.select(PaymentMethod))).scalars()
    decoded = from_global_id(created["payment"]["id"])
    assert decoded is not None
    assert method.title == "Card *4444" and method.provider == "sandbox"
    assert method.reference == f"sandbox-card-{decoded[1]}"
    assert method.contract_id == made.contract_ids[0]


async def test_two_refunds_racing_never_exceed_the_payment(
    client: Any, settings: Settings, session_factory: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("races are run on PostgreSQL; SQLite serialises writers")
    # given: a 500.00 payment
    made = await make_subscriber(session_factory, settings)
    payment_id = await paid(client, settings, session_factory, made.contract_ids[0])
    staff_id, _, _ = await make_staff(session_factory, settings)

    async def start(amount: str) -> Any:
        async with unit_of_work(session_factory) as session:
            return await refunds.start_refund(
                session,
                settings=settings,
                staff_id=staff_id,
                payment_id=payment_id,
                amount=Decimal(amount),
                reason=REASON,
                client_address=None,
            )

    # when: refunds of 300.00 and 250.00 at once
    results = await asyncio.gather(start("300.00"), start("250.00"), return_exceptions=True)
    # then: one is made; the other, decided after it under the payment's lock, is refused
    # (the first is still waiting for the provider: CONFLICT; or it is not: 550 > 500)
    made_ones = [r for r in results if isinstance(r, refunds.RefundStarted)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(made_ones) == 1 and len(refused) == 1, results
    assert refused[0].code in (ErrorCode.CONFLICT, ErrorCode.INVALID)
    assert refused[0].field == "amount"
    async with session_factory() as session:
        assert len((await session.execute(sa.select(Refund))).all()) == 1
