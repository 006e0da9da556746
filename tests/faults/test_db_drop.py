"""Faults: the database connection drops in the middle of a top-up confirmation (issue 7,
item 3). Nothing partial may be committed, the webhook must not answer 200 (the provider
retries only what is not acknowledged), and the provider's retry must apply it exactly once.

PostgreSQL: the transaction applying the webhook is paused at a known point, its backend is
killed from a second connection with `pg_terminate_backend`, then it is let go. SQLite has
no server to kill: the same point raises the OperationalError a lost file would.

Also: a connection lost after COMMIT reached the database (the retry is a replay); every
pooled connection killed at once (a database restart); and what the logs say about such a
failure (SPEC §5: no personal data in logs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

import resolvers.bonus
import resolvers.ledger
import resolvers.payments
import resolvers.recovery
import resolvers.registration
from core.db import create_engine
from core.logs import JsonFormatter
from core.payment_providers import sign
from core.settings import Settings
from kabinet.app import create_app
from models import BonusAccount, BonusEntry, LedgerEntry, OutboxMessage, PaymentEvent, Receipt
from tests.factories import make_subscriber
from tests.live import serve_in_thread
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import balance_of, count, event_body, payment_row, post_event, top_up

# Where the confirmation is cut, whether the cut comes after the call, and which way of
# confirming it cuts: on PostgreSQL a plain contract's confirmation is a read and one
# statement, each its own transaction (resolvers.payments._credit_at_once), cut between the
# two; the step-by-step way (SQLite, and PostgreSQL for promises and suspensions) is cut
# between the statements of its transaction, on PostgreSQL with the one statement declined
# so that the step-by-step way runs.
STEP_BY_STEP, AT_ONCE = "step-by-step", "at-once"
POINTS = {
    # the balance is updated and the TOP_UP row written, nothing else yet
    "after-the-ledger-row": (resolvers.ledger, "post", True, STEP_BY_STEP),
    # money moved, promise and suspension handled, points not yet accrued
    "before-the-points": (resolvers.bonus, "accrue_for_top_up", False, STEP_BY_STEP),
    # all of it done (receipt written, letter added to the session): only COMMIT is left
    "before-the-commit": (resolvers.payments, "_credit", True, STEP_BY_STEP),
    # PostgreSQL: the payment is read; the one statement that writes everything is next
    "before-the-one-statement": (resolvers.payments, "_credit_at_once", False, AT_ONCE),
}


async def _decline_at_once(*_args: Any, **_kwargs: Any) -> None:
    return None


EFFECTS = (LedgerEntry, PaymentEvent, Receipt, BonusEntry, OutboxMessage)


class Cut:
    """Cuts the first transaction that reaches the patched call; later ones pass."""

    def __init__(self, backend: str, admin_url: str) -> None:
        self.backend = backend
        self.admin_url = admin_url
        self.fired = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.pid: int | None = None

    def wrap(self, original: Callable[..., Awaitable[Any]], *, after: bool) -> Any:
        async def cut_here(session: Any, *args: Any, **kwargs: Any) -> Any:
            result = await original(session, *args, **kwargs) if after else None
            if not self.fired:
                self.fired = True
                await self.hit(session)
            return result if after else await original(session, *args, **kwargs)

        return cut_here

    async def hit(self, session: Any) -> None:
        if self.backend == "sqlite":
            raise OperationalError(
                "UPDATE contracts SET balance=…", None, sqlite3.OperationalError("disk I/O error")
            )
        # PostgreSQL: say which backend we are, wait while the test kills it, then go on
        # with a dead connection, as a process would after a network cut.
        self.pid = await backend_pid(session)
        self.reached.set()
        await self.release.wait()

    async def kill_when_reached(self) -> None:
        if self.backend == "sqlite":
            return
        await asyncio.wait_for(self.reached.wait(), 30)
        try:
            assert self.pid is not None
            await terminate_backend(self.admin_url, self.pid)
        finally:
            self.release.set()


async def backend_pid(session_or_driver: Any) -> int:
    """The server process of an AsyncSession's connection, or of an asyncpg connection (the
    one statement's)."""
    if hasattr(session_or_driver, "fetchval"):
        return int(await session_or_driver.fetchval("SELECT pg_backend_pid()"))
    return int(await session_or_driver.scalar(sa.text("SELECT pg_backend_pid()")))


