"""Every page the bench measures (bench/pages.py) costs a fixed number of SQL statements,
whatever the sizes of its lists: the same for a subscriber with one contract and little
history as for one with three contracts and more."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bench.pages import PAGES
from core.db import begin_write
from models.base import utcnow
from resolvers import ledger
from tests.conftest import gql
from tests.factories import make_subscriber, sign_in
from tests.test_catalog_api import count_statements


async def _history(session_factory: Any, contract_ids: list[int], entries: int) -> None:
    async with session_factory() as session:
        await begin_write(session)
        for contract_id in contract_ids:
            for n in range(entries):
                await ledger.post(
                    session,
                    contract_id=contract_id,
                    kind="ADJUSTMENT",
                    amount=Decimal("-1.00"),
                    actor="test:pages",
                    description=f"entry {n}",
                )
        await session.commit()


async def _statements(app: Any, client: Any, document: str, headers: dict[str, str]) -> int:
    await gql(client, document, headers=headers)  # warm: plans and caches made
    with count_statements(app.state.engine) as statements:
        await gql(client, document, headers=headers)
    return len(statements)


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_a_page_costs_the_same_statements_whatever_its_lists(
    page: str, app: Any, client: Any, session_factory: Any, settings: Any
) -> None:
    # given: a subscriber with one contract, and one with three contracts and more history
    small = await make_subscriber(session_factory, settings, balance=Decimal("10.00"))
    large = await make_subscriber(session_factory, settings, contracts=3, balance=Decimal("500.00"))
    await _history(session_factory, large.contract_ids, entries=4)
    document = PAGES[page][1]
    # when
    small_count = await _statements(app, client, document, await sign_in(client, small.login or ""))
    large_count = await _statements(app, client, document, await sign_in(client, large.login or ""))
    # then
    assert small_count == large_count, (page, small_count, large_count)
    assert small_count >= 1


CONTRACT_PAGES = """
  number
  newest: ledger(first: 2) {
    edges { cursor node { id kind amount balanceAfter description } }
    pageInfo { hasNextPage endCursor }
  }
  charges: ledger(first: 3, kinds: [CHARGE]) {
    edges { cursor node { id kind amount } }
    pageInfo { hasNextPage endCursor }
  }
  year: expenseSummary(from: "2000-01-01", to: "2000-12-31") {
    totalCharged totalCredited byCategory { kind total } byMonth { month charged credited }
  }
  today: expenseSummary(from: $today, to: $today) {
    totalCharged totalCredited byCategory { kind total }
  }
  promisedPaymentOffer { available maxAmount reasons }
"""

NEXT_PAGE = """query ($n: String!, $after: String!) { contract(number: $n) {
  ledger(first: 2, after: $after) { edges { node { description } } pageInfo { hasPreviousPage } }
} }"""


async def test_each_contract_of_a_list_gets_its_own_pages_as_when_asked_alone(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given: three contracts with different histories, asked for with different arguments
    made = await make_subscriber(session_factory, settings, contracts=3, balance=Decimal("50.00"))
    busy, quiet, _ = made.contract_ids
    async with session_factory() as session:
        await begin_write(session)
        for n in range(5):
            await ledger.post(
                session,
                contract_id=busy,
                kind="CHARGE" if n % 2 else "ADJUSTMENT",
                amount=Decimal(f"-{n + 1}.00"),
                actor="test:pages",
                description=f"entry {n}",
                at=datetime(2000, 3 + n, 1, tzinfo=UTC),
            )
        await ledger.post(
            session, contract_id=quiet, kind="TOP_UP", amount=Decimal("900.00"), actor="test"
        )
        await session.commit()
    headers = await sign_in(client, made.login or "")
    today = {"today": utcnow().date().isoformat()}
    # when: all contracts in one request, then each contract alone
    every = "query ($today: Date!) { me { contracts {" + CONTRACT_PAGES + "} } }"
    together = (await gql(client, every, today, headers=headers))["me"]["contracts"]
    one = "query ($n: String!, $today: Date!) { contract(number: $n) {" + CONTRACT_PAGES + "} }"
    alone = [
        (await gql(client, one, {"n": number, **today}, headers=headers))["contract"]
        for number in made.contract_numbers
    ]
    # then: the same answers, and they differ from contract to contract
    assert together == alone
    first, second, third = together
    assert [e["node"]["description"] for e in first["newest"]["edges"]] == [
        "opening balance",
        "entry 4",
    ]
    assert first["newest"]["pageInfo"]["hasNextPage"] is True
    assert [e["node"]["amount"] for e in first["charges"]["edges"]] == ["-4.00", "-2.00"]
    assert first["charges"]["pageInfo"]["hasNextPage"] is False
    assert first["year"]["totalCharged"] == "15.00"
    assert [m["charged"] for m in first["year"]["byMonth"][2:8]] == [
        "1.00", "2.00", "3.00", "4.00", "5.00", "0.00"
    ]  # fmt: skip
    assert [e["node"]["kind"] for e in second["newest"]["edges"]] == ["TOP_UP", "ADJUSTMENT"]
    assert second["charges"]["edges"] == [] and second["year"]["totalCharged"] == "0.00"
    assert second["today"]["totalCredited"] == "950.00"
    assert len(third["newest"]["edges"]) == 1
    assert third["newest"]["pageInfo"]["hasNextPage"] is False
    assert third["today"]["totalCredited"] == "50.00"
    assert "BALANCE_SUFFICIENT" in second["promisedPaymentOffer"]["reasons"]
    assert third["promisedPaymentOffer"] != second["promisedPaymentOffer"]
    # when: the next page of each contract, from its own cursor
    for contract, number in zip(together, made.contract_numbers, strict=True):
        after = {"n": number, "after": contract["newest"]["pageInfo"]["endCursor"]}
        page = (await gql(client, NEXT_PAGE, after, headers=headers))["contract"]["ledger"]
        # then
        assert page["pageInfo"]["hasPreviousPage"] is True
        if contract is first:
            assert [e["node"]["description"] for e in page["edges"]] == ["entry 3", "entry 2"]
        elif contract is second:
            assert [e["node"]["description"] for e in page["edges"]] == []
