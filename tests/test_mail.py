"""The outbox: letters commit with their change and a worker delivers them over real SMTP."""

from __future__ import annotations

import asyncio
import email
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core import outbox
from core.db import begin_write
from core.outbox import (
    CLAIM_LEASE,
    MARK_SENT_EVERY,
    DeliveryReport,
    LogSender,
    LogSmsSender,
    SmtpSender,
    claim_due,
    deliver_all_now,
    deliver_due,
    queue_letter,
    retry_delay,
    run_worker,
    senders_for,
)
from core.settings import Settings
from models.base import utcnow
from models.outbox import OutboxMessage
from resolvers.letters import (
    password_changed_letter,
    receipt_letter,
    recovery_code_letter,
    recovery_code_sms,
    registration_letter,
)
from tests.conftest import fast_settings

PUBLIC_URL = "https://lk.example.net"


# -- an SMTP server on 127.0.0.1 ------------------------------------------------------------


class Inbox:
    """aiosmtpd handler keeping every accepted letter."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            parsed.append(email.message_from_bytes(content, policy=default_policy))
        return parsed  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server, not yet started (tests of an unreachable server start it later)."""
    server = SmtpServer(free_port())
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.start()
    return smtp_server


def smtp_settings(settings: Settings, server: SmtpServer) -> Settings:
    return settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": server.port, "public_url": PUBLIC_URL}
    )


# -- helpers ------------------------------------------------------------------------------


async def queue_committed(session_factory: Any, count: int = 1, **fields: Any) -> list[int]:
    async with session_factory() as session:
        await begin_write(session)
        ids = [
            await queue_letter(
                session,
                kind=fields.get("kind", "RECEIPT"),
                recipient=fields.get("recipient", f"payer{n}@example.org"),
                subject=fields.get("subject", f"Чек № {n}"),
                body_text=fields.get("body_text", f"Текст письма {n}"),
                body_html=fields.get("body_html"),
                channel=fields.get("channel", "EMAIL"),
            )
            for n in range(count)
        ]
        await session.commit()
        return ids


async def outbox_rows(session_factory: Any) -> list[OutboxMessage]:
    async with session_factory() as session:
        result = await session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id))  # type: ignore[arg-type]
        return list(result.all())


async def one_row(session_factory: Any) -> OutboxMessage:
    rows = await outbox_rows(session_factory)
    assert len(rows) == 1
    return rows[0]


# -- delivery over SMTP -------------------------------------------------------------------


async def test_committed_letter_is_delivered_once_and_marked_sent(
    settings: Settings, session_factory: Any, smtp: SmtpServer
) -> None:
    # given
    config = smtp_settings(settings, smtp)
    subject, text, page = registration_letter(
        config, login="ivanov", temporary_password="Врем-пароль-1", contract_number="100200"
    )
    async with session_factory() as session:
        await begin_write(session)
        await queue_letter(
            session,
            kind="REGISTRATION",
            recipient="ivanov@example.org",
            subject=subject,
            body_text=text,
            body_html=page,
        )
        await session.commit()
    now = utcnow()

    # when
    report = await deliver_due(session_factory, senders_for(config), settings=config, now=now)

    # then
    assert report == DeliveryReport(sent=1, failed=0, remaining=0)
    row = await one_row(session_factory)
    assert row.sent_at == now and row.attempts == 1 and row.locked_until is None
    assert row.last_error is None
    [letter] = smtp.inbox.messages()
    assert smtp.inbox.envelopes[0].rcpt_tos == ["ivanov@example.org"]
    assert letter["To"] == "ivanov@example.org"
    assert letter["Subject"] == subject
    assert letter["From"] == config.mail_from
    assert letter["Message-ID"].startswith(f"<outbox.{row.id}.")
    assert letter.get_content_type() == "multipart/alternative"
    plain = letter.get_body(("plain",))
    rich = letter.get_body(("html",))
    assert plain is not None and "Врем-пароль-1" in plain.get_content()
    assert rich is not None and f'href="{PUBLIC_URL}/"' in rich.get_content()

    # when a second round runs, then nothing more is sent
    again = await deliver_due(
        session_factory, senders_for(config), settings=config, now=now + timedelta(hours=2)
    )
    assert again == DeliveryReport(sent=0, failed=0, remaining=0)
    assert len(smtp.inbox.envelopes) == 1
    assert (await one_row(session_factory)).sent_at == now