async def terminate_backend(admin_url: str, pid: int) -> None:
    """`pg_terminate_backend(pid)`, and wait until the backend is really gone."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            killed = await conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert killed is True
            for _ in range(250):
                alive = await conn.scalar(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                )
                if not alive:
                    return
                await asyncio.sleep(0.02)
            pytest.fail(f"backend {pid} survived pg_terminate_backend")
    finally:
        await admin.dispose()


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees the 500 the server would send (instead of the raised exception)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _nothing_moved(session_factory: Any, payment_id: int, contract_id: int, who: int) -> None:
    assert (await payment_row(session_factory, payment_id)).status == "PENDING"
    assert await balance_of(session_factory, contract_id) == Decimal("0.00")
    for model in EFFECTS:
        assert await count(session_factory, model) == 0, f"a {model.__name__} was committed"
    async with session_factory() as session:
        account = await session.get(BonusAccount, who)
    assert account is not None and account.points == 0
    await assert_ledger_balanced(session_factory)


@pytest.mark.parametrize("point", list(POINTS))
async def test_a_dropped_connection_commits_nothing_and_the_retry_applies_once(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    # given: a pending top-up, and a cut waiting at `point` of the confirmation
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="503.00")
    body = event_body(payment.id, "SUCCEEDED", "prov-drop-1")
    from tests.conftest import PG_ADMIN_URL

    cut = Cut(backend, PG_ADMIN_URL)
    module, name, after, way = POINTS[point]
    if way == AT_ONCE and backend != "postgresql":
        pytest.skip("the one-statement confirmation is PostgreSQL's")
    if way == STEP_BY_STEP and backend == "postgresql":
        monkeypatch.setattr(resolvers.payments, "_credit_at_once", _decline_at_once)
    monkeypatch.setattr(module, name, cut.wrap(getattr(module, name), after=after))

    # when: the provider's first delivery loses its database connection half-way
    delivery = asyncio.create_task(post_event(http, settings, body))
    await cut.kill_when_reached()
    first = await asyncio.wait_for(delivery, 60)

    # then: not acknowledged, so the provider will retry; and nothing partial was kept
    assert cut.fired
    assert first.status_code >= 500, (first.status_code, first.text)
    assert "Traceback" not in first.text and "contracts" not in first.text
    await _nothing_moved(session_factory, payment.id, contract_id, made.id)

    # when: the provider retries the same signed body, twice
    second = await post_event(http, settings, body)
    third = await post_event(http, settings, body)

    # then: applied exactly once
    assert second.status_code == 200, second.text
    assert second.json() == {"status": "applied", "paymentStatus": "SUCCEEDED"}
    assert third.status_code == 200, third.text
    assert third.json()["status"] == "already-applied"
    row = await payment_row(session_factory, payment.id)
    assert (row.status, row.provider_reference) == ("SUCCEEDED", "prov-drop-1")
    assert await balance_of(session_factory, contract_id) == Decimal("503.00")
    for model in EFFECTS:
        assert await count(session_factory, model) == 1, model.__name__
    async with session_factory() as session:
        account = await session.get(BonusAccount, made.id)
        (entry,) = (await session.scalars(sa.select(LedgerEntry))).all()
    assert account is not None and account.points == 100
    assert (entry.kind, entry.amount, entry.reference) == (
        "TOP_UP",
        Decimal("503.00"),
        f"payment:{payment.id}",
    )
    await assert_ledger_balanced(session_factory)


async def test_after_every_pooled_connection_is_killed_the_webhook_still_applies_once(
    http: httpx.AsyncClient,
    app: Any,
    engine: Any,
    session_factory: Any,
    settings: Settings,
    backend: str,
) -> None:
    """A database restart kills the idle pooled connections too (the pool does not ping
    them): the provider may see a 5xx, never a 200 for an unapplied event, and retrying
    applies it once."""
    if backend != "postgresql":
        pytest.skip("a server restart is a PostgreSQL fault")
    from tests.conftest import PG_ADMIN_URL

    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payments = [
        await top_up(session_factory, settings, contract_id=contract_id, amount="100.00")
        for _ in range(3)
    ]

    # the app's pool holds several connections, all checked in and idle
    async def hold(seconds: float) -> None:
        async with app.state.engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})

    await asyncio.gather(*(hold(0.2) for _ in range(4)))
    database = settings.database_url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            killed = await conn.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
    finally:
        await admin.dispose()
    assert killed >= 4
    await engine.dispose()  # the test's own pool died too; only the app's is under test

    # when: the provider delivers each event until it sees a 200
    answers: dict[int, list[int]] = {p.id: [] for p in payments}
    for payment in payments:
        body = event_body(payment.id, "SUCCEEDED", f"prov-restart-{payment.id}")
        for _ in range(10):
            response = await post_event(http, settings, body)
            answers[payment.id].append(response.status_code)
            if response.status_code == 200:
                break
    # then
    assert all(codes[-1] == 200 for codes in answers.values()), answers
    assert all(code == 200 or code >= 500 for codes in answers.values() for code in codes)
    # the pool ships no ping (pool_pre_ping=False): the first request on a dead connection
    # fails, and the disconnect it sees makes the pool drop all the others at once
    failures = sum(1 for codes in answers.values() for code in codes if code != 200)
    assert failures <= 1, answers
    assert await balance_of(session_factory, contract_id) == Decimal("300.00")
    assert await count(session_factory, LedgerEntry) == 3
    await assert_ledger_balanced(session_factory)


async def test_a_connection_lost_after_the_commit_is_acknowledged_by_the_retry_once(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other side of the cut: COMMIT reached the database, its answer never came back.
    The provider sees a 5xx and retries; the retry must find the payment final and answer
    200 without crediting again."""
    from sqlalchemy.exc import InterfaceError
    from sqlalchemy.ext.asyncio import AsyncSession

    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=contract_id, amount="503.00")
    body = event_body(payment.id, "SUCCEEDED", "prov-drop-2")
    crediting: set[int] = set()
    lost_once: list[str] = []
    original_credit = resolvers.payments._credit
    original_at_once = resolvers.payments._credit_at_once
    original_commit = AsyncSession.commit

    async def credit(session: Any, **kwargs: Any) -> Any:
        crediting.add(id(session))
        return await original_credit(session, **kwargs)

    async def credit_at_once(driver: Any, **kwargs: Any) -> Any:
        # the one statement is its own transaction: its answer is lost after it committed
        number = await original_at_once(driver, **kwargs)
        if number is not None and not lost_once:
            lost_once.append(number)
            raise InterfaceError(
                "WITH plain AS", None, ConnectionError("connection was closed in the middle")
            )
        return number

    async def commit_then_lose_the_answer(self: AsyncSession) -> None:
        await original_commit(self)
        if id(self) in crediting:
            crediting.clear()
            raise InterfaceError(
                "COMMIT", None, ConnectionError("connection was closed in the middle of operation")
            )

    monkeypatch.setattr(resolvers.payments, "_credit", credit)
    monkeypatch.setattr(resolvers.payments, "_credit_at_once", credit_at_once)
    monkeypatch.setattr(AsyncSession, "commit", commit_then_lose_the_answer)
    # when
    first = await post_event(http, settings, body)
    second = await post_event(http, settings, body)
    # then: the first delivery was not acknowledged, though it was applied; the retry is
    # acknowledged as a replay, and the money moved once
    assert first.status_code >= 500, first.text
    assert second.status_code == 200, second.text
    assert second.json() == {"status": "already-applied", "paymentStatus": "SUCCEEDED"}
    assert await balance_of(session_factory, contract_id) == Decimal("503.00")
    for model in EFFECTS:
        assert await count(session_factory, model) == 1, model.__name__
    await assert_ledger_balanced(session_factory)


