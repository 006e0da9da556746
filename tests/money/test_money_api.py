"""Money through GraphQL: top-up → sandbox confirmation → receipt and ledger, payments pages,
node(Payment) authorisation, staff adjustBalance, and the statement count of the overview."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from core.payment_providers import sign
from models import Payment
from tests.conftest import gql, gql_raw
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced
from tests.test_catalog_api import count_statements

TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) {
    payment { id status amount confirmationUrl }
    errors { field code message }
  }
}
"""
CONTRACT = """
query($number: String!) {
  contract(number: $number) {
    balance { amount currency }
    payments(first: 5) {
      edges { cursor node { id amount status method confirmationUrl
        receipt { number total vatAmount vatRate item sellerName sellerInn payerEmail url } } }
      pageInfo { hasNextPage endCursor }
    }
    ledger(first: 10) { edges { node { kind amount balanceAfter description } } }
    expenseSummary(from: "2000-01-01", to: "2000-12-31") { totalCharged totalCredited }
  }
}
"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Payment { amount status } } }"
ADJUST = """
mutation($input: AdjustBalanceInput!) {
  adjustBalance(input: $input) { contract { balance { amount } } errors { field code } }
}
"""
OVERVIEW = """
{ me { displayName contracts { number status
  balance { amount daysLeft openPromisedPayment { amount dueAt } }
  tariff { name monthlyFee speedMbps }
  tvPackages { name monthlyFee }
  payments(first: 10) { edges { node { amount status createdAt } } } }
  bonusAccount { points } } }