async def test_letter_of_rolled_back_change_is_never_sent(
    settings: Settings, session_factory: Any, smtp: SmtpServer
) -> None:
    # given a change that queues a letter and then fails
    config = smtp_settings(settings, smtp)
    async with session_factory() as session:
        await begin_write(session)
        await queue_letter(
            session, kind="RECEIPT", recipient="a@example.org", subject="Чек", body_text="…"
        )
        await session.flush()
        await session.rollback()

    # when
    report = await deliver_due(session_factory, senders_for(config), settings=config)

    # then
    assert report == DeliveryReport(sent=0, failed=0, remaining=0)
    assert await outbox_rows(session_factory) == []
    assert smtp.inbox.envelopes == []


async def test_unreachable_server_is_retried_later_then_sent_once(
    settings: Settings, session_factory: Any, smtp_server: SmtpServer
) -> None:
    # given a letter and nothing listening on the SMTP port
    config = smtp_settings(settings, smtp_server)
    await queue_committed(session_factory)
    senders = senders_for(config)
    now = utcnow()

    # when
    report = await deliver_due(session_factory, senders, settings=config, now=now)

    # then
    assert report == DeliveryReport(sent=0, failed=1, remaining=1)
    row = await one_row(session_factory)
    assert row.sent_at is None and row.attempts == 1 and row.locked_until is None
    assert row.last_error and row.last_error.startswith("SMTPConnectError: ")
    assert now + timedelta(seconds=30) <= row.next_attempt_at <= now + timedelta(seconds=34)

    # when the server is up but the retry is not due yet, nothing happens
    smtp_server.start()
    early = await deliver_due(
        session_factory, senders, settings=config, now=now + timedelta(seconds=10)
    )
    assert early == DeliveryReport(sent=0, failed=0, remaining=1)
    assert smtp_server.inbox.envelopes == []

    # when the retry falls due
    later = now + timedelta(minutes=1)
    report = await deliver_due(session_factory, senders, settings=config, now=later)

    # then it is sent exactly once
    assert report == DeliveryReport(sent=1, failed=0, remaining=0)
    row = await one_row(session_factory)
    assert row.sent_at == later and row.attempts == 2
    assert len(smtp_server.inbox.envelopes) == 1
    final = await deliver_due(
        session_factory, senders, settings=config, now=later + timedelta(hours=1)
    )
    assert final.sent == 0 and len(smtp_server.inbox.envelopes) == 1


async def test_letter_is_given_up_after_max_attempts(
    settings: Settings, session_factory: Any, smtp_server: SmtpServer
) -> None:
    # given a server that never answers and two attempts allowed
    config = smtp_settings(settings, smtp_server).model_copy(update={"outbox_max_attempts": 2})
    await queue_committed(session_factory)
    senders = senders_for(config)
    now = utcnow()

    # when
    first = await deliver_due(session_factory, senders, settings=config, now=now)
    second = await deliver_due(
        session_factory, senders, settings=config, now=now + timedelta(hours=1)
    )
    third = await deliver_due(
        session_factory, senders, settings=config, now=now + timedelta(hours=3)
    )

    # then
    assert (first.failed, second.failed, third.failed) == (1, 1, 0)
    assert third.remaining == 0
    row = await one_row(session_factory)
    assert row.attempts == 2 and row.sent_at is None and row.last_error


async def test_two_workers_deliver_every_letter_exactly_once(
    settings: Settings, engine: Any, session_factory: Any, smtp: SmtpServer
) -> None:
    # given
    config = smtp_settings(settings, smtp)
    ids = await queue_committed(session_factory, 20)
    senders = senders_for(config)

    async def worker() -> int:
        sent = 0
        while True:
            report = await deliver_due(session_factory, senders, settings=config, limit=3)
            sent += report.sent
            if report.sent + report.failed == 0:
                return sent

    # when two workers with their own sessions run at once
    counts = await asyncio.gather(worker(), worker())

    # then
    assert sum(counts) == 20
    rows = await outbox_rows(session_factory)
    assert [row.id for row in rows] == ids
    assert all(row.sent_at is not None and row.attempts == 1 for row in rows)
    messages = smtp.inbox.messages()
    assert len(messages) == 20
    assert len({m["Message-ID"] for m in messages}) == 20
    assert sorted(m["To"] for m in messages) == sorted(f"payer{n}@example.org" for n in range(20))


