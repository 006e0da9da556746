"""The request's reader (kabinet/db.py RequestReader): on PostgreSQL the fetches asked for
while the event loop goes round travel in one combined statement; each caller still gets
its own rows, typed and ordered as if it had run alone; a failure reaches every caller and
the connection is not reused."""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import STATEMENT_LISTENERS, ReadQuery, RequestReader, one_of
from models import Tariff

_tariffs = Tariff.__table__  # type: ignore[attr-defined]

BY_IDS = ReadQuery(
    sa.select(_tariffs.c.id, _tariffs.c.name, _tariffs.c.monthly_fee)
    .where(one_of(_tariffs.c.id, "ids"))
    .order_by(_tariffs.c.id.desc())
)
CHEAPEST = ReadQuery(
    sa.select(_tariffs.c.code, _tariffs.c.monthly_fee)
    .order_by(_tariffs.c.monthly_fee, _tariffs.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
NOW = ReadQuery(sa.select(sa.func.now().label("at"), sa.bindparam("tag", type_=sa.String)))
# A `$1` inside a quoted literal: its placeholders cannot be renumbered as text.
QUOTED = ReadQuery(
    sa.select(
        sa.literal_column("'costs $1'").label("text"),
        _tariffs.c.id,
    ).where(_tariffs.c.id == sa.bindparam("id", type_=sa.BigInteger))
)
FAILS = ReadQuery(
    sa.select((_tariffs.c.id / sa.bindparam("zero", type_=sa.Integer)).label("x")).where(
        one_of(_tariffs.c.id, "ids")
    )
)


class Counting:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        STATEMENT_LISTENERS.append(self.seen.append)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        STATEMENT_LISTENERS.remove(self.seen.append)


async def _tariff_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.scalars(sa.select(_tariffs.c.id).order_by(_tariffs.c.id))).all())


async def test_fetches_of_one_round_are_one_statement_with_each_callers_rows(
    engine: AsyncEngine, backend: str
) -> None:
    ids = await _tariff_ids(engine)
    assert len(ids) >= 4
    reader = RequestReader(engine)
    try:
        with Counting() as seen:
            by_ids, cheapest, none, now = await asyncio.gather(
                reader.fetch(BY_IDS, ids=ids[:3]),
                reader.fetch(CHEAPEST, limit=2),
                reader.fetch(BY_IDS, ids=[-1]),
                reader.fetch(NOW, tag="hello"),
            )
        alone = [await reader.fetch(BY_IDS, ids=ids[:3]), await reader.fetch(CHEAPEST, limit=2)]
    finally:
        await reader.close()
    # the rows are what each query gives alone, in its order, with its column types
    assert by_ids == alone[0] and cheapest == alone[1]
    assert [row.id for row in by_ids] == sorted(ids[:3], reverse=True)
    assert all(isinstance(row.monthly_fee, Decimal) for row in by_ids + cheapest)
    assert [row.monthly_fee for row in cheapest] == sorted(row.monthly_fee for row in cheapest)
    assert none == []
    assert isinstance(now[0].at, datetime)
    assert now[0][1] == "hello"
    if backend == "postgresql":
        # one combined statement for the round (the same query twice included)
        assert len(seen) == 1 and seen[0].startswith("SELECT ARRAY(")


async def test_a_query_with_a_placeholder_in_a_literal_runs_alone(
    engine: AsyncEngine, backend: str
) -> None:
    ids = await _tariff_ids(engine)
    reader = RequestReader(engine)
    try:
        with Counting() as seen:
            quoted, by_ids = await asyncio.gather(
                reader.fetch(QUOTED, id=ids[0]), reader.fetch(BY_IDS, ids=ids[:1])
            )
    finally:
        await reader.close()
    assert [tuple(row) for row in quoted] == [("costs $1", ids[0])]
    assert [row.id for row in by_ids] == ids[:1]
    if backend == "postgresql":
        assert len(seen) == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_failing_query_fails_every_caller_and_the_connection_is_discarded(
    engine: AsyncEngine, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite divides by zero without an error; the combining is PostgreSQL's")
    ids = await _tariff_ids(engine)
    reader = RequestReader(engine)
    results: list[Any] = await asyncio.gather(
        reader.fetch(FAILS, ids=ids[:1], zero=0),
        reader.fetch(BY_IDS, ids=ids[:1]),
        return_exceptions=True,
    )
    assert all(isinstance(result, Exception) for result in results), results
    assert "division by zero" in str(results[0])
    assert reader._conn is not None
    driver = (await reader._conn.get_raw_connection()).driver_connection
    await reader.close()
    assert driver.is_closed()  # not back in the pool
    # and a new reader works
    reader = RequestReader(engine)
    try:
        assert [row.id for row in await reader.fetch(BY_IDS, ids=ids[:1])] == ids[:1]
    finally:
        await reader.close()


async def test_no_read_after_the_request_is_answered(engine: AsyncEngine) -> None:
    reader = RequestReader(engine)
    pending = asyncio.ensure_future(reader.fetch(CHEAPEST, limit=1))
    await reader.close()
    with pytest.raises(RuntimeError, match="no more reads"):
        await pending
    assert reader._conn is None
