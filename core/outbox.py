"""Outgoing mail: the outbox and the worker that delivers it (the texts: resolvers/letters.py).

A letter is an `outbox` row added to the caller's session, so it commits or rolls back with
the change that causes it (SPEC §5): a rolled-back change never sends a letter, and a
committed one is never lost. The worker delivers the rows in three short steps:

1. claim due rows in one writing transaction (`attempts + 1`, `locked_until = now + lease`);
   on PostgreSQL with `SELECT … FOR UPDATE SKIP LOCKED` so that two workers never take the same
   row, on SQLite under BEGIN IMMEDIATE, which serialises the claimers;
2. send each one with no transaction open;
3. mark it sent (if still unsent), or record the error and the time of the next attempt.

SMS rows (`channel = 'SMS'`) go the same way through their own sender (KABINET_SMS_PROVIDER:
`LogSmsSender`, or `HttpSmsSender` for a gateway in the style of SMS.ru); what the gateway
answers is kept on the row (`provider_message_id`, `provider_status`), and an error status is
a failed attempt like any other.

Delivery is at least once: if the process dies after claiming, the lease runs out and another
round sends the row again. A receiving SMTP server sees a duplicate only when the process dies
between the server accepting the letter and step 3 committing; the duplicate carries the same
Message-ID, which derives from the outbox row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Protocol

import aiosmtplib
import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from core.db import (
    begin_write,
    create_engine,
    create_session_factory,
    insert_row,
    parameters,
    unit_of_work,
)
from core.settings import Settings
from models.base import UTCDateTime, table_of, utcnow
from models.outbox import OutboxMessage

logger = logging.getLogger("core.outbox")

_outbox = table_of(OutboxMessage)

SessionFactory = async_sessionmaker[AsyncSession]

EMAIL = "EMAIL"
SMS = "SMS"
CHANNELS = (EMAIL, SMS)

BATCH_SIZE = 50
MARK_SENT_EVERY = 10  # letters marked sent per statement
# A claimed row is left alone for this long. A round stops starting new sends well before the
# lease ends (see SEND_DEADLINE_SECONDS) and hands the untouched rows back.
CLAIM_LEASE = timedelta(minutes=5)
SMTP_TIMEOUT_SECONDS = 15.0  # each SMTP step: connect, EHLO, MAIL, DATA…
SEND_DEADLINE_SECONDS = 60.0  # one letter, start to finish
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 3600
ERROR_MAX_CHARS = 500  # the width of outbox.last_error
SUBJECT_MAX_CHARS = 200


# -- queueing -----------------------------------------------------------------------------


def letter_row(
    *,
    kind: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    channel: str = EMAIL,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The outbox row of a letter (`LETTER_COLUMNS`): what `queue_letter` adds, and what
    `enqueue_insert` writes. ValueError for an unusable channel or address."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown outbox channel {channel!r}")
    recipient = recipient.strip()
    if not recipient or any(ord(ch) < 32 or ord(ch) == 127 for ch in recipient):
        raise ValueError("the recipient must be one address without control characters")
    at = at or utcnow()
    return {
        "kind": kind,
        "channel": channel,
        "recipient": recipient,
        # one line: a subject never carries a header break into the letter
        "subject": " ".join(subject.split())[:SUBJECT_MAX_CHARS],
        "body_text": body_text,
        "body_html": body_html,
        "created_at": at,
        "attempts": 0,
        "next_attempt_at": at,
    }


LETTER_COLUMNS = (
    "kind",
    "channel",
    "recipient",
    "subject",
    "body_text",
    "body_html",
    "created_at",
    "attempts",
    "next_attempt_at",
)


def enqueue_insert(values: dict[str, Any], *, when: Any = None) -> sa.Insert:
    """The statement that queues a letter (`LETTER_COLUMNS`, as `letter_row` makes them),
    RETURNING its id: run alone with a row's values (`ENQUEUE`), or a part of a composed
    statement (see `core.db.insert_row`)."""
    return insert_row(sa.insert(_outbox), values, when=when).returning(_outbox.c.id)


def enqueue_select(rows: sa.Select[Any]) -> sa.Insert:
    """The statement that queues many letters at once: `rows` selects `LETTER_COLUMNS`, in
    that order (the reminders of the billing day, resolvers/reminders.py)."""
    return sa.insert(_outbox).from_select(list(LETTER_COLUMNS), rows)


# Built once: `await session.execute(ENQUEUE, letter_row(…))` in the caller's transaction.
ENQUEUE = enqueue_insert(parameters(LETTER_COLUMNS))


async def queue_letter(session: AsyncSession, **letter: Any) -> int:
    """Queue a letter (`letter_row`'s arguments) in the caller's transaction, by the one
    statement that writes the outbox (`ENQUEUE`); it is delivered once that commits. Its
    id."""
    return int((await session.execute(ENQUEUE, letter_row(**letter))).scalar_one())


# -- senders ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """What a gateway said of a message it accepted: kept on the outbox row."""

    message_id: str | None
    status: str


class ProviderRefused(RuntimeError):
    """The gateway answered with an error status: kept on the row (`provider_status`). The
    row is retried as after any failure, unless the refusal is `permanent` (the number can
    never receive it): then it is given up at once, as after its last attempt."""

    def __init__(self, status: str, text: str, *, permanent: bool = False) -> None:
        super().__init__(f"the SMS gateway answered {status}: {text}")
        self.status = status
        self.permanent = permanent


# SMS.ru's per-number codes that no retry changes: 202 a wrong number or no route to it, 207
# a number that may not be sent to, 209 a number in the stop list. Others (a daily limit on
# the number, the service unavailable, the account's balance) may pass later.
SMS_PERMANENT_CODES = frozenset({202, 207, 209})


class Sender(Protocol):
    async def send(self, message: OutboxMessage) -> ProviderAnswer | None:
        """Deliver one outbox row; raise on failure (the worker retries later). A gateway's
        answer, when it gives one, is kept on the row."""


def _mail_domain(settings: Settings) -> str:
    address = parseaddr(settings.mail_from)[1]
    return address.rpartition("@")[2] or "kabinet.local"


def message_id(message: OutboxMessage, settings: Settings) -> str:
    """Stable per outbox row, so that a resent duplicate is recognisable as one."""
    stamp = message.created_at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
    return f"<outbox.{message.id}.{stamp}@{_mail_domain(settings)}>"


def build_email(message: OutboxMessage, settings: Settings) -> EmailMessage:
    email = EmailMessage()
    email["From"] = settings.mail_from
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = message_id(message, settings)
    email["Auto-Submitted"] = "auto-generated"
    email.set_content(message.body_text)
    if message.body_html:
        email.add_alternative(message.body_html, subtype="html")
    return email


class SmtpSender:
    """Sends EMAIL rows to KABINET_SMTP_HOST. Port 465 means TLS from the first byte;
    KABINET_SMTP_STARTTLS=true requires STARTTLS on other ports."""

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpSender needs KABINET_SMTP_HOST")
        self._settings = settings
        self._host = settings.smtp_host

    async def send(self, message: OutboxMessage) -> None:
        if message.channel != EMAIL:
            raise ValueError(f"SmtpSender cannot send {message.channel} messages")
        settings = self._settings
        implicit_tls = settings.smtp_port == 465
        await aiosmtplib.send(
            build_email(message, settings),
            hostname=self._host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password if settings.smtp_username else None,
            use_tls=implicit_tls,
            start_tls=False if implicit_tls else settings.smtp_starttls,
            timeout=SMTP_TIMEOUT_SECONDS,
        )


class LogSender:
    """Development default for EMAIL: the whole letter goes to the log, nothing is sent."""

    async def send(self, message: OutboxMessage) -> None:
        logger.info(
            "DEVELOPMENT MAIL, NOT SENT (KABINET_SMTP_HOST is not set)\n"
            "To: %s\nSubject: %s\n\n%s%s",
            message.recipient,
            message.subject,
            message.body_text,
            "\n[an HTML version is attached to the real letter]" if message.body_html else "",
            extra={"outbox_id": message.id, "outbox_kind": message.kind},
        )


class LogSmsSender:
    """Development default for SMS (a production SMS gateway is plugged in per channel)."""

    async def send(self, message: OutboxMessage) -> None:
        logger.info(
            "DEVELOPMENT SMS, NOT SENT\nTo: %s\n\n%s",
            message.recipient,
            message.body_text,
            extra={"outbox_id": message.id, "outbox_kind": message.kind},
        )


PROVIDER_FIELD_CHARS = 64  # the width of outbox.provider_message_id and provider_status


class HttpSmsSender:
    """Sends SMS rows to a gateway in the style of SMS.ru's `sms/send` (KABINET_SMS_URL):
    a form POST of `api_id`, `to` (digits only), `msg`, `json=1` and, when set, `from`;
    the JSON answer is `{"status": "OK", "status_code": 100, "sms": {"<to>": {"status":
    "OK", "status_code": 100, "sms_id": "…"}}}`, or `"status": "ERROR"` with a
    `status_code` and `status_text`, for the request or for the number. The key travels in
    the body, never in the URL (which errors and logs may show)."""

    def __init__(self, settings: Settings) -> None:
        if not settings.sms_url or not settings.sms_api_key:
            raise ValueError("HttpSmsSender needs KABINET_SMS_URL and KABINET_SMS_API_KEY")
        self._url = settings.sms_url
        self._api_key = settings.sms_api_key
        self._sender = settings.sms_sender
        self._timeout = settings.sms_timeout_seconds

    async def send(self, message: OutboxMessage) -> ProviderAnswer:
        if message.channel != SMS:
            raise ValueError(f"HttpSmsSender cannot send {message.channel} messages")
        to = "".join(ch for ch in message.recipient if ch.isdigit())
        form = {"api_id": self._api_key, "to": to, "msg": message.body_text, "json": "1"}
        if self._sender:
            form["from"] = self._sender
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            response = await http.post(self._url, data=form)
        response.raise_for_status()
        answer = response.json()
        status, text = _gateway_status(answer)
        if status is not None:
            raise ProviderRefused(status, text)
        sms = (answer.get("sms") or {}).get(to)
        if not isinstance(sms, dict):
            raise ProviderRefused("ERROR", "the answer says nothing of the number")
        status, text = _gateway_status(sms)
        if status is not None:
            raise ProviderRefused(
                status, text, permanent=sms.get("status_code") in SMS_PERMANENT_CODES
            )
        message_id = sms.get("sms_id")
        return ProviderAnswer(
            str(message_id)[:PROVIDER_FIELD_CHARS] if message_id is not None else None,
            f"OK {sms.get('status_code', '')}".strip()[:PROVIDER_FIELD_CHARS],
        )


def _gateway_status(part: Any) -> tuple[str | None, str]:
    """(None, "") for an OK part; else its status ("ERROR 207") and its text."""
    if not isinstance(part, dict):
        return "ERROR", "the answer is not a JSON object"
    if part.get("status") == "OK":
        return None, ""
    status = f"{part.get('status') or 'ERROR'} {part.get('status_code', '')}".strip()
    return status[:PROVIDER_FIELD_CHARS], str(part.get("status_text") or "")[:200]


class UnconfiguredSender:
    """Production with no transport: letters wait in the outbox rather than going to the log
    (they carry passwords and codes) or being dropped."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def send(self, message: OutboxMessage) -> None:
        raise RuntimeError(self.reason)


def senders_for(settings: Settings) -> dict[str, Sender]:
    email: Sender
    sms: Sender
    if settings.smtp_host is not None:
        email = SmtpSender(settings)
    elif settings.is_production:
        email = UnconfiguredSender("KABINET_SMTP_HOST is not set")
    else:
        email = LogSender()
    if settings.sms_provider == "http" and settings.sms_url and settings.sms_api_key:
        sms = HttpSmsSender(settings)
    elif settings.sms_provider == "http":
        # Production refuses to start so (Settings.check_production); development waits.
        sms = UnconfiguredSender("KABINET_SMS_PROVIDER=http needs KABINET_SMS_URL and _API_KEY")
    elif settings.is_production:
        # Codes and reminders wait in the outbox rather than going to the log.
        sms = UnconfiguredSender("KABINET_SMS_PROVIDER is log (no SMS gateway)")
    else:
        sms = LogSmsSender()
    return {EMAIL: email, SMS: sms}


# -- delivery -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    remaining: int = 0  # unsent rows that will still be tried (due now or later)


def _due(now: Any, max_attempts: Any) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        col(OutboxMessage.sent_at).is_(None),
        col(OutboxMessage.next_attempt_at) <= now,
        sa.or_(col(OutboxMessage.locked_until).is_(None), col(OutboxMessage.locked_until) < now),
        col(OutboxMessage.attempts) < max_attempts,
    )