async def test_claimed_letter_of_dead_worker_is_sent_after_the_lease(
    settings: Settings, session_factory: Any, smtp: SmtpServer
) -> None:
    # given a worker that claimed the letter and died before sending it
    config = smtp_settings(settings, smtp)
    await queue_committed(session_factory)
    now = utcnow()
    claimed = await claim_due(session_factory, settings=config, now=now)
    assert len(claimed) == 1
    row = await one_row(session_factory)
    assert row.attempts == 1 and row.locked_until == now + CLAIM_LEASE and row.sent_at is None
    senders = senders_for(config)

    # when another round runs inside the lease, then the letter is left alone
    inside = await deliver_due(
        session_factory, senders, settings=config, now=now + timedelta(minutes=1)
    )
    assert inside == DeliveryReport(sent=0, failed=0, remaining=1)
    assert smtp.inbox.envelopes == []

    # when the lease has run out
    after = now + CLAIM_LEASE + timedelta(seconds=1)
    report = await deliver_due(session_factory, senders, settings=config, now=after)

    # then
    assert report == DeliveryReport(sent=1, failed=0, remaining=0)
    row = await one_row(session_factory)
    assert row.sent_at == after and row.attempts == 2 and row.locked_until is None
    assert len(smtp.inbox.envelopes) == 1


async def test_claimer_never_takes_rows_another_claimer_holds(
    settings: Settings, session_factory: Any, backend: str
) -> None:
    # given a claimer in the middle of its transaction, holding every due row
    await queue_committed(session_factory, 3)
    now = utcnow()
    holder = session_factory()
    await begin_write(holder)
    held = (await holder.scalars(sa.select(OutboxMessage).with_for_update(skip_locked=True))).all()
    assert len(held) == 3

    # when a second claimer runs meanwhile
    second = asyncio.create_task(claim_due(session_factory, settings=settings, now=now))
    await asyncio.sleep(0.3)
    if backend == "postgresql":
        assert second.done()  # SKIP LOCKED: no waiting for the holder
    else:
        assert not second.done()  # BEGIN IMMEDIATE: claimers queue one after another
    for row in held:
        row.attempts += 1
        row.locked_until = now + CLAIM_LEASE
    await holder.commit()
    await holder.close()

    # then it took none of them
    assert await asyncio.wait_for(second, 10) == []
    assert all(row.attempts == 1 for row in await outbox_rows(session_factory))


async def test_round_that_runs_long_hands_untried_letters_back(
    settings: Settings, session_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a round with no time left to start a send
    monkeypatch.setattr(outbox, "SEND_DEADLINE_SECONDS", CLAIM_LEASE.total_seconds())
    await queue_committed(session_factory, 2)

    # when
    report = await deliver_due(session_factory, senders_for(settings), settings=settings)

    # then the letters are due again at once, with no attempt counted
    assert report == DeliveryReport(sent=0, failed=0, remaining=2)
    for row in await outbox_rows(session_factory):
        assert row.attempts == 0 and row.locked_until is None and row.sent_at is None


async def test_deliver_all_now_sends_everything_due(
    settings: Settings, session_factory: Any, smtp: SmtpServer
) -> None:
    # given
    config = smtp_settings(settings, smtp)
    await queue_committed(session_factory, 3)

    # when
    report = await deliver_all_now(config)

    # then
    assert report == DeliveryReport(sent=3, failed=0, remaining=0)
    assert all(row.sent_at is not None for row in await outbox_rows(session_factory))
    assert len(smtp.inbox.envelopes) == 3


async def test_run_worker_survives_a_failing_round_and_stops_on_request(
    settings: Settings, session_factory: Any, smtp: SmtpServer
) -> None:
    # given a session factory whose first use fails
    config = smtp_settings(settings, smtp).model_copy(update={"outbox_poll_seconds": 0.05})
    await queue_committed(session_factory)
    calls = 0

    def flaky_factory() -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database is away")
        return session_factory()

    stop = asyncio.Event()

    # when
    task = asyncio.create_task(run_worker(flaky_factory, config, stop))  # type: ignore[arg-type]
    for _ in range(200):
        if smtp.inbox.envelopes:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)

    # then
    assert len(smtp.inbox.envelopes) == 1
    assert (await one_row(session_factory)).sent_at is not None


