"""Every page the bench measures (bench/pages.py) costs a fixed number of SQL statements,
whatever the sizes of its lists: the same for a subscriber with one contract and little
history as for one with three contracts and more."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bench.pages import PAGES
from core.db import begin_write
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
