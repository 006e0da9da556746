"""Async engine and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.base import Executable

from kabinet.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "kabinet_write"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer writes; the busy timeout makes a second writer
    # wait instead of failing; SQLite leaves foreign keys off unless asked per connection.
    # Transactions start as BEGIN IMMEDIATE (see _sqlite_begin) so that two writers never
    # both read and then collide on upgrade to a write lock.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_engine(settings: Settings | str, **kwargs: Any) -> AsyncEngine:
    url = settings if isinstance(settings, str) else settings.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    pool_size = kwargs.pop("pool_size", None)
    if pool_size is None and not isinstance(settings, str):
        pool_size = settings.database_pool_size
    return create_async_engine(
        url, pool_size=pool_size or 10, max_overflow=10, pool_pre_ping=False, **kwargs
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a writer.

    On SQLite this is BEGIN IMMEDIATE (writers queue on the busy timeout instead of failing
    when they upgrade a read lock); on PostgreSQL it is a plain BEGIN, and the verbs take
    row locks where they read what they then change.
    """
    await session.connection(execution_options={WRITE_OPTION: True})


class RequestReader:
    """The read side of one request: one pooled connection, taken on first use and used by
    one statement at a time (Strawberry resolves sibling fields concurrently), released by
    `close()` when the response is built."""

    __slots__ = ("_conn", "_engine", "_lock")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def rows(self, statement: Executable) -> Sequence[Row[Any]]:
        async with self._lock:
            if self._conn is None:
                self._conn = await self._engine.connect()
            result = await self._conn.execute(statement)
            return result.all()

    async def release(self) -> None:
        """End the read transaction, so that the next read sees what a write just committed
        (SQLite keeps a snapshot for the life of a read transaction)."""
        async with self._lock:
            await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()  # rolls back the read transaction and returns it to the pool