def retry_delay(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour, plus up to 10% jitter."""
    seconds = min(RETRY_BASE_SECONDS * 2 ** min(max(attempts - 1, 0), 20), RETRY_MAX_SECONDS)
    return timedelta(seconds=seconds * (1 + random.uniform(0, 0.1)))  # noqa: S311 - jitter


def describe_error(error: BaseException, settings: Settings) -> str:
    """One line for `last_error` and the log: no credentials, no SQL parameters."""
    cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    text = " ".join(f"{type(error).__name__}: {cause}".split())
    for secret in (settings.smtp_password, settings.smtp_username, settings.sms_api_key):
        if secret:
            text = text.replace(secret, "***")
    return text[:ERROR_MAX_CHARS]


def _claim() -> sa.Update:
    """Take due rows: one statement for the batch (it was a read and an UPDATE per row, a
    third of what a receipt's letter cost the database), built once."""
    now = sa.bindparam("now", type_=UTCDateTime)
    due = (
        sa.select(_outbox.c.id)
        .where(
            *_due(now, sa.bindparam("max_attempts", type_=sa.Integer)),
            col(OutboxMessage.next_attempt_at) <= sa.bindparam("cutoff", type_=UTCDateTime),
        )
        .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.id))
        .limit(sa.bindparam("limit", type_=sa.Integer))
        # PostgreSQL: rows another claimer holds are skipped, not waited for. SQLite renders no
        # FOR UPDATE; its BEGIN IMMEDIATE lets one claimer in at a time.
        .with_for_update(skip_locked=True)
    )
    return (
        sa.update(OutboxMessage)
        .where(col(OutboxMessage.id).in_(due.scalar_subquery()))
        .values(
            attempts=col(OutboxMessage.attempts) + 1,
            locked_until=sa.bindparam("until", type_=UTCDateTime),
        )
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )


