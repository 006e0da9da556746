"""Faults: the SMTP server is down for a while (issue 7, item 3; SPEC §5 "Outgoing mail").

The whole `kabinet serve` path runs: `create_app` served by uvicorn with its lifespan on, so
the outbox worker inside it polls the outbox. Receipts (webhook confirmations over HTTP) and
a recovery code (GraphQL) queue the letters while the SMTP server is unreachable (the port is
closed) or answers every letter with a temporary failure (451). The letters must wait (each
failed attempt counted and its error kept, nothing sent), then, once the server is back, go
exactly once each: the server receives one letter per outbox row, with distinct Message-IDs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session

from core import outbox
from core.db import begin_write
from core.payment_providers import sign
from core.settings import Settings
from kabinet.app import create_app
from models.outbox import OutboxMessage
from tests.factories import make_subscriber
from tests.live import serve_in_thread
from tests.money.test_payments import event_body, top_up
from tests.test_mail import Inbox, SmtpServer, free_port

RECEIPTS = 5
POLL_SECONDS = 0.1
FAST_RETRY = timedelta(seconds=0.3)
RECOVERY = """
mutation($input: RequestPasswordRecoveryInput!) {
  requestPasswordRecovery(input: $input) { ok errors { code } }
}
"""


class FlakyInbox(Inbox):
    """Answers every letter with 451 while `refusing`, then accepts them."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = True
        self.refused = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 Temporary local problem, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    yield server
    server.stop()


async def _outbox(session_factory: Any) -> list[OutboxMessage]:
    async with session_factory() as session:
        rows = await session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id))  # type: ignore[arg-type]
        return list(rows.all())


async def _until(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:.0f} s waiting until {what}")
        await asyncio.sleep(0.05)


async def _queue_letters(base: str, settings: Settings, session_factory: Any) -> int:
    """Receipts through the live webhook and a recovery code through live GraphQL; returns
    how many letters they queued."""
    made = await make_subscriber(session_factory, settings)
    payments = [
        await top_up(
            session_factory, settings, contract_id=made.contract_ids[0], amount=f"{100 + n}.00"
        )
        for n in range(RECEIPTS)
    ]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for payment in payments:
            body = event_body(payment.id, "SUCCEEDED", f"prov-smtp-{payment.id}")
            answer = await http.post(
                "/webhooks/payments",
                content=body,
                headers={"Content-Type": "application/json", "X-Signature": sign(settings, body)},
            )
            assert answer.status_code == 200, answer.text
        answer = await http.post(
            "/graphql", json={"query": RECOVERY, "variables": {"input": {"identifier": made.login}}}
        )
        assert answer.json()["data"]["requestPasswordRecovery"]["ok"] is True, answer.text
    return RECEIPTS + 1


async def _run_outage(
    settings: Settings,
    session_factory: Any,
    smtp_server: SmtpServer,
    *,
    mode: str,
    failed_attempts: int,
    wait_seconds: float,
) -> dict[str, float]:
    live = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_server.port,
            "outbox_poll_seconds": POLL_SECONDS,
            "outbox_max_attempts": 50,
        }
    )
    flaky = FlakyInbox()
    if mode == "tempfail":
        smtp_server.inbox = flaky
        smtp_server.start()
    timings: dict[str, float] = {}
    with serve_in_thread(create_app(live)) as base:
        started = time.monotonic()
        letters = await _queue_letters(base, live, session_factory)
        timings["queued"] = time.monotonic() - started

        # the server is down: every letter is tried, fails, is counted and waits
        async def all_failed_enough() -> list[OutboxMessage] | None:
            rows = await _outbox(session_factory)
            # `attempts` counts a claim; `locked_until` is cleared once its failure is
            # recorded: only then is an attempt over
            done = len(rows) == letters and all(
                row.attempts >= failed_attempts and row.last_error and row.locked_until is None
                for row in rows
            )
            return rows if done else None

        rows = await _until("every letter failed", all_failed_enough, wait_seconds)
        timings["failed"] = time.monotonic() - started
        assert all(row.sent_at is None for row in rows)
        assert smtp_server.inbox.envelopes == []
        if mode == "refused":
            assert all("Connect" in (row.last_error or "") for row in rows), rows[0].last_error
        else:
            assert flaky.refused >= letters * failed_attempts
            assert all("451" in (row.last_error or "") for row in rows), rows[0].last_error
        attempts_while_down = {row.id: row.attempts for row in await _outbox(session_factory)}

        # the server comes back
        if mode == "refused":
            smtp_server.start()
        else:
            flaky.refusing = False
        back = time.monotonic()

        async def all_sent() -> bool:
            return all(row.sent_at is not None for row in await _outbox(session_factory))

        await _until("every letter was sent", all_sent, wait_seconds + 30)
        timings["sent_after_back"] = time.monotonic() - back
        # a few more worker rounds: nothing goes a second time
        await asyncio.sleep(10 * POLL_SECONDS)
    rows = await _outbox(session_factory)
    received = smtp_server.inbox.messages()
    ids = [message["Message-ID"] for message in received]
    assert len(received) == letters, [m["Subject"] for m in received]
    assert len(set(ids)) == letters, ids
    assert sorted(ids) == sorted(outbox.message_id(row, live) for row in rows)
    assert sorted(m["To"] for m in received) == sorted(row.recipient for row in rows)
    assert sorted(row.kind for row in rows) == ["RECEIPT"] * RECEIPTS + ["RECOVERY_CODE"]
    for row in rows:
        # sent on the first attempt after the outage, or one round later at worst
        assert attempts_while_down[row.id] < row.attempts <= attempts_while_down[row.id] + 2
        assert row.locked_until is None
    return timings