# -- development senders ------------------------------------------------------------------


async def test_log_sender_prints_the_letter(
    settings: Settings, session_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given no SMTP host (the development default)
    assert settings.smtp_host is None
    senders = senders_for(settings)
    assert isinstance(senders["EMAIL"], LogSender)
    assert isinstance(senders["SMS"], LogSmsSender)
    await queue_committed(
        session_factory, recipient="dev@example.org", subject="Код", body_text="Код: 123456"
    )
    await queue_committed(
        session_factory, channel="SMS", recipient="+79990000000", body_text="SMS-код 654321"
    )

    # when
    with caplog.at_level(logging.INFO, logger="core.outbox"):
        report = await deliver_due(session_factory, senders, settings=settings)

    # then
    assert report == DeliveryReport(sent=2, failed=0, remaining=0)
    [letter, sms] = [r.getMessage() for r in caplog.records if r.name == "core.outbox"]
    assert letter.startswith("DEVELOPMENT MAIL, NOT SENT")
    assert "To: dev@example.org" in letter and "Код: 123456" in letter
    assert sms.startswith("DEVELOPMENT SMS, NOT SENT") and "SMS-код 654321" in sms
    assert all(row.sent_at is not None for row in await outbox_rows(session_factory))


async def test_production_without_smtp_keeps_letters_queued(
    settings: Settings, session_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # given production settings with no SMTP host
    config = settings.model_copy(update={"env": "production"})
    await queue_committed(session_factory, body_text="Временный пароль: secret-1")

    # when
    with caplog.at_level(logging.INFO, logger="core.outbox"):
        report = await deliver_due(session_factory, senders_for(config), settings=config)

    # then the letter waits in the outbox and its text never reaches the log
    assert report == DeliveryReport(sent=0, failed=1, remaining=1)
    row = await one_row(session_factory)
    assert row.sent_at is None and row.last_error == "RuntimeError: KABINET_SMTP_HOST is not set"
    assert "secret-1" not in caplog.text


# -- letters ------------------------------------------------------------------------------

LETTER_SETTINGS = fast_settings("sqlite+aiosqlite:///:memory:", public_url=PUBLIC_URL + "/")


def test_html_bodies_escape_interpolated_values() -> None:
    _subject, text, page = registration_letter(
        LETTER_SETTINGS,
        login="<script>alert(1)</script>",
        temporary_password='p"&<b>',
        contract_number="1<2",
    )
    assert page is not None
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "p&quot;&amp;&lt;b&gt;" in page and "1&lt;2" in page
    assert "<script>alert(1)</script>" in text  # plain text is shown as text, not parsed


def test_links_are_built_from_the_public_url() -> None:
    letters = [
        registration_letter(
            LETTER_SETTINGS, login="l", temporary_password="p", contract_number="1"
        ),
        recovery_code_letter(LETTER_SETTINGS, code="123456", minutes=10),
        password_changed_letter(LETTER_SETTINGS, when=datetime(2025, 3, 1, 9, 30, tzinfo=UTC)),
    ]
    for _subject, text, page in letters:
        assert f"{PUBLIC_URL}/\n" in text
        assert page is not None and f'href="{PUBLIC_URL}/"' in page
        assert "testserver" not in text and "127.0.0.1" not in text


def test_receipt_letter_links_only_under_the_public_url() -> None:
    subject, text, page = receipt_letter(
        LETTER_SETTINGS,
        receipt_number="R-000042",
        contract_number="100200",
        amount=Decimal("1234.5"),
        vat_rate=Decimal("20.00"),
        vat_amount=Decimal("205.75"),
        issued_at=datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        receipt_url="/receipts/UGF5bWVudDo0Mg==",
    )
    assert "R-000042" in subject and "100200" in subject
    assert f"{PUBLIC_URL}/receipts/UGF5bWVudDo0Mg==" in text
    assert "1\u00a0234,50\u00a0руб." in text and "01.03.2025 09:30 UTC" in text
    assert "В том числе НДС 20%: 205,75\u00a0руб." in text
    assert page is not None and f'href="{PUBLIC_URL}/receipts/UGF5bWVudDo0Mg=="' in page
    for foreign in ("https://evil.example/receipts/1", "//evil.example/x", f"{PUBLIC_URL}.evil"):
        with pytest.raises(ValueError, match=r"KABINET_PUBLIC_URL|single"):
            receipt_letter(
                LETTER_SETTINGS,
                receipt_number="R-1",
                contract_number="1",
                amount=Decimal("10"),
                vat_rate=Decimal("22"),
                vat_amount=Decimal("1.80"),
                issued_at=utcnow(),
                receipt_url=foreign,
            )


def test_recovery_code_texts() -> None:
    _subject, text, _page = recovery_code_letter(LETTER_SETTINGS, code="042517", minutes=10)
    assert "042517" in text and "10 минут" in text
    sms = recovery_code_sms(LETTER_SETTINGS, code="042517", minutes=1)
    assert "042517" in sms and "1 минуту" in sms
    assert sms.endswith("@lk.example.net #042517")


async def test_queue_letter_refuses_header_injection(
    settings: Settings, session_factory: Any
) -> None:
    async with session_factory() as session:
        await begin_write(session)
        with pytest.raises(ValueError, match="recipient"):
            await queue_letter(
                session,
                kind="RECEIPT",
                recipient="a@example.org\r\nBcc: b@example.org",
                subject="x",
                body_text="x",
            )
        await queue_letter(
            session,
            kind="RECEIPT",
            recipient="a@example.org",
            subject="Чек\r\nBcc: b@example.org",
            body_text="x",
        )
        await session.commit()
    row = await one_row(session_factory)
    assert row.subject == "Чек Bcc: b@example.org"
    assert row.next_attempt_at <= utcnow()


def test_retry_delay_doubles_up_to_an_hour() -> None:
    for attempts, base in [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (50, 3600)]:
        seconds = retry_delay(attempts).total_seconds()
        assert base <= seconds <= base * 1.1


def test_errors_are_one_short_line_without_credentials() -> None:
    config = LETTER_SETTINGS.model_copy(
        update={"smtp_username": "mailer", "smtp_password": "hunter2-secret"}
    )
    error = RuntimeError("535 auth failed for mailer / hunter2-secret\n" + "x" * 1000)
    text = outbox.describe_error(error, config)
    assert text.startswith("RuntimeError: 535 auth failed for *** / ***")
    assert "\n" not in text and len(text) == 500


def test_smtp_sender_needs_a_host() -> None:
    with pytest.raises(ValueError, match="KABINET_SMTP_HOST"):
        SmtpSender(LETTER_SETTINGS)


async def test_a_crash_mid_round_would_resend_at_most_the_letters_not_yet_marked(
    settings: Settings, session_factory: Any, smtp: SmtpServer
) -> None:
    """Letters are marked sent MARK_SENT_EVERY at a time: at every moment of a round, at
    most that many letters have gone out without being marked (what a crash would resend)."""
    # given 25 letters and the real SMTP sender, watched
    config = smtp_settings(settings, smtp)
    await queue_committed(session_factory, 25)
    real = senders_for(config)
    unmarked_seen: list[int] = []
    handed_over = 0

    class Watching:
        async def send(self, message: OutboxMessage) -> None:
            nonlocal handed_over
            async with session_factory() as session:
                marked = await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.sent_at.is_not(None))  # type: ignore[union-attr]
                )
            unmarked_seen.append(handed_over - int(marked or 0))
            await real["EMAIL"].send(message)
            handed_over += 1

    # when one round delivers them
    report = await deliver_due(session_factory, {"EMAIL": Watching()}, settings=config)

    # then all went out once, and never more than MARK_SENT_EVERY were sent and unmarked
    assert report == DeliveryReport(sent=25, failed=0, remaining=0)
    assert len(smtp.inbox.envelopes) == 25
    assert len(unmarked_seen) == 25
    assert max(unmarked_seen) == MARK_SENT_EVERY - 1
    assert unmarked_seen[MARK_SENT_EVERY] == 0  # marked before the next letter went out
    assert all(row.sent_at is not None for row in await outbox_rows(session_factory))