_CLAIM = _claim()


async def claim_due(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    limit: int = BATCH_SIZE,
    now: datetime | None = None,
    due_by: datetime | None = None,
) -> list[OutboxMessage]:
    """Take up to `limit` due rows for this worker until `now + CLAIM_LEASE`."""
    moment = now or utcnow()
    cutoff = min(moment, due_by) if due_by else moment
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        messages = list(
            (
                await session.scalars(
                    _CLAIM,
                    {
                        "now": moment,
                        "cutoff": cutoff,
                        "max_attempts": settings.outbox_max_attempts,
                        "limit": limit,
                        "until": moment + CLAIM_LEASE,
                    },
                )
            ).all()
        )
    messages.sort(key=lambda message: (message.next_attempt_at, message.id or 0))
    return messages


async def _write(session_factory: SessionFactory, statement: sa.Executable) -> None:
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        await session.execute(statement)


def _ours(message: OutboxMessage) -> tuple[sa.ColumnElement[bool], ...]:
    # `locked_until` is the claim's token: a later claim always sets a later lease.
    return (
        col(OutboxMessage.id) == message.id,
        col(OutboxMessage.sent_at).is_(None),
        col(OutboxMessage.locked_until) == message.locked_until,
    )


DELIVERED_BODY = "(delivered; the text is not kept)"