@pytest.mark.parametrize("mode", ["refused", "tempfail"])
async def test_letters_wait_while_smtp_is_down_then_go_exactly_once(
    settings: Settings,
    session_factory: Any,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    # the worker's back-off (30 s, doubling) shortened so that the outage spans several tries
    monkeypatch.setattr(outbox, "retry_delay", lambda attempts: FAST_RETRY)
    timings = await _run_outage(
        settings, session_factory, smtp_server, mode=mode, failed_attempts=3, wait_seconds=20
    )
    print(f"smtp outage ({mode}): {timings}")


@pytest.mark.slow
async def test_with_the_real_back_off_letters_wait_then_go_once(
    settings: Settings, session_factory: Any, smtp_server: SmtpServer
) -> None:
    """The worker's own back-off: the first retry comes 30-33 s after the failure; in between
    the letters are left alone (no hammering of a server that is down)."""
    timings = await _run_outage(
        settings, session_factory, smtp_server, mode="refused", failed_attempts=1, wait_seconds=20
    )
    # they were sent by the first retry, about 30 s after the failure, not before
    assert timings["sent_after_back"] >= 20, timings
    print(f"smtp outage (real back-off): {timings}")


async def test_letters_survive_an_smtp_outage_of_four_hours(
    settings: Settings, session_factory: Any, smtp_server: SmtpServer
) -> None:
    """A relay down for an afternoon (4 h, on the worker's own clock and back-off): the
    letters (passwords, codes, receipts) must still go when it is back. Mail servers keep
    retrying for days (Postfix `maximal_queue_lifetime`: 5 d)."""
    live = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp_server.port})
    senders = outbox.senders_for(live)
    async with session_factory() as session:
        await begin_write(session)
        for n in range(3):
            await outbox.queue_letter(
                session,
                kind="RECEIPT",
                recipient=f"payer{n}@example.org",
                subject=f"Чек № {n}",
                body_text=f"Письмо {n}",
            )
        await session.commit()
    start = outbox.utcnow()
    step = timedelta(minutes=5)
    given_up_after: timedelta | None = None
    # the relay is down for 4 hours; the worker runs its rounds all along
    now = start
    while now < start + timedelta(hours=4):
        report = await outbox.deliver_due(session_factory, senders, settings=live, now=now)
        if report.remaining == 0 and given_up_after is None:
            given_up_after = now - start
        now += step
    # it is back; the worker goes on for another two hours
    smtp_server.start()
    while now < start + timedelta(hours=6):
        await outbox.deliver_due(session_factory, senders, settings=live, now=now)
        now += step
    rows = await _outbox(session_factory)
    unsent = [(row.id, row.attempts) for row in rows if row.sent_at is None]
    assert unsent == [], (
        f"letters (id, attempts) {unsent} were abandoned {given_up_after} into a 4 h outage "
        f"(outbox_max_attempts={live.outbox_max_attempts}) and never sent after it"
    )
    assert len(smtp_server.inbox.envelopes) == 3
