"""Statements on the driver (kabinet/db.py `driver_connection`, `DriverStatement`): the
payment confirmation's hot path runs on asyncpg in autocommit. Its errors must reach callers
as SQLAlchemy's, so that the webhook's retry rules see one family, and a lost connection must
not be handed to the next request, nor the pool's other connections, dead with it."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

import core.db
from core.db import (
    STATEMENT_LISTENERS,
    BatchedStatement,
    DriverStatement,
    RunAlone,
    connection_lost,
    driver_connection,
    rows_parameter,
)
from models import Tariff
from tests.faults.test_db_drop import terminate_backend

_tariffs = Tariff.__table__  # type: ignore[attr-defined]

BY_CODE = DriverStatement(
    sa.select(_tariffs.c.id, _tariffs.c.code).where(
        _tariffs.c.code == sa.bindparam("code", type_=sa.String), _tariffs.c.id > 0
    )
)
SAME_CODE_AGAIN = DriverStatement(
    sa.text(
        "INSERT INTO tariffs SELECT * FROM tariffs WHERE code = CAST(:code AS VARCHAR) RETURNING id"
    )
)


@pytest.fixture
def pg_engine(engine: AsyncEngine, backend: str) -> AsyncEngine:
    if backend != "postgresql":
        pytest.skip("statements on the driver are PostgreSQL's")
    return engine


async def _a_code(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str(await conn.scalar(sa.select(_tariffs.c.code).limit(1)))


async def test_a_select_gives_rows_with_attributes_and_is_counted(pg_engine: AsyncEngine) -> None:
    code = await _a_code(pg_engine)
    seen: list[str] = []
    STATEMENT_LISTENERS.append(seen.append)
    try:
        async with driver_connection(pg_engine) as driver:
            row = await BY_CODE.fetchrow(driver, code=code)
            missing = await BY_CODE.fetchrow(driver, code="no-such-tariff")
    finally:
        STATEMENT_LISTENERS.remove(seen.append)
    assert row.code == code and isinstance(row.id, int)
    assert missing is None
    assert seen == [BY_CODE.sql, BY_CODE.sql]
    assert BY_CODE.fixed == {"id_1": 0}  # the statement's own literal, sent as a parameter


async def test_a_constraint_is_an_integrity_error_and_the_connection_stays(
    pg_engine: AsyncEngine,
) -> None:
    code = await _a_code(pg_engine)
    async with driver_connection(pg_engine) as first:
        pid = await first.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(IntegrityError) as raised:
        async with driver_connection(pg_engine) as driver:
            await SAME_CODE_AGAIN.fetchrow(driver, code=code)
    assert raised.value.orig.sqlstate == "23505"  # type: ignore[union-attr]
    assert not raised.value.connection_invalidated
    # the statement ended (in its own transaction): the connection went back to the pool
    async with driver_connection(pg_engine) as again:
        assert await again.fetchval("SELECT pg_backend_pid()") == pid
        assert not again.is_in_transaction()


async def test_a_lost_connection_is_discarded_with_the_pools_others(
    pg_engine: AsyncEngine, settings: Any
) -> None:
    from tests.conftest import PG_ADMIN_URL

    code = await _a_code(pg_engine)
    pool_before = pg_engine.sync_engine.pool
    with pytest.raises(OperationalError) as raised:
        async with driver_connection(pg_engine) as driver:
            await terminate_backend(PG_ADMIN_URL, await driver.fetchval("SELECT pg_backend_pid()"))
            await BY_CODE.fetchrow(driver, code=code)
    assert raised.value.connection_invalidated
    assert code not in str(raised.value)  # no values in the message
    assert pg_engine.sync_engine.pool is not pool_before  # the others went with it
    async with driver_connection(pg_engine) as driver:
        assert (await BY_CODE.fetchrow(driver, code=code)).code == code


async def test_a_shutdown_message_means_lost_before_the_socket_closes(
    pg_engine: AsyncEngine,
) -> None:
    """pg_terminate_backend and a restart send FATAL 57P01 first, then close the socket: a
    statement fails with that error, or with the driver's protocol stuck, while the driver
    may not yet know that the connection is closed. It counts as lost then too (else the
    pool's other dead connections would fail the next requests one by one); a constraint
    error on a live connection does not."""
    import asyncpg

    async with driver_connection(pg_engine) as driver:
        assert not driver.is_closed()
        assert connection_lost(driver, asyncpg.exceptions.AdminShutdownError("terminating"))
        assert connection_lost(driver, asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
        assert connection_lost(  # the FATAL message seen, the socket not yet closed
            driver, asyncpg.InternalClientError("cannot switch to state 11")
        )
        assert not connection_lost(driver, asyncpg.exceptions.UniqueViolationError("taken"))
        assert not connection_lost(driver, asyncpg.exceptions.DeadlockDetectedError("retry"))


# -- batched statements ---------------------------------------------------------------------

_NUMBERS = {"n": sa.Integer(), "pause": sa.Numeric(4, 2)}
_numbers = rows_parameter(_NUMBERS, "numbers")
# Each row's inverse, after a pause (so that a batch is still running when the next rows
# come); n = 0 fails the whole statement.
INVERSES = BatchedStatement(
    sa.select(
        _numbers.c.n,
        (sa.literal(Decimal(1)) / _numbers.c.n).label("inverse"),
        sa.cast(sa.func.pg_sleep(_numbers.c.pause), sa.Text).label("paused"),
    ),
    _NUMBERS,
    rows=True,
)


def _number(n: int, pause: str = "0") -> dict[str, Any]:
    return {"n": n, "pause": Decimal(pause)}


async def test_rows_arriving_while_a_batch_runs_are_run_together(pg_engine: AsyncEngine) -> None:
    seen: list[str] = []
    STATEMENT_LISTENERS.append(seen.append)
    try:
        async with driver_connection(pg_engine) as first, driver_connection(pg_engine) as second:
            # given: a row that runs at once (no batch ran before it), for a while
            running = asyncio.create_task(
                INVERSES.run(pg_engine, first, _number(1, "0.3"), keys=[1])
            )
            await asyncio.sleep(0.1)
            # when: the next row leads the next batch, and more rows come meanwhile
            leading = asyncio.create_task(INVERSES.run(pg_engine, second, _number(2), keys=[2]))
            await asyncio.sleep(0.05)
            joined = [INVERSES.join(pg_engine, _number(n), keys=[n]) for n in (4, 5)]
            again = INVERSES.join(pg_engine, _number(2), keys=[2])
            first_answer, batch_answer = await running, await leading
            joined_answers = [await answer for answer in joined if answer is not None]
    finally:
        STATEMENT_LISTENERS.remove(seen.append)
    # then: they were one statement, after the running one; a row of a key already in the
    # waiting batch was not let in (its caller runs it alone)
    assert seen == [INVERSES.statement.sql] * 2
    assert [row.n for row in first_answer] == [1]
    assert sorted(row.n for row in batch_answer) == [2, 4, 5]
    assert joined_answers == [batch_answer, batch_answer]
    assert again is None
    assert {row.n: row.inverse for row in batch_answer}[4] == Decimal("0.25")


async def test_when_a_batch_fails_each_of_its_rows_runs_alone(pg_engine: AsyncEngine) -> None:
    async with driver_connection(pg_engine) as first, driver_connection(pg_engine) as second:
        # given: a running batch, and the next one with a row that fails the statement
        running = asyncio.create_task(INVERSES.run(pg_engine, first, _number(1, "0.3"), keys=[1]))
        await asyncio.sleep(0.1)
        leading = asyncio.create_task(INVERSES.run(pg_engine, second, _number(2), keys=[2]))
        await asyncio.sleep(0.05)
        failing = INVERSES.join(pg_engine, _number(0), keys=[0])
        other = INVERSES.join(pg_engine, _number(5), keys=[5])
        assert failing is not None and other is not None
        await running
        # when the batch fails: the leader's row is run again alone, on its connection …
        assert [row.n for row in await leading] == [2]
        # … and the others are told to run theirs alone, each on its own
        for joined in (failing, other):
            with pytest.raises(RunAlone):
                await joined


async def test_the_next_batch_waits_for_the_running_one_for_a_while_only(
    pg_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch held up (here by its own pause; in life by another transaction's row lock)
    holds up its own rows, not every later one."""
    monkeypatch.setattr(core.db, "BATCH_WAIT_SECONDS", 0.05)
    async with driver_connection(pg_engine) as first, driver_connection(pg_engine) as second:
        running = asyncio.create_task(INVERSES.run(pg_engine, first, _number(1, "2"), keys=[1]))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        answer = await INVERSES.run(pg_engine, second, _number(2), keys=[2])
        waited = time.monotonic() - started
        assert not running.done()
        await running
    assert [row.n for row in answer] == [2]
    assert waited < 1


async def test_rows_given_as_text_keep_their_values(pg_engine: AsyncEngine) -> None:
    """Values travel as text and are cast to their columns' types; text is not cast (a
    VARCHAR(n) cast would cut a longer value, which the column then never refuses)."""
    from datetime import UTC, datetime

    columns = {
        "code": sa.String(3),
        "amount": sa.Numeric(12, 2),
        "at": sa.DateTime(timezone=True),
        "n": sa.BigInteger(),
    }
    given = rows_parameter(columns, "given")
    statement = BatchedStatement(sa.select(given), columns, rows=True)
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with driver_connection(pg_engine) as driver:
        (row,) = await statement.run(
            pg_engine,
            driver,
            {"code": "toolong", "amount": Decimal("12.34"), "at": at, "n": 2**40},
            keys=[1],
        )
    assert (row.code, row.amount, row.at, row.n) == ("toolong", Decimal("12.34"), at, 2**40)