async def _mark_sent(
    session_factory: SessionFactory,
    messages: Sequence[OutboxMessage],
    at: datetime,
    answers: Mapping[int, ProviderAnswer] | None = None,
) -> None:
    # Sent is sent even if our lease ran out meanwhile: that stops a third copy. The body is
    # dropped: letters carry temporary passwords and codes, which must not outlive delivery
    # in the database (a dump would hand them out).
    if not messages:
        return
    answered = [
        {"answered_id": message.id, "message_id": answer.message_id, "status": answer.status}
        for message in messages
        if message.id is not None and (answer := (answers or {}).get(message.id)) is not None
    ]
    async with unit_of_work(session_factory) as session:
        await begin_write(session)
        await session.execute(_MARK_SENT, {"ids": [message.id for message in messages], "at": at})
        if answered:
            await session.execute(_PROVIDER_ANSWER, answered)


_MARK_SENT = (
    sa.update(_outbox)
    .where(_outbox.c.id.in_(sa.bindparam("ids", expanding=True)), _outbox.c.sent_at.is_(None))
    .values(
        sent_at=sa.bindparam("at", type_=UTCDateTime),
        locked_until=None,
        body_text=DELIVERED_BODY,
        body_html=None,
    )
)


# What the gateway answered of each sent SMS (executed with a list of rows).
_PROVIDER_ANSWER = (
    sa.update(_outbox)
    .where(_outbox.c.id == sa.bindparam("answered_id"))
    .values(
        provider_message_id=sa.bindparam("message_id"),
        provider_status=sa.bindparam("status"),
    )
)


