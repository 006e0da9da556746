"""Async engine and sessions for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections import namedtuple
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    String,
    Text,
    bindparam,
    cast,
    event,
    exc,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy import column as column_
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
from sqlalchemy.sql.elements import BindParameter, ClauseElement, ColumnElement
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.util.concurrency import greenlet_spawn

from core.errors import DomainError
from core.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "kabinet_write"


T = TypeVar("T")


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


MAX_CACHED_STATEMENT_BYTES = 64 * 1024


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
    max_overflow = kwargs.pop("max_overflow", None)
    if not isinstance(settings, str):
        pool_size = pool_size or settings.database_pool_size
        max_overflow = settings.database_max_overflow if max_overflow is None else max_overflow
    # Every statement is a prepared one (asyncpg). By default PostgreSQL plans each execution
    # afresh until it trusts a generic plan, which for our short indexed reads costs more
    # than running them (the overview's per-contract read: 0.76 ms planning, 0.25 ms
    # executing). Our statements are lookups by key and set-based verbs whose best plan
    # does not depend on the values bound, so the generic plan is used from the start.
    connect_args = kwargs.pop("connect_args", {})
    server_settings = {"plan_cache_mode": "force_generic_plan"}
    server_settings.update(connect_args.get("server_settings", {}))
    # asyncpg keeps a connection's prepared statements only up to 15 KiB of SQL text: a
    # longer one (the home page's one statement is 22 KiB) was parsed and planned again on
    # every request (~10 ms of PostgreSQL's CPU). The one-statement answers are bounded by
    # the document cost limit; 100 statements per connection of at most 64 KiB each.
    connect_args = {"max_cacheable_statement_size": MAX_CACHED_STATEMENT_BYTES, **connect_args}
    return create_async_engine(
        url,
        pool_size=pool_size or 10,
        max_overflow=10 if max_overflow is None else max_overflow,
        pool_pre_ping=False,
        connect_args={**connect_args, "server_settings": server_settings},
        **kwargs,
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def begin_write(session: AsyncSession) -> None:
    """Start the session's transaction as a writer.

    On SQLite this is BEGIN IMMEDIATE (writers queue on the busy timeout instead of failing
    when they upgrade a read lock); on PostgreSQL it is a plain BEGIN, and the verbs take
    row locks where they read what they then change.
    """
    if session.in_transaction():
        connection = (await session.connection()).sync_connection
        if connection is not None and connection.get_execution_options().get(WRITE_OPTION):
            return  # begun as a writer already (a request's unit of work begins so)
    await session.connection(execution_options={WRITE_OPTION: True})


@asynccontextmanager
async def _committed_unless_refused(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """The rule of every unit of work (RequestReader.write, unit_of_work): the verb's writes
    are committed when it returns, and rolled back when it raises (by the session's close,
    which ends the block) - but for a DomainError with `keep_writes`, whose writes are
    committed before it goes on (a counted attempt, a revoked session family)."""
    try:
        yield session
    except DomainError as error:
        if error.keep_writes and not _untouched(session):
            await session.commit()
        raise
    if not _untouched(session):
        await session.commit()


def _untouched(session: AsyncSession) -> bool:
    """Whether the session has done nothing: no transaction begun, no object added, loaded
    or deleted. Such a session has nothing to commit, roll back or close (the webhook's
    one-statement confirmation runs beside its unit of work's session, never in it, and
    committing and closing the unused session cost more than the confirmation's own Python)."""
    return (
        not session.in_transaction()
        and not session.identity_map
        and not session.new
        and not session.deleted
    )


@asynccontextmanager
async def unit_of_work(
    source: AsyncEngine | Callable[[], AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A unit of work outside a request (the CLI, the payment webhook, the billing day's
    batches, the outbox worker, tests): a session of its own from `source` (an engine or a
    session factory), under the rule of RequestReader.write:

        async with unit_of_work(session_factory) as session:
            await payments.apply_provider_event(session, ...)

    commits when the block ends normally; rolls back when it raises, unless the error is a
    DomainError with `keep_writes` (committed, then raised). The verbs never commit.

    No connection is taken before the work's first statement (the webhook's one-statement
    confirmation runs on a connection of its own and never needs the session's); the work
    begins the transaction as a writer itself (`begin_write`, every verb's first step)."""
    factory = create_session_factory(source) if isinstance(source, AsyncEngine) else source
    session = factory()
    try:
        async with _committed_unless_refused(session):
            yield session
    finally:
        if not _untouched(session):
            await asyncio.shield(session.close())  # as AsyncSession's own `async with`


async def in_own_transaction(
    database: Settings | str, work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """`work` in one unit of work on an engine of its own, disposed after (the CLI's commands
    and the seeding of a fresh database: no request, no pool to share)."""
    engine = create_engine(database)
    try:
        async with unit_of_work(engine) as session:
            await begin_write(session)
            return await work(session)
    finally:
        await engine.dispose()


def rowcount(result: object) -> int:
    """The rows an UPDATE or DELETE matched. AsyncSession.execute is typed as returning a
    plain Result; for such a statement it is a CursorResult, which counts them."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"no row count in {type(result).__name__}")
    return result.rowcount


async def read_rows(source: Any, statement: Executable) -> Sequence[Any]:
    """Rows of `statement` from a request's reader (`rows(statement)`) or an AsyncSession:
    the read verbs serve both a GraphQL request and a writing transaction."""
    rows = getattr(source, "rows", None)
    if rows is not None:
        return list(await rows(statement))
    return (await source.execute(statement)).all()


class RequestReader:
    """A request's one pooled connection, and the only way a request reaches the database:
    taken on first use, used by one statement at a time (Strawberry resolves sibling fields
    concurrently), given back by `close()` when the response is built.

    Reads go through `rows`/`fetch`; a write is `async with reader.write() as session`, an
    AsyncSession on this same connection. While a write is open, every read of the request
    (the verb's ownership check, a loader's batch) runs inside the write's transaction on
    that connection. So a request never holds two pooled connections, by construction:
    with N connections in the pool, N requests in flight can never all wait for a second
    one (SPEC §5; issue 13 item 1)."""

    __slots__ = (
        "_broken",
        "_closed",
        "_conn",
        "_driver",
        "_engine",
        "_flushing",
        "_lock",
        "_queue",
        "_writing",
    )

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
        # Fetches waiting for the next combined statement (PostgreSQL), and the task sending
        # the last one (kept referenced until it is done).
        self._queue: list[tuple[ReadQuery, dict[str, Any], asyncio.Future[Any]]] | None = None
        self._flushing: asyncio.Future[None] | None = None
        # The session of the write in progress, if any: reads meanwhile go through it.
        self._writing: AsyncSession | None = None

    @property
    def is_postgresql(self) -> bool:
        return bool(self._engine.dialect.name == "postgresql")

    async def _connection(self) -> AsyncConnection:
        if self._closed:
            raise RuntimeError("the request has finished: no more reads")
        if self._conn is None:
            self._conn = await self._engine.connect()
        return self._conn

    async def rows(self, statement: Executable) -> Sequence[Row[Any]]:
        writing = self._writing
        if writing is not None:
            # The write holds the lock and the connection: read inside its transaction.
            return (await writing.execute(statement)).all()
        async with self._lock:
            try:
                result = await (await self._connection()).execute(statement)
                return result.all()
            except BaseException:
                self._broken = True
                raise

    async def fetch(self, query: ReadQuery, **params: Any) -> list[Any]:
        """Run a ReadQuery. On PostgreSQL it goes straight to asyncpg with SQL compiled once
        (no per-call compilation, cache-key building or greenlet hop), and every fetch asked
        for in one round of the event loop (the loaders of one level of a GraphQL answer)
        travels in one combined statement (see _combined_sql). Elsewhere it runs through
        SQLAlchemy. Rows have the same attribute names either way."""
        if self._engine.dialect.name != "postgresql" or self._writing is not None:
            return list(await self.rows(query.statement.params(**params)))
        if self._closed:
            raise RuntimeError("the request has finished: no more reads")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[list[Any]] = loop.create_future()
        if not query.combinable(self._engine.dialect):
            await self._flush([(query, params, waiter)])  # sent alone, at once
            return waiter.result()
        if self._queue is None:
            self._queue = []
            # Sent on the loop's next round: by then every task that was ready alongside
            # this one (the sibling fields and loaders of one level) has asked too.
            loop.call_soon(self._flush_queued)
        self._queue.append((query, params, waiter))
        return await waiter

    def _flush_queued(self) -> None:
        batch, self._queue = self._queue or [], None
        self._flushing = asyncio.ensure_future(self._flush(batch))

    async def _flush(
        self, batch: list[tuple[ReadQuery, dict[str, Any], asyncio.Future[Any]]]
    ) -> None:
        live = [item for item in batch if not item[2].done()]  # a cancelled waiter is gone
        if not live:
            return
        if self._writing is not None:
            # Queued just before a write began: the write holds the lock, so these are
            # answered inside it rather than waiting for it (its verb may be waiting on them).
            for query, params, waiter in live:
                try:
                    found = list(await self.rows(query.statement.params(**params)))
                except Exception as error:
                    if not waiter.done():
                        waiter.set_exception(error)
                else:
                    if not waiter.done():
                        waiter.set_result(found)
            return
        try:
            async with self._lock:
                if self._driver is None:
                    raw = await (await self._connection()).get_raw_connection()
                    self._driver = raw.driver_connection
                queries = tuple(query for query, _, _ in live)
                sql, names = _combined_sql(queries, self._engine.dialect)
                for listener in STATEMENT_LISTENERS:
                    listener(sql)
                values = []
                for (query, params, _), query_names in zip(live, names, strict=True):
                    fixed = query.compiled_for(self._engine.dialect)[2]
                    values += _ordered(query_names, fixed, params)
                try:
                    if len(live) == 1:
                        results = [await self._driver.fetch(sql, *values)]
                    else:
                        record = await self._driver.fetchrow(sql, *values)
                        results = list(record)
                except BaseException:
                    self._broken = True
                    raise
        except BaseException as error:
            for _, _, waiter in live:
                if waiter.done():
                    continue
                if isinstance(error, asyncio.CancelledError):
                    waiter.cancel()
                else:
                    waiter.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for (query, _, waiter), records in zip(live, results, strict=True):
            if not waiter.done():
                make = query.row_type._make
                waiter.set_result([make(record) for record in records])

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """The request's unit of work, the single owner of its transaction: a session on the
        request's own connection, begun as a writer, for one verb. The verb never commits
        nor rolls back:

        - the verb returns: its writes are committed;
        - the verb raises (a DomainError, or anything unexpected): they are rolled back;
        - the verb raises a DomainError with `keep_writes`: they are committed, then the
          error goes on to become the payload. That is how a verb keeps a write that must
          outlive its refusal: the attempt a wrong password or code counted
          (`login`, `changePassword`, `register`, `resetPassword`), the session family a
          reused refresh token revoked (`refreshSession`).

        The read transaction before it is ended first, so the write sees what is
        committed, and the reads after it see what it committed. Outside a request the same
        rule is `unit_of_work`."""
        async with self._lock:
            conn = await self._connection()
            if conn.in_transaction():
                await conn.rollback()
            session = AsyncSession(bind=conn, expire_on_commit=False, autoflush=False)
            self._writing = session
            try:
                # Begun as a writer before the verb's first read (its ownership check), so
                # that SQLite never upgrades a read lock under a concurrent writer.
                await begin_write(session)
                async with _committed_unless_refused(session):
                    yield session
            except asyncio.CancelledError:
                self._broken = True  # maybe interrupted midway: its state is unknown
                raise
            finally:
                self._writing = None
                try:
                    await session.close()  # rolls back what was not committed
                    if conn.in_transaction():
                        await conn.rollback()
                    # begin_write set BEGIN IMMEDIATE on this connection (SQLite); reads
                    # after the write begin plainly again.
                    await conn.execution_options(**{WRITE_OPTION: False})
                except BaseException:
                    self._broken = True
                    raise

    async def write_at_once(self, statement: DriverStatement, **params: Any) -> Any:
        """PostgreSQL: one writing statement in its own transaction (autocommit) on the
        request's connection, straight to the driver: one round trip, no BEGIN or COMMIT.
        A read transaction open on the connection is ended first. Its row, if any."""
        if self._writing is not None:
            raise RuntimeError("a write is in progress: write inside it")
        async with self._lock:
            try:
                conn = await self._connection()
                if conn.in_transaction():
                    await conn.rollback()
                if self._driver is None:
                    self._driver = (await conn.get_raw_connection()).driver_connection
                return await statement.fetchrow(self._driver, **params)
            except BaseException:
                self._broken = True
                raise

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


_COMBINED: dict[tuple[ReadQuery, ...], tuple[str, list[list[str]]]] = {}
_COMBINED_LIMIT = 512
_PLACEHOLDER = re.compile(r"\$(\d+)")
_QUOTED = re.compile(r"'(?:[^']|'')*'")


def _renumbered(sql: str, offset: int) -> str:
    """`sql` with its placeholders $1, $2, ... moved up by `offset`."""

    def shifted(match: re.Match[str]) -> str:
        return f"${int(match.group(1)) + offset}"

    return _PLACEHOLDER.sub(shifted, sql)


def _combined_sql(queries: tuple[ReadQuery, ...], dialect: Any) -> tuple[str, list[list[str]]]:
    """One statement answering every query: a row of arrays of anonymous records, one array
    per query (asyncpg decodes the records with their columns' own types), its placeholders
    renumbered one query after the other. A single query is sent as it is."""
    found = _COMBINED.get(queries)
    if found is not None:
        return found
    if len(queries) == 1:
        sql, names, _ = queries[0].compiled_for(dialect)
        found = (sql, [names])
    else:
        parts, all_names, offset = [], [], 0
        for query in queries:
            sql, names, _ = query.compiled_for(dialect)
            if offset:
                sql = _renumbered(sql, offset)
            parts.append(f"ARRAY(SELECT ROW(q.*) FROM ({sql}) AS q)")
            all_names.append(names)
            offset += len(names)
        found = ("SELECT " + ", ".join(parts), all_names)
    if len(_COMBINED) >= _COMBINED_LIMIT:
        _COMBINED.clear()
    _COMBINED[queries] = found
    return found


# Called with the SQL of every statement the fast path sends (SQLAlchemy's own events do not
# see it): tests count statements per request with it.
STATEMENT_LISTENERS: list[Callable[[str], None]] = []


def _row_type(statement: Any) -> Any:
    """The row class of a SELECT's records: its columns as attributes."""
    return namedtuple("Row", [column.key for column in statement.selected_columns])


def _ordered(names: list[str], fixed: dict[str, Any], params: dict[str, Any]) -> list[Any]:
    """The values for the placeholders `names`: the caller's, else the statement's own."""
    return [params[name] if name in params else fixed[name] for name in names]


def compiled_for_driver(statement: Any, dialect: Any) -> tuple[str, list[str], dict[str, Any]]:
    """`statement` as its driver runs it: (SQL, parameter names in placeholder order, values
    of the statement's own literals)."""
    compiled = statement.compile(dialect=dialect)
    names = list(compiled.positiontup or [])
    fixed = {
        name: bind.value
        for name, bind in ((n, compiled.binds[n]) for n in names)
        if bind.value is not None
    }
    return compiled.string, names, fixed


class DriverStatement:
    """A PostgreSQL statement compiled once for asyncpg, run on `driver_connection`'s
    connection with named parameters: `await statement.fetchrow(driver, name=value, …)`.
    A SELECT's row has its columns as attributes (like a ReadQuery's); another statement's
    row is the driver's record."""

    __slots__ = ("fixed", "names", "row_type", "sql")

    def __init__(self, statement: Any) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        self.sql, self.names, self.fixed = compiled_for_driver(statement, dialect())
        selects = hasattr(statement, "selected_columns")
        self.row_type: Any = _row_type(statement) if selects else None

    async def fetchrow(self, driver: Any, **params: Any) -> Any:
        for listener in STATEMENT_LISTENERS:
            listener(self.sql)
        record = await driver.fetchrow(self.sql, *_ordered(self.names, self.fixed, params))
        if record is None or self.row_type is None:
            return record
        return self.row_type._make(record)

    async def fetch(self, driver: Any, **params: Any) -> list[Any]:
        """Every row (a SELECT's, with its columns as attributes)."""
        for listener in STATEMENT_LISTENERS:
            listener(self.sql)
        records = await driver.fetch(self.sql, *_ordered(self.names, self.fixed, params))
        if self.row_type is None:
            return list(records)
        return [self.row_type._make(record) for record in records]


# How long the next batch waits for the running one at most (a batch runs in milliseconds).
BATCH_WAIT_SECONDS = 0.1


class RunAlone(Exception):
    """Said to the callers that joined a batch that failed, or whose leader was cancelled
    before it ran: each runs its row alone (one row's error is its own caller's only)."""


class _Batch:
    __slots__ = ("keys", "rows", "waiters")

    def __init__(self, row: dict[str, Any], keys: Iterable[Hashable]) -> None:
        self.rows = [row]
        self.keys = set(keys)
        self.waiters: list[asyncio.Future[Any]] = []  # the rows' but the leader's


class BatchedStatement:
    """A set-based statement (its rows one array parameter per column: `rows_parameter`)
    that the concurrent callers of a process run together, as PostgreSQL's group commit
    does for transactions. Each statement and its commit cost PostgreSQL far more than a
    row more does (16 payment confirmations at once: 0.2 ms of its CPU each, one alone
    0.6 ms), and the callers' round trips are one.

    A caller first tries to `join` the batch that waits for its turn: if it may, it awaits
    the statement's answer holding no connection. Otherwise it `run`s its row on its own
    connection: when no batch of the same engine is running, at once (no wait under a
    light load); when one is, it leads the next: it waits until that one ends, while the
    callers arriving meanwhile join, then runs the statement for all of their rows. It
    waits `BATCH_WAIT_SECONDS` at most: a batch held up by another transaction's row lock
    holds up its own rows only. Every caller gets the statement's row (or rows, `rows`) for
    the batch its row was in. A row whose `keys` are a row's of the waiting batch (the same
    payment, contract or account: one statement writes a row once) runs alone at once; so
    does every row of a batch that failed, each on its caller's own connection, so that
    only the failing row's caller sees its error."""

    __slots__ = ("_open", "_running", "columns", "max_rows", "rows", "statement")

    def __init__(
        self, statement: Any, columns: Iterable[str], *, max_rows: int = 64, rows: bool = False
    ) -> None:
        self.statement = DriverStatement(statement)
        self.columns = tuple(columns)  # its `rows_parameter`'s
        self.max_rows = max_rows
        self.rows = rows  # the answer: every row of the statement, not its one row
        # by engine (a batch's rows are one database's): the batch still gathering rows,
        # and the one running (set when it has ended)
        self._open: weakref.WeakKeyDictionary[Any, _Batch] = weakref.WeakKeyDictionary()
        self._running: weakref.WeakKeyDictionary[Any, asyncio.Event] = weakref.WeakKeyDictionary()

    def join(
        self, engine: AsyncEngine, row: dict[str, Any], *, keys: Iterable[Hashable]
    ) -> asyncio.Future[Any] | None:
        """Add `row` to the batch of `engine` that waits for its turn, if there is one and
        none of its rows has any of `keys`: the future of the statement's answer (RunAlone
        if the batch fails). The caller needs no connection while it waits. None: no batch
        to join (`run` the row)."""
        batch = self._open.get(engine.sync_engine)
        if batch is None or not batch.keys.isdisjoint(keys) or len(batch.rows) >= self.max_rows:
            return None
        batch.rows.append(row)
        batch.keys.update(keys)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch.waiters.append(answer)
        return answer

    async def run(
        self, engine: AsyncEngine, driver: Any, row: dict[str, Any], *, keys: Iterable[Hashable]
    ) -> Any:
        """Run `row` on `driver`: leading a new batch (which the rows that `join` meanwhile
        are in), or alone when a batch is already waiting for its turn (this row does not
        wait for it)."""
        where = engine.sync_engine
        if where in self._open:
            return await self._alone(driver, row)
        return await self._lead(where, driver, row, tuple(keys))

    async def _alone(self, driver: Any, row: dict[str, Any]) -> Any:
        return await self._execute(driver, [row])

    async def _execute(self, driver: Any, rows: list[dict[str, Any]]) -> Any:
        given = as_arrays(rows, self.columns)
        if self.rows:
            return await self.statement.fetch(driver, **given)
        return await self.statement.fetchrow(driver, **given)

    async def _lead(
        self, where: Any, driver: Any, row: dict[str, Any], keys: tuple[Hashable, ...]
    ) -> Any:
        batch = self._open[where] = _Batch(row, keys)
        try:
            # (bounded: a batch held up by a row lock of a long transaction holds up its
            # own rows, not every later one)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BATCH_WAIT_SECONDS):
                    while (running := self._running.get(where)) is not None:
                        await running.wait()
        except BaseException:
            _tell(batch.waiters, RunAlone())
            raise
        finally:
            if self._open.get(where) is batch:
                del self._open[where]  # closed: the next caller leads the next batch
        ended = self._running[where] = asyncio.Event()
        try:
            answer = await self._execute(driver, batch.rows)
        except BaseException as error:
            _tell(batch.waiters, RunAlone())
            if not batch.waiters or not isinstance(error, Exception):
                raise
            answer = RunAlone
        finally:
            if self._running.get(where) is ended:
                del self._running[where]
            ended.set()
        if answer is RunAlone:
            return await self._alone(driver, row)
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(answer)
        return answer


def _tell(waiters: list[asyncio.Future[Any]], error: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)


# SQLSTATE classes of a connection that is gone: connection exceptions, and the server's
# shutdowns (57P01 admin_shutdown, what pg_terminate_backend and a restart send; 57P02
# crash_shutdown; 57P03 cannot_connect_now).
_LOST_SQLSTATES = ("08", "57P")


def connection_lost(driver: Any, error: BaseException) -> bool:
    """Whether `error` on the asyncpg connection `driver` means the server is gone. The
    server's FATAL message arrives before the socket closes: a statement sent in between
    fails with that message, or with the driver's protocol in a state it cannot leave
    (InternalClientError), while the driver does not yet say the connection is closed."""
    import asyncpg

    if driver.is_closed() or isinstance(error, asyncpg.InternalClientError | OSError):
        return True
    code = getattr(error, "sqlstate", None) or ""
    return code.startswith(_LOST_SQLSTATES)


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """PostgreSQL: a pooled connection's asyncpg connection in autocommit, every statement
    its own transaction, without SQLAlchemy's per-statement path (for the hottest writes,
    made of one statement each).

    The driver's errors leave as SQLAlchemy's (IntegrityError for a constraint, OperationalError
    otherwise, the driver's error as `orig`, no values), so callers handle one family. A
    statement that did not finish leaves the connection discarded; a lost connection also
    discards the pool's others, as SQLAlchemy does when it sees one (a database restart kills
    them all, and the pool does not ping)."""
    import asyncpg

    # The pool's connection itself, without a SQLAlchemy Connection around it (which cost
    # more than the statements' own Python); the pool still resets and counts it.
    pooled = await engine.raw_connection()
    handed_back = False  # (invalidating hands the connection back to the pool too)
    try:
        driver: Any = pooled.driver_connection
        try:
            yield driver
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
        ) as error:
            lost = connection_lost(driver, error)
            if lost or not isinstance(error, asyncpg.PostgresError):
                handed_back = True
                await greenlet_spawn(pooled.invalidate)
            if lost:
                await engine.dispose()
            kind = (
                exc.IntegrityError
                if isinstance(error, asyncpg.IntegrityConstraintViolationError)
                else exc.OperationalError
            )
            raise kind(
                "(a statement on the driver)",
                None,
                error,
                hide_parameters=True,
                connection_invalidated=lost,
            ) from error
        except asyncio.CancelledError:
            handed_back = True
            await greenlet_spawn(pooled.invalidate)  # maybe interrupted midway: state unknown
            raise
    finally:
        if not handed_back:
            await greenlet_spawn(pooled.close)  # back to the pool (closed if the pool is full)


class ReadQuery:
    """A read statement compiled once per dialect, for `RequestReader.fetch`.

    Write list parameters with `one_of(column, "name")`: PostgreSQL gets `= ANY($n)` with an
    array (one SQL text whatever the list length), SQLite an expanding IN.
    """

    __slots__ = ("_combinable", "_compiled", "row_type", "statement")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self.row_type = _row_type(statement)
        self._compiled: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
        self._combinable: dict[str, bool] = {}

    def compiled_for(self, dialect: Any) -> tuple[str, list[str], dict[str, Any]]:
        """(SQL, parameter names in order, values of the statement's own literals)."""
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compiled[dialect.name] = compiled_for_driver(self.statement, dialect)
        return found

    def combinable(self, dialect: Any) -> bool:
        """Whether the SQL can go into a combined statement: its placeholders are renumbered
        as text, so none may hide in a quoted literal."""
        found = self._combinable.get(dialect.name)
        if found is None:
            sql = self.compiled_for(dialect)[0]
            unquoted = _QUOTED.sub("''", sql)
            found = len(_PLACEHOLDER.findall(unquoted)) == len(_PLACEHOLDER.findall(sql))
            self._combinable[dialect.name] = found
        return found


class _OneOf(ColumnElement[Any]):
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


# -- writes as builders ---------------------------------------------------------------------
#
# The module that owns a table owns the statements that write it, as builders: functions
# that return an INSERT or UPDATE whose values are SQL expressions. Given named parameters,
# a builder's statement runs alone (built once, executed with a row of values, one after
# another in the caller's transaction); given columns of other statements' RETURNING, it is
# a part of one composed statement (PostgreSQL: data-modifying CTEs), and writes once per
# row they return. One builder, both ways: no second spelling of another module's rows.


def parameters(names: Sequence[str], prefix: str = "") -> dict[str, Any]:
    """`{name: :<prefix><name>}` for a builder's values; the builder types each parameter
    by the column it fills. Run it with `prefixed(row, prefix)`."""
    return {name: bindparam(prefix + name) for name in names}


def prefixed(row: Any, prefix: str) -> dict[str, Any]:
    """A row's values under the names `parameters(…, prefix)` gave them."""
    return {prefix + name: value for name, value in row.items()}


def rows_parameter(columns: dict[str, Any], name: str) -> Any:
    """PostgreSQL: many rows as one parameter per column (an array of text each, `unnest`
    of them all, each value cast to its column's type), a FROM item named `name` whose
    columns are `columns` (name: type). A builder given its columns as values writes once
    per row: many payments' confirmations in one statement. Run it with `as_arrays(rows,
    columns)`. (Arrays of text, because asyncpg looks up the other array types on each
    connection's first use: 8 ms, one more round trip.)"""
    given = (
        func.unnest(*(bindparam(column, type_=postgresql.ARRAY(Text)) for column in columns))
        .table_valued(*(column_(column, Text) for column in columns))
        .render_derived(name=f"{name}_given")
    )
    return select(
        *(_typed(given.c[column], kind).label(column) for column, kind in columns.items())
    ).subquery(name)


def _typed(text: Any, kind: Any) -> Any:
    # Text stays text: an explicit cast to VARCHAR(n) would cut a longer value, where the
    # INSERT into the column refuses it.
    if issubclass(kind._type_affinity, String):
        return text
    return cast(text, kind)


def as_arrays(rows: Sequence[dict[str, Any]], columns: Iterable[str]) -> dict[str, list[Any]]:
    """The parameters of `rows_parameter(columns)` for `rows`: one list per column, of the
    values as PostgreSQL reads them from text."""
    return {column: [_as_text(row[column]) for row in rows] for column in columns}


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # int, Decimal


def as_column_value(value: Any, column: Any) -> Any:
    """`value` as an SQL expression for `column`: an untyped parameter gets the column's
    type (PostgreSQL must know a SELECT's parameter types), a Python value becomes a bound
    constant of that type, any other expression stays as it is."""
    if isinstance(value, BindParameter):
        if isinstance(value.type, NullType):
            return bindparam(value.key, type_=column.type)
        return value
    if isinstance(value, ClauseElement):
        return value
    return literal(value, column.type)


def insert_row(
    insert: Any, values: dict[str, Any], *, when: Any = None, order_by: Any = None
) -> Any:
    """`insert` (a table's, or a dialect's for an upsert) of the row `values`, as
    `INSERT … SELECT <values> [WHERE when] [ORDER BY order_by]`: one row, or none when
    `when` is false; one per row of other tables or statements when values are their columns
    (a CTE in a composed statement, a table of many rows at once)."""
    columns = insert.table.c
    row = select(
        *(as_column_value(value, columns[name]).label(name) for name, value in values.items())
    )
    if when is not None:
        row = row.where(when)
    if order_by is not None:
        row = row.order_by(order_by)
    return insert.from_select(list(values), row)


def exists_in(statement: Any) -> Any:
    """Whether `statement` (a CTE of a composed statement) has a row: a composed part's
    `when`, so that a part writes only if another one did."""
    return select(literal_column("1")).select_from(statement).exists()