"""
OFFER = """
query($number: String!) { contract(number: $number) {
  balance { amount availableAmount daysLeft openPromisedPayment { amount fee status } }
  promisedPaymentOffer {
    available maxAmount termDays reasons messages feeTiers { upTo fee }
  }
  promisedPayments { amount status }
} }
"""
ACTIVATE = """
mutation($input: ActivatePromisedPaymentInput!) {
  activatePromisedPayment(input: $input) {
    promisedPayment { amount fee status dueAt }
    balance { amount openPromisedPayment { amount } }
    errors { field code message }
  }
}
"""


async def confirm(client: Any, settings: Any, payment_id: str, outcome: str = "SUCCEEDED") -> None:
    body = json.dumps(
        {"paymentId": payment_id, "status": outcome, "providerReference": f"ref-{payment_id}"}
    ).encode()
    response = await client.post(
        "/webhooks/payments",
        content=body,
        headers={"content-type": "application/json", "x-signature": sign(settings, body)},
    )
    assert response.status_code == 200, response.text


async def test_top_up_confirm_and_see_it_everywhere(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, made.login)
    number = made.contract_numbers[0]
    top_up = {
        "contractNumber": number,
        "amount": "500.00",
        "method": "SBP",
        "idempotencyKey": "first-top-up-0001",
    }
    # when
    created = (await gql(client, TOP_UP, {"input": top_up}, headers=me))["createTopUp"]
    again = (await gql(client, TOP_UP, {"input": top_up}, headers=me))["createTopUp"]
    # then: the same payment for the same key, PENDING with a sandbox link
    assert created["errors"] == [] and again["payment"] == created["payment"]
    payment = created["payment"]
    assert payment["status"] == "PENDING" and payment["amount"] == "500.00"
    assert payment["confirmationUrl"].endswith(f"/sandbox/pay/{payment['id']}")
    other = {**top_up, "amount": "600.00"}
    conflict = (await gql(client, TOP_UP, {"input": other}, headers=me))["createTopUp"]
    assert conflict["errors"][0]["code"] == "CONFLICT"
    # when: the provider confirms
    await confirm(client, settings, payment["id"])
    # then
    contract = (await gql(client, CONTRACT, {"number": number}, headers=me))["contract"]
    assert contract["balance"] == {"amount": "500.00", "currency": "RUB"}
    (edge,) = contract["payments"]["edges"]
    node = edge["node"]
    assert node["status"] == "SUCCEEDED" and node["confirmationUrl"] is None
    receipt = node["receipt"]
    # VAT 22% since 2026-01-01 (was "20" and 83.33): 500 × 22 / 122 = 90.1639…
    assert receipt["total"] == "500.00" and receipt["vatAmount"] == "90.16"
    assert receipt["vatRate"] == "22" and receipt["payerEmail"] == made.email
    assert receipt["url"].endswith(f"/receipts/{payment['id']}")
    assert [e["node"]["kind"] for e in contract["ledger"]["edges"]] == ["TOP_UP"]
    page = await client.get(f"/receipts/{payment['id']}", headers=me)
    assert page.status_code == 200 and receipt["number"] in page.text
    await assert_ledger_balanced(session_factory)


async def test_top_up_of_someone_elses_contract_is_not_found(
    client: Any, session_factory: Any, settings: Any
) -> None:
    owner = await make_subscriber(session_factory, settings)
    stranger = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, stranger.login)
    result = (
        await gql(
            client,
            TOP_UP,
            {
                "input": {
                    "contractNumber": owner.contract_numbers[0],
                    "amount": "100.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "stranger-key-01",
                }
            },
            headers=headers,
        )
    )["createTopUp"]
    assert result["errors"][0]["code"] == "NOT_FOUND" and result["payment"] is None
    async with session_factory() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 0


async def test_payments_are_visible_by_node_to_their_owner_only(
    client: Any, session_factory: Any, settings: Any
) -> None:
    owner = await make_subscriber(session_factory, settings)
    stranger = await make_subscriber(session_factory, settings)
    mine = await sign_in(client, owner.login)
    created = (
        await gql(
            client,
            TOP_UP,
            {
                "input": {
                    "contractNumber": owner.contract_numbers[0],
                    "amount": "100.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": "node-test-key-1",
                }
            },
            headers=mine,
        )
    )["createTopUp"]["payment"]
    assert (await gql(client, NODE, {"id": created["id"]}, headers=mine))["node"]["amount"]
    theirs = await sign_in(client, stranger.login)
    assert (await gql(client, NODE, {"id": created["id"]}, headers=theirs))["node"] is None
    assert (await gql(client, NODE, {"id": created["id"]}))["node"] is None
    page = await client.get(f"/receipts/{created['id']}", headers=theirs)
    assert page.status_code == 404


async def test_payments_pages_and_limits(client: Any, session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    me = await sign_in(client, made.login)
    for i in range(7):
        await gql(
            client,
            TOP_UP,
            {
                "input": {
                    "contractNumber": made.contract_numbers[0],
                    "amount": f"{10 + i}.00",
                    "method": "BANK_CARD",
                    "idempotencyKey": f"pages-key-{i:04d}",
                }
            },
            headers=me,
        )
    query = """query($n: String!, $after: String) { contract(number: $n) {
      payments(first: 5, after: $after) {
        edges { node { amount } } pageInfo { hasNextPage endCursor }
      }
    } }"""
    first = (await gql(client, query, {"n": made.contract_numbers[0]}, headers=me))["contract"]
    amounts = [e["node"]["amount"] for e in first["payments"]["edges"]]
    assert amounts == ["16.00", "15.00", "14.00", "13.00", "12.00"]
    assert first["payments"]["pageInfo"]["hasNextPage"] is True
    rest = (
        await gql(
            client,
            query,
            {"n": made.contract_numbers[0], "after": first["payments"]["pageInfo"]["endCursor"]},
            headers=me,
        )
    )["contract"]
    assert [e["node"]["amount"] for e in rest["payments"]["edges"]] == ["11.00", "10.00"]
    too_many = query.replace("first: 5", "first: 101")
    body = (await gql_raw(client, too_many, {"n": made.contract_numbers[0]}, headers=me)).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_staff_adjust_balance(client: Any, session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    done = (
        await gql(
            client,
            ADJUST,
            {
                "input": {
                    "contractNumber": made.contract_numbers[0],
                    "amount": "-12.50",
                    "reason": "Double charge fix",
                }
            },
            headers=staff,
        )
    )["adjustBalance"]
    assert done == {"contract": {"balance": {"amount": "-12.50"}}, "errors": []}
    subscriber = await sign_in(client, made.login)
    refused = (
        await gql_raw(
            client,
            ADJUST,
            {
                "input": {
                    "contractNumber": made.contract_numbers[0],
                    "amount": "100.00",
                    "reason": "I want it",
                }
            },
            headers=subscriber,
        )
    ).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    await assert_ledger_balanced(session_factory)


async def test_the_overview_costs_the_same_statements_for_1_and_5_contracts(
    client: Any, app: Any, session_factory: Any, settings: Any
) -> None:
    """SPEC: a request costs a fixed number of SQL statements whatever its list sizes."""
    counts = []
    for contracts in (1, 5):
        made = await make_subscriber(session_factory, settings, contracts=contracts)
        headers = await sign_in(client, made.login)
        for number in made.contract_numbers:
            for i in range(3):
                await gql(
                    client,
                    TOP_UP,
                    {
                        "input": {
                            "contractNumber": number,
                            "amount": "10.00",
                            "method": "SBP",
                            "idempotencyKey": f"overview-{number}-{i}",
                        }
                    },
                    headers=headers,
                )
        await gql(client, OVERVIEW, headers=headers)  # warm the caches
        with count_statements(app.state.engine) as statements:
            data = await gql(client, OVERVIEW, headers=headers)
        assert len(data["me"]["contracts"]) == contracts
        assert all(len(c["payments"]["edges"]) == 3 for c in data["me"]["contracts"])
        counts.append(len(statements))
    # authenticate, subscriber, contracts, points, tariffs, packages, payments, daily charge,
    # open promise (+ BEGIN on SQLite): the same for 1 and 5 contracts. On PostgreSQL one
    # statement checks the token and builds the whole answer (schema/sql_answers.py).
    assert counts[0] == counts[1] <= 10, counts
    if app.state.engine.dialect.name == "postgresql":
        assert counts == [1, 1], counts
    assert Decimal(data["me"]["contracts"][0]["balance"]["amount"]) == 0


async def test_promised_payment_offer_and_activation(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given: an old contract with nothing on it
    made = await make_subscriber(session_factory, settings, opened_days_ago=120)
    me = await sign_in(client, made.login)
    number = made.contract_numbers[0]
    before = (await gql(client, OFFER, {"number": number}, headers=me))["contract"]
    offer = before["promisedPaymentOffer"]
    assert offer["available"] is True and offer["reasons"] == []
    assert Decimal(offer["maxAmount"]) >= Decimal("590") and offer["termDays"] == 3
    assert before["balance"]["daysLeft"] == 0 and before["balance"]["availableAmount"] == "0.00"
    # when
    taken = (
        await gql(
            client, ACTIVATE, {"input": {"contractNumber": number, "amount": "300.00"}}, headers=me
        )
    )["activatePromisedPayment"]
    # then: credited, the 10 RUB fee as its own entry, one open promise
    assert taken["errors"] == []
    assert (
        taken["promisedPayment"]["fee"] == "10.00" and taken["promisedPayment"]["status"] == "OPEN"
    )
    assert taken["balance"]["amount"] == "290.00"
    assert taken["balance"]["openPromisedPayment"]["amount"] == "300.00"
    after = (await gql(client, OFFER, {"number": number}, headers=me))["contract"]
    assert after["promisedPaymentOffer"]["available"] is False
    assert "PROMISE_OPEN" in after["promisedPaymentOffer"]["reasons"]
    assert after["balance"]["daysLeft"] > 0
    again = (
        await gql(
            client, ACTIVATE, {"input": {"contractNumber": number, "amount": "50.00"}}, headers=me
        )
    )["activatePromisedPayment"]
    assert again["errors"][0]["code"] == "NOT_ELIGIBLE"
    await assert_ledger_balanced(session_factory)


async def test_a_new_contract_gets_no_promise(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings, opened_days_ago=10)
    me = await sign_in(client, made.login)
    offer = (await gql(client, OFFER, {"number": made.contract_numbers[0]}, headers=me))[
        "contract"
    ]["promisedPaymentOffer"]
    assert offer["available"] is False and offer["reasons"] == ["CONTRACT_TOO_NEW"]