async def _mark_failed(
    session_factory: SessionFactory,
    message: OutboxMessage,
    at: datetime,
    error: str,
    provider_status: str | None = None,
    give_up_at: int | None = None,
) -> None:
    """Record a failed attempt: its next one after `retry_delay`; with `give_up_at` (the
    attempts limit), none: the row is left as after its last attempt."""
    values: dict[str, Any] = {
        "locked_until": None,
        "next_attempt_at": at + retry_delay(message.attempts),
        "last_error": error,
    }
    if provider_status is not None:
        values["provider_status"] = provider_status
    if give_up_at is not None:
        values["attempts"] = give_up_at
    await _write(session_factory, sa.update(OutboxMessage).where(*_ours(message)).values(values))


async def _release(session_factory: SessionFactory, messages: Sequence[OutboxMessage]) -> None:
    """Hand back claimed rows that were never tried, without counting an attempt."""
    for message in messages:
        await _write(
            session_factory,
            sa.update(OutboxMessage)
            .where(*_ours(message))
            .values(locked_until=None, attempts=col(OutboxMessage.attempts) - 1),
        )


async def _attempt(
    senders: Mapping[str, Sender], message: OutboxMessage
) -> Exception | ProviderAnswer | None:
    """The error, or what the gateway answered (None: sent, nothing to keep)."""
    sender = senders.get(message.channel)
    if sender is None:
        return LookupError(f"no sender for channel {message.channel}")
    try:
        async with asyncio.timeout(SEND_DEADLINE_SECONDS):
            return await sender.send(message)
    except Exception as error:
        return error


async def count_pending(session_factory: SessionFactory, *, settings: Settings) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(OutboxMessage)
        .where(
            col(OutboxMessage.sent_at).is_(None),
            col(OutboxMessage.attempts) < settings.outbox_max_attempts,
        )
    )
    async with session_factory() as session:
        return int((await session.execute(query)).scalar_one())


