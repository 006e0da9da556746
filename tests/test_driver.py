"""Statements on the driver (kabinet/db.py `driver_connection`, `DriverStatement`): the
payment confirmation's hot path runs on asyncpg in autocommit. Its errors must reach callers
as SQLAlchemy's, so that the webhook's retry rules see one family, and a lost connection must
not be handed to the next request, nor the pool's other connections, dead with it."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import STATEMENT_LISTENERS, DriverStatement, connection_lost, driver_connection
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
