"""Async engine and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row, Select, bindparam, event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.sqltypes import NullType

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
    # Database errors must not carry the statement's values into logs (letters hold
    # temporary passwords, rows hold personal data: SPEC §5).
    kwargs.setdefault("hide_parameters", True)
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


async def read_rows(source: Any, statement: Executable) -> Sequence[Any]:
    """Rows of `statement` from a request's reader (`rows(statement)`) or an AsyncSession:
    the read verbs serve both a GraphQL request and a writing transaction."""
    rows = getattr(source, "rows", None)
    if rows is not None:
        return list(await rows(statement))
    return (await source.execute(statement)).all()


class RequestReader:
    """The read side of one request: one pooled connection, taken on first use and used by
    one statement at a time (Strawberry resolves sibling fields concurrently), released by
    `close()` when the response is built."""

    __slots__ = ("_broken", "_closed", "_conn", "_driver", "_engine", "_lock")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._lock = asyncio.Lock()
        # A statement interrupted midway (GraphQL cancels sibling resolvers when one fails on
        # a non-null field) leaves the connection in an unknown state: it is then discarded,
        # never handed to the next request.
        self._broken = False
        # Set when the response is built: a resolver (or a loader's batch) still running
        # after execution ended must not open a connection that nobody would give back.
        self._closed = False

    async def _connection(self) -> AsyncConnection:
        if self._closed:
            raise RuntimeError("the request has finished: no more reads")
        if self._conn is None:
            self._conn = await self._engine.connect()
        return self._conn

    async def rows(self, statement: Executable) -> Sequence[Row[Any]]:
        async with self._lock:
            try:
                result = await (await self._connection()).execute(statement)
                return result.all()
            except BaseException:
                self._broken = True
                raise

    async def fetch(self, query: ReadQuery, **params: Any) -> list[Any]:
        """Run a ReadQuery. On PostgreSQL it goes straight to asyncpg with SQL compiled once
        (no per-call compilation, cache-key building or greenlet hop); elsewhere through
        SQLAlchemy. Rows have the same attribute names either way."""
        if self._engine.dialect.name != "postgresql":
            return list(await self.rows(query.statement.params(**params)))
        async with self._lock:
            if self._driver is None:
                raw = await (await self._connection()).get_raw_connection()
                self._driver = raw.driver_connection
            sql, names, fixed = query.compiled_for(self._engine.dialect)
            for listener in STATEMENT_LISTENERS:
                listener(sql)
            values = [params[name] if name in params else fixed[name] for name in names]
            try:
                records = await self._driver.fetch(sql, *values)
            except BaseException:
                self._broken = True
                raise
        make = query.row_type._make
        return [make(record) for record in records]

    async def release(self) -> None:
        """End the read transaction, so that the next read sees what a write just committed
        (SQLite keeps a snapshot for the life of a read transaction)."""
        async with self._lock:
            await self._give_back()

    async def close(self) -> None:
        """The request is answered: give the connection back, and refuse any later read."""
        self._closed = True
        async with self._lock:
            await self._give_back()

    async def _give_back(self) -> None:
        conn, self._conn = self._conn, None
        self._driver = None
        broken, self._broken = self._broken, False
        if conn is not None and broken:
            await conn.invalidate()
            await conn.close()
            return
        if conn is not None:
            await conn.close()  # rolls back the read transaction and returns it to the pool


# Called with the SQL of every statement the fast path sends (SQLAlchemy's own events do not
# see it): tests count statements per request with it.
STATEMENT_LISTENERS: list[Callable[[str], None]] = []


class ReadQuery:
    """A read statement compiled once per dialect, for `RequestReader.fetch`.

    Write list parameters with `one_of(column, "name")`: PostgreSQL gets `= ANY($n)` with an
    array (one SQL text whatever the list length), SQLite an expanding IN.
    """

    __slots__ = ("_compiled", "row_type", "statement")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        names = [column.key for column in statement.selected_columns]
        self.row_type = namedtuple("Row", names)  # type: ignore[misc]
        self._compiled: dict[str, tuple[str, list[str], dict[str, Any]]] = {}

    def compiled_for(self, dialect: Any) -> tuple[str, list[str], dict[str, Any]]:
        """(SQL, parameter names in order, values of the statement's own literals)."""
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            names = list(compiled.positiontup or [])
            fixed = {
                name: bind.value
                for name, bind in ((n, compiled.binds[n]) for n in names)
                if bind.value is not None
            }
            found = self._compiled[dialect.name] = (compiled.string, names, fixed)
        return found


class _OneOf(ColumnElement[bool]):
    inherit_cache = True
    # Untyped on purpose: a Boolean-typed element gets "= 1" appended on SQLite.
    type = NullType()

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.name = name


def one_of(column: Any, name: str) -> ColumnElement[bool]:
    """`column` is one of the list given as parameter `name`."""
    return _OneOf(column, name)


@compiles(_OneOf, "postgresql")
def _one_of_postgresql(element: _OneOf, compiler: Any, **kw: Any) -> str:
    array = bindparam(element.name, type_=postgresql.ARRAY(element.column.type))
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(array, **kw)})"


@compiles(_OneOf)
def _one_of_default(element: _OneOf, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)