async def deliver_due(
    session_factory: SessionFactory,
    senders: Mapping[str, Sender],
    *,
    settings: Settings,
    limit: int = BATCH_SIZE,
    now: datetime | None = None,
    due_by: datetime | None = None,
) -> DeliveryReport:
    """One round: claim what is due, send it, record each outcome. `now` fixes the clock
    (tests); `due_by` leaves out rows that fall due after it."""
    claimed = await claim_due(
        session_factory, settings=settings, limit=limit, now=now, due_by=due_by
    )
    # Stop starting sends while every claimed row is still surely ours.
    budget = CLAIM_LEASE.total_seconds() - 2 * SEND_DEADLINE_SECONDS
    started = time.monotonic()
    sent = failed = 0
    # Letters sent but not yet marked: marked together, at most MARK_SENT_EVERY at a time
    # (a crash between sending and marking sends those again; never more of them).
    unmarked: list[OutboxMessage] = []
    answers: dict[int, ProviderAnswer] = {}
    try:
        for index, message in enumerate(claimed):
            if time.monotonic() - started > budget:
                await _release(session_factory, claimed[index:])
                logger.warning(
                    "outbox: round ran long; %d letters handed back", len(claimed) - index
                )
                break
            outcome = await _attempt(senders, message)
            if not isinstance(outcome, Exception):
                if outcome is not None and message.id is not None:
                    answers[message.id] = outcome
                unmarked.append(message)
                sent += 1
                if len(unmarked) >= MARK_SENT_EVERY:
                    await _mark_sent(session_factory, unmarked, now or utcnow(), answers)
                    unmarked = []
                continue
            failed += 1
            description = describe_error(outcome, settings)
            refused = outcome.status if isinstance(outcome, ProviderRefused) else None
            permanent = isinstance(outcome, ProviderRefused) and outcome.permanent
            if permanent:
                message.attempts = max(message.attempts, settings.outbox_max_attempts)
            await _mark_failed(
                session_factory,
                message,
                now or utcnow(),
                description,
                refused,
                give_up_at=message.attempts if permanent else None,
            )
            _log_failure(message, description, settings)
    finally:
        await _mark_sent(session_factory, unmarked, now or utcnow(), answers)
    remaining = await count_pending(session_factory, settings=settings)
    return DeliveryReport(sent=sent, failed=failed, remaining=remaining)


def _log_failure(message: OutboxMessage, description: str, settings: Settings) -> None:
    last = message.attempts >= settings.outbox_max_attempts
    logger.log(
        logging.ERROR if last else logging.WARNING,
        "outbox message %s (%s, %s) failed on attempt %d of %d%s: %s",
        message.id,
        message.kind,
        message.channel,
        message.attempts,
        settings.outbox_max_attempts,
        "; giving up" if last else "; will retry",
        description,
    )


async def run_worker(
    session_factory: SessionFactory, settings: Settings, stop: asyncio.Event
) -> None:
    """Deliver every `outbox_poll_seconds` until `stop` is set; errors are logged, never fatal."""
    senders = senders_for(settings)
    while not stop.is_set():
        full_batch = False
        try:
            report = await deliver_due(session_factory, senders, settings=settings)
            full_batch = report.sent + report.failed >= BATCH_SIZE
        except Exception as error:
            logger.error(
                "outbox worker: delivery round failed: %s", describe_error(error, settings)
            )
            logger.debug("outbox worker: round failure details", exc_info=True)
        if not full_batch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.outbox_poll_seconds)


async def deliver_all_now(settings: Settings) -> DeliveryReport:
    """`kabinet outbox deliver`: one attempt at everything due now, then exit."""
    engine = create_engine(settings)
    try:
        session_factory = create_session_factory(engine)
        senders = senders_for(settings)
        # Rows that fail now fall due again later: `due_by` keeps this to one pass.
        started = utcnow()
        sent = failed = 0
        while True:
            report = await deliver_due(session_factory, senders, settings=settings, due_by=started)
            sent, failed = sent + report.sent, failed + report.failed
            if report.sent + report.failed < BATCH_SIZE:
                return DeliveryReport(sent=sent, failed=failed, remaining=report.remaining)
    finally:
        await engine.dispose()