# -- what the logs say about a dropped connection -------------------------------------------

REGISTER = """
mutation($input: RegisterInput!) {
  register(input: $input) { login errors { field code message } }
}
"""
RECOVER = """
mutation($input: RequestPasswordRecoveryInput!) {
  requestPasswordRecovery(input: $input) { ok errors { code } }
}
"""
# In the format of auth.secrets.new_temporary_password; and a 6-digit recovery code
CANARY_PASSWORD = "Zq9Xw-Ja7As-avuWB-LkrZG"
CANARY_CODE = "918273"


class Captured(logging.Handler):
    """Every record, formatted as production writes it (core.logs.JsonFormatter)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class CommitCut:
    """Kills the backend of the first transaction that is about to send the statement that
    queues a letter (a registration's, a recovery code's) or the payment confirmation's one
    statement (which writes the receipt's letter), from the test's thread while the live
    server's thread waits (PostgreSQL)."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.pid: int | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sqlalchemy.ext.asyncio import AsyncSession

        cut = self
        original_letter = resolvers.registration.queue_letter

        async def queue_letter(session: AsyncSession, **letter: Any) -> int:
            await cut.pause(session)
            return await original_letter(session, **letter)

        original_at_once = resolvers.payments._credit_at_once

        async def credit_at_once(driver: Any, **kwargs: Any) -> Any:
            await cut.pause(driver)
            return await original_at_once(driver, **kwargs)

        original_code_letter = resolvers.recovery._queue_code_letter

        async def queue_code_letter(session: AsyncSession, *args: Any) -> None:
            await cut.pause(session)
            await original_code_letter(session, *args)

        monkeypatch.setattr(resolvers.registration, "queue_letter", queue_letter)
        monkeypatch.setattr(resolvers.payments, "_credit_at_once", credit_at_once)
        monkeypatch.setattr(resolvers.recovery, "_queue_code_letter", queue_code_letter)

    async def pause(self, session: Any) -> None:
        """The first time: say which backend this is and wait while the test kills it."""
        if self.reached.is_set():
            return
        self.pid = await backend_pid(session)
        self.reached.set()
        await asyncio.to_thread(self.release.wait, 30)

    async def kill_when_reached(self) -> None:
        from tests.conftest import PG_ADMIN_URL

        assert await asyncio.to_thread(self.reached.wait, 30), "no commit with a letter came"
        try:
            assert self.pid is not None
            await terminate_backend(PG_ADMIN_URL, self.pid)
        finally:
            self.release.set()


async def _request(
    http: httpx.AsyncClient, settings: Settings, session_factory: Any, made: Any, flow: str
) -> httpx.Response:
    if flow == "webhook":
        payment = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
        body = event_body(payment.id, "SUCCEEDED", "prov-logs-1")
        headers = {"Content-Type": "application/json", "X-Signature": sign(settings, body)}
        return await http.post("/webhooks/payments", content=body, headers=headers)
    if flow == "recovery":
        return await http.post(
            "/graphql",
            json={"query": RECOVER, "variables": {"input": {"identifier": made.login}}},
        )
    details = {
        "contractNumber": made.contract_numbers[0],
        "securityCode": "12345678",
        "legalStatus": "INDIVIDUAL",
        "documentNumber": made.document,
        "email": made.email,
    }
    return await http.post("/graphql", json={"query": REGISTER, "variables": {"input": details}})


@pytest.mark.parametrize("flow", ["webhook", "register", "recovery"])
async def test_a_dropped_connection_leaves_no_personal_data_in_the_logs(
    settings: Settings,
    session_factory: Any,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    flow: str,
) -> None:
    """SPEC §5: unexpected errors are masked, with no personal data in messages or logs.
    The connection is lost just before the statement that writes the letter (a
    registration's with the temporary password, a recovery's with the code); for a receipt
    on PostgreSQL, just before the one statement that writes the letter with the rest of
    the confirmation. The error that is
    logged (by uvicorn for the webhook, by the GraphQL endpoint for mutations) must not
    carry the statement's parameters: the address, the contract number, the letter's text
    with the temporary password or the recovery code."""
    if backend != "postgresql":
        pytest.skip("the connection is killed with pg_terminate_backend")
    made = await make_subscriber(
        session_factory, settings, registered=flow != "register", security_code="12345678"
    )
    monkeypatch.setattr(resolvers.registration, "new_temporary_password", lambda: CANARY_PASSWORD)
    monkeypatch.setattr(resolvers.recovery, "new_numeric_code", lambda digits: CANARY_CODE)
    secrets_ = {
        "email": made.email,
        "contract number": made.contract_numbers[0],
        "temporary password (its first group)": CANARY_PASSWORD[:6],
        "recovery code": CANARY_CODE,
        "passport": made.document,
    }
    cut = CommitCut()
    cut.install(monkeypatch)
    captured = Captured()
    # uvicorn's own logging set-up replaces its loggers' handlers: attach once it is up
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    try:
        with serve_in_thread(create_app(settings)) as base:
            for logger in loggers:
                logger.addHandler(captured)
            async with httpx.AsyncClient(base_url=base, timeout=60) as http:
                answer = asyncio.create_task(_request(http, settings, session_factory, made, flow))
                await cut.kill_when_reached()
                response = await asyncio.wait_for(answer, 60)
        # the server has stopped: everything it had to log is logged (uvicorn logs an
        # application's exception after the 500 went out)
    finally:
        for logger in loggers:
            logger.removeHandler(captured)
    # the failure is an error to the caller, and it was logged
    if flow == "webhook":
        assert response.status_code >= 500, response.text
    else:
        assert response.json()["data"] is None or response.json().get("errors"), response.text
    for secret in secrets_.values():
        assert secret not in response.text
    assert captured.lines, "the failure was not logged at all"
    leaks = {}
    for what, secret in secrets_.items():
        for line in captured.lines:
            at = line.find(secret) if secret else -1
            if at >= 0:
                source = json.loads(line)["logger"]
                leaks[what] = f"{source}: …{line[max(at - 80, 0) : at + len(secret) + 20]}…"
                break
    assert leaks == {}, "personal data in the logs:\n" + "\n".join(
        f"  {what}: {excerpt}" for what, excerpt in leaks.items()
    )
