"""The ledger primitive: atomic balance change plus a row, invariant checked."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import begin_write
from models import Contract, LedgerEntry
from resolvers import ledger
from tests.factories import make_subscriber


async def assert_ledger_balanced(session_factory: Any) -> None:
    """The test helper of SPEC §2: balance == Σ ledger for every contract."""
    async with session_factory() as session:
        assert await ledger.verify(session) == []


async def test_post_changes_the_balance_and_records_it(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        first = await ledger.post(
            session, contract_id=contract_id, kind="TOP_UP", amount=Decimal("100.10"), actor="test"
        )
        second = await ledger.post(
            session, contract_id=contract_id, kind="CHARGE", amount=Decimal("-30.05"), actor="test"
        )
        await session.commit()
    assert first.balance_after == Decimal("100.10")
    assert second.balance_after == Decimal("70.05")
    async with session_factory() as session:
        balance = await session.scalar(
            sa.select(Contract.balance).where(Contract.id == contract_id)
        )
        rows = (await session.execute(sa.select(LedgerEntry))).scalars().all()
    assert balance == Decimal("70.05") and len(rows) == 2
    await assert_ledger_balanced(session_factory)


async def test_zero_and_unknown_kinds_are_refused(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    async with session_factory() as session:
        with pytest.raises(ValueError):
            await ledger.post(
                session,
                contract_id=made.contract_ids[0],
                kind="TOP_UP",
                amount=Decimal("0"),
                actor="test",
            )
        with pytest.raises(ValueError):
            await ledger.post(
                session,
                contract_id=made.contract_ids[0],
                kind="GIFT",
                amount=Decimal("1"),
                actor="test",
            )


async def test_verify_finds_a_balance_edited_in_place(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    async with session_factory() as session:
        await session.execute(sa.update(Contract).values(balance=Decimal("5.00")))
        await session.commit()
        (mismatch,) = await ledger.verify(session)
    assert mismatch.number == made.contract_numbers[0] and mismatch.ledger_sum == 0


async def test_concurrent_posts_lose_nothing(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)

    async def one(i: int) -> None:
        async with session_factory() as session:
            await begin_write(session)
            await ledger.post(
                session,
                contract_id=made.contract_ids[0],
                kind="TOP_UP",
                amount=Decimal("1.01"),
                actor=f"test:{i}",
            )
            await session.commit()

    await asyncio.gather(*(one(i) for i in range(30)))
    async with session_factory() as session:
        balance = await session.scalar(sa.select(Contract.balance))
        afters = (await session.execute(sa.select(LedgerEntry.balance_after))).scalars().all()
    assert balance == Decimal("30.30")
    assert sorted(afters) == [Decimal("1.01") * i for i in range(1, 31)]
    await assert_ledger_balanced(session_factory)
