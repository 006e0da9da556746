"""Reminders (SPEC §8), each produced by its real trigger: the billing day (low balance once
per episode, suspension, a promise due tomorrow), a top-up through the sandbox webhook
(the suspension lifted), and the pause's set-based functions given a plain select of
contracts. Each goes by the channel the subscriber chose (EMAIL by default, SMS to the
phone, BOTH, NONE), in Russian, an SMS within one message; reruns and two runs at once queue
each reminder once."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import unit_of_work
from core.settings import Settings
from models import Contract, OutboxMessage, ReminderMark
from models.base import utcnow
from resolvers import charges, pause, reminders
from resolvers.billing import run_billing_day
from resolvers.letters import (
    REMINDER_TEXTS,
    SMS_MAX_CHARS,
    fill_reminder,
    reminder_date,
    reminder_money,
)
from resolvers.notifications import update_notification_settings
from tests.factories import make_subscriber
from tests.money.test_payments import deliver, mount_payment_routes, post_ledger, top_up
from tests.money.test_promised import activate


@pytest.fixture
def http(app: Any, settings: Settings, client: httpx.AsyncClient) -> httpx.AsyncClient:
    mount_payment_routes(app, settings)
    return client


async def _reminders(session_factory: Any, kind: str | None = None) -> list[OutboxMessage]:
    """The reminders queued (every letter of kind REMINDER_*), oldest first; every SMS
    among them fits one message."""
    query = sa.select(OutboxMessage).where(col(OutboxMessage.kind).startswith("REMINDER_"))
    if kind is not None:
        query = query.where(col(OutboxMessage.kind) == kind)
    async with session_factory() as session:
        rows = list((await session.scalars(query.order_by(col(OutboxMessage.id)))).all())
    for row in rows:
        if row.channel == "SMS":
            assert len(row.body_text) <= SMS_MAX_CHARS, row.body_text
            assert row.subject == ""
    return rows


async def _choose(session_factory: Any, subscriber_id: int, **channels: str) -> None:
    async with unit_of_work(session_factory) as session:
        await update_notification_settings(
            session, subscriber_id=subscriber_id, settings=list(channels.items())
        )


async def _daily(session_factory: Any, contract_id: int, day: date) -> Decimal:
    async with session_factory() as session:
        return (await charges.daily_totals(session, [contract_id], on=day))[contract_id]


def _month_start() -> date:
    """The first day of next month: a test's billing days stay in one month (one daily
    share)."""
    return (utcnow().date().replace(day=1) + timedelta(days=32)).replace(day=1)


async def _status(session_factory: Any, contract_id: int) -> str:
    async with session_factory() as session:
        return str(
            await session.scalar(sa.select(Contract.status).where(col(Contract.id) == contract_id))
        )


# -- the texts ------------------------------------------------------------------------------


def test_every_sms_fits_one_message_with_the_longest_realistic_values() -> None:
    # given the longest values a reminder shows: a 12-digit contract number, amounts up to
    # the largest top-up, up to 99 days left, a date
    values = {
        "number": "770012345678",
        "balance": reminder_money(Decimal("49999.99")),
        "debt": reminder_money(Decimal("49999.99")),
        "days": "99",
        "amount": reminder_money(Decimal("5000.00")),
        "date": reminder_date(date(2026, 12, 31)),
        "operator": "Кабинет Телеком",
        "link": "https://lk.example.ru/",
    }
    for text in REMINDER_TEXTS:
        # when
        sms = fill_reminder(text.sms, **values)
        # then: one SMS (70 characters of Cyrillic), Russian, and the letter names the contract
        assert len(sms) <= SMS_MAX_CHARS, sms
        assert "Договор 770012345678" in sms
        assert "770012345678" in fill_reminder(text.body_text, **values)
        assert fill_reminder(text.subject, **values).startswith("Кабинет Телеком: ")


# -- low balance ----------------------------------------------------------------------------


async def test_low_balance_is_reminded_once_per_episode(
    session_factory: Any, settings: Settings
) -> None:
    # given a contract whose balance lasts 5 days at the day's charge
    today = _month_start()
    made = await make_subscriber(session_factory, settings)
    cid, number = made.contract_ids[0], made.contract_numbers[0]
    daily = await _daily(session_factory, cid, today)
    await post_ledger(session_factory, cid, "ADJUSTMENT", str(daily * 5))

    # when the first day is billed: 4 days left, above the limit (3)
    await run_billing_day(session_factory, settings=settings, day=today)
    # then no reminder
    assert await _reminders(session_factory) == []

    # when the next day is billed (3 days left), twice
    second = await run_billing_day(session_factory, settings=settings, day=today + timedelta(1))
    await run_billing_day(session_factory, settings=settings, day=today + timedelta(1))
    # then one letter, to the email on file, in Russian, with the days left
    (letter,) = await _reminders(session_factory)
    assert second.reminders_queued == 1
    assert (letter.kind, letter.channel, letter.recipient) == (
        "REMINDER_LOW_BALANCE",
        "EMAIL",
        made.email,
    )
    assert letter.subject == f"Кабинет Телеком: на счёте договора № {number} заканчиваются деньги"
    balance = reminder_money(daily * 3)
    assert f"осталось {balance} руб." in letter.body_text
    assert "хватит на 3 дн." in letter.body_text and "http://testserver/" in letter.body_text

    # when the episode goes on (2 days left)
    await run_billing_day(session_factory, settings=settings, day=today + timedelta(2))
    # then nothing more
    assert len(await _reminders(session_factory)) == 1

    # when a top-up brings it above the limit, and a billing day sees it there
    await post_ledger(session_factory, cid, "TOP_UP", str(daily * 10))
    await run_billing_day(session_factory, settings=settings, day=today + timedelta(3))
    # then the episode has ended: no letter, no mark
    assert len(await _reminders(session_factory)) == 1
    async with session_factory() as session:
        assert (await session.scalars(sa.select(ReminderMark))).all() == []

    # when the money runs low again
    await post_ledger(session_factory, cid, "ADJUSTMENT", str(-daily * 9))
    await run_billing_day(session_factory, settings=settings, day=today + timedelta(4))
    # then a new episode, a new letter
    _first, again = await _reminders(session_factory)
    assert again.kind == "REMINDER_LOW_BALANCE" and "хватит на 1 дн." in again.body_text


async def test_the_limit_is_a_setting(session_factory: Any, settings: Settings) -> None:
    # given 4 days left after the day's charge, and a limit of 5
    today = _month_start()
    made = await make_subscriber(session_factory, settings)
    cid = made.contract_ids[0]
    await post_ledger(
        session_factory, cid, "ADJUSTMENT", str(await _daily(session_factory, cid, today) * 5)
    )
    five = settings.model_copy(update={"low_balance_days": 5})
    # when
    await run_billing_day(session_factory, settings=five, day=today)
    # then
    (letter,) = await _reminders(session_factory)
    assert "хватит на 4 дн." in letter.body_text


async def test_low_balance_by_sms_both_or_none(session_factory: Any, settings: Settings) -> None:
    # given three subscribers with the same low balance and different choices
    today = _month_start()
    by_sms = await make_subscriber(session_factory, settings)
    by_both = await make_subscriber(session_factory, settings)
    by_none = await make_subscriber(session_factory, settings)
    for made, channel in ((by_sms, "SMS"), (by_both, "BOTH"), (by_none, "NONE")):
        cid = made.contract_ids[0]
        daily = await _daily(session_factory, cid, today)
        await post_ledger(session_factory, cid, "ADJUSTMENT", str(daily * 3))
        await _choose(session_factory, made.id, LOW_BALANCE=channel)
    # when
    await run_billing_day(session_factory, settings=settings, day=today)
    # then SMS to the phone; both to both; nothing for NONE (its episode is marked all the same)
    sent = {(row.recipient, row.channel) for row in await _reminders(session_factory)}
    assert sent == {
        (by_sms.phone, "SMS"),
        (by_both.phone, "SMS"),
        (by_both.email, "EMAIL"),
    }
    sms_row = next(r for r in await _reminders(session_factory) if r.recipient == by_sms.phone)
    assert sms_row.body_text == (
        f"Договор {by_sms.contract_numbers[0]}: баланс "
        f"{reminder_money(await _daily(session_factory, by_sms.contract_ids[0], today) * 2)} "
        "р., хватит на 2 дн. Пополните."
    )


async def test_a_reminder_by_email_without_an_email_on_file_is_not_sent(
    session_factory: Any, settings: Settings
) -> None:
    # given no email, the default channel (EMAIL)
    today = utcnow().date()
    made = await make_subscriber(session_factory, settings, email=None)
    # when its contract is suspended (balance 0, then the day's charge)
    await run_billing_day(session_factory, settings=settings, day=today)
    # then suspended, and no letter anywhere
    assert await _status(session_factory, made.contract_ids[0]) == "SUSPENDED"
    assert await _reminders(session_factory) == []


# -- suspension and its lifting -----------------------------------------------------------


async def test_suspension_and_its_lifting_by_a_top_up_are_reminded(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given a contract with nothing on it, and one that chose SMS for suspensions
    today = utcnow().date()
    by_email = await make_subscriber(session_factory, settings)
    by_sms = await make_subscriber(session_factory, settings)
    await _choose(session_factory, by_sms.id, SUSPENSION="SMS")
    # when the billing day charges them below zero, and runs again
    summary = await run_billing_day(session_factory, settings=settings, day=today)
    await run_billing_day(session_factory, settings=settings, day=today)
    # then both are suspended and told once, each by their channel
    assert summary.contracts_suspended == 2
    suspended = await _reminders(session_factory, "REMINDER_SUSPENDED")
    assert {(r.recipient, r.channel) for r in suspended} == {
        (by_email.email, "EMAIL"),
        (by_sms.phone, "SMS"),
    }
    suspended.sort(key=lambda r: r.channel)
    debt = reminder_money(await _daily(session_factory, by_sms.contract_ids[0], today))
    assert suspended[1].body_text == (
        f"Договор {by_sms.contract_numbers[0]}: услуги приостановлены, долг {debt} р."
    )
    assert f"долг {debt} руб." in suspended[0].body_text
    assert "приостановлены" in suspended[0].subject

    # when the SMS subscriber tops up through the provider's webhook
    cid = by_sms.contract_ids[0]
    payment = await top_up(session_factory, settings, contract_id=cid, amount="500.00")
    response = await deliver(http, settings, payment.id)
    # then the suspension is lifted and they are told by SMS, in the same transaction as the
    # receipt's letter
    assert response.status_code == 200, response.text
    assert await _status(session_factory, cid) == "ACTIVE"
    (resumed,) = await _reminders(session_factory, "REMINDER_RESUMED")
    assert (resumed.channel, resumed.recipient) == ("SMS", by_sms.phone)
    assert resumed.body_text == (
        f"Договор {by_sms.contract_numbers[0]}: услуги возобновлены. Спасибо за оплату!"
    )
    async with session_factory() as session:
        receipts = await session.scalar(
            sa.select(sa.func.count()).where(col(OutboxMessage.kind) == "RECEIPT")
        )
    assert receipts == 1
    # and a replay of the webhook tells nothing more
    await deliver(http, settings, payment.id)
    assert len(await _reminders(session_factory, "REMINDER_RESUMED")) == 1


async def test_a_top_up_that_leaves_a_debt_tells_nothing(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given a suspended contract 600 RUB in debt
    today = utcnow().date()
    made = await make_subscriber(session_factory, settings)
    cid = made.contract_ids[0]
    await post_ledger(session_factory, cid, "ADJUSTMENT", "-600.00")
    await run_billing_day(session_factory, settings=settings, day=today)
    # when 100 RUB arrive
    payment = await top_up(session_factory, settings, contract_id=cid, amount="100.00")
    await deliver(http, settings, payment.id)
    # then still suspended, no lifting letter
    assert await _status(session_factory, cid) == "SUSPENDED"
    assert await _reminders(session_factory, "REMINDER_RESUMED") == []


# -- promised payment due tomorrow ---------------------------------------------------------


async def test_a_promise_due_tomorrow_is_reminded_once(
    session_factory: Any, settings: Settings
) -> None:
    # given an open promise (due in 3 days) on a contract with money for a while
    made = await make_subscriber(session_factory, settings, balance=Decimal("20.00"))
    cid, number = made.contract_ids[0], made.contract_numbers[0]
    await _choose(session_factory, made.id, PROMISED_PAYMENT_DUE="BOTH", LOW_BALANCE="NONE")
    result = await activate(session_factory, settings, cid, "300")
    due = result.promise.due_at.date()
    # when the billing day two days before it runs
    await run_billing_day(session_factory, settings=settings, day=due - timedelta(days=2))
    # then nothing yet
    assert await _reminders(session_factory, "REMINDER_PROMISE_DUE") == []
    # when the day before it runs, twice
    await run_billing_day(session_factory, settings=settings, day=due - timedelta(days=1))
    await run_billing_day(session_factory, settings=settings, day=due - timedelta(days=1))
    # then one letter and one SMS
    letter, sms = await _reminders(session_factory, "REMINDER_PROMISE_DUE")
    assert (letter.channel, letter.recipient) == ("EMAIL", made.email)
    assert (sms.channel, sms.recipient) == ("SMS", made.phone)
    assert sms.body_text == (
        f"Договор {number}: {reminder_date(due)} спишем обещанный платёж 300,00 р."
    )
    assert f"Завтра, {reminder_date(due)}" in letter.body_text and "300,00 руб." in letter.body_text


# -- pauses (the integrator calls these from the pause's billing step) ----------------------


async def test_pause_reminders_take_a_select_of_contracts_and_are_sent_once(
    session_factory: Any, settings: Settings
) -> None:
    # given two contracts whose pause starts tomorrow, and one that ends tomorrow
    starting = await make_subscriber(session_factory, settings, contracts=2)
    ending = await make_subscriber(session_factory, settings)
    await _choose(session_factory, ending.id, PAUSE="SMS")
    tomorrow = utcnow().date() + timedelta(days=1)
    starts = sa.select(Contract.id).where(col(Contract.subscriber_id) == starting.id)
    ends = sa.select(Contract.id).where(col(Contract.subscriber_id) == ending.id)
    # when each is called twice (two runs of the billing day)
    for _ in range(2):
        async with unit_of_work(session_factory) as session:
            await reminders.queue_pause_starts(
                session, settings=settings, contract_ids=starts, starts_on=tomorrow
            )
            await reminders.queue_pause_ends(
                session, settings=settings, contract_ids=ends, resumes_on=tomorrow
            )
    # then one reminder each
    started = await _reminders(session_factory, "REMINDER_PAUSE_STARTS")
    assert sorted(r.subject for r in started) == sorted(
        f"Кабинет Телеком: завтра начинается интернет-пауза по договору № {n}"
        for n in starting.contract_numbers
    )
    assert {r.recipient for r in started} == {starting.email}
    (ended,) = await _reminders(session_factory, "REMINDER_PAUSE_ENDS")
    assert (ended.channel, ended.recipient) == ("SMS", ending.phone)
    assert ended.body_text == (
        f"Договор {ending.contract_numbers[0]}: пауза заканчивается, услуги снова с "
        f"{reminder_date(tomorrow)}."
    )
    # and a pause starting on another day is another reminder
    async with unit_of_work(session_factory) as session:
        await reminders.queue_pause_starts(
            session,
            settings=settings,
            contract_ids=ends,
            starts_on=tomorrow + timedelta(days=30),
        )
    assert len(await _reminders(session_factory, "REMINDER_PAUSE_STARTS")) == 3


async def test_the_billing_day_reminds_of_a_pause_the_day_before_it_starts_and_ends(
    session_factory: Any, settings: Settings
) -> None:
    # given a pause planned for five days, the subscriber choosing SMS for pauses
    made = await make_subscriber(session_factory, settings, balance=Decimal("500.00"))
    cid, number = made.contract_ids[0], made.contract_numbers[0]
    await _choose(session_factory, made.id, PAUSE="SMS", LOW_BALANCE="NONE")
    start = _month_start() + timedelta(days=3)
    end = start + timedelta(days=4)
    async with unit_of_work(session_factory) as session:
        await pause.pause_service(
            session,
            settings=settings,
            contract_id=cid,
            starts_on=start,
            ends_on=end,
            actor="test",
            today=start - timedelta(days=3),
        )
    # when the billing day runs two days before it starts
    await run_billing_day(session_factory, settings=settings, day=start - timedelta(days=2))
    # then nothing yet
    assert await _reminders(session_factory, "REMINDER_PAUSE_STARTS") == []
    # when the day before it runs, twice, and the pause's days up to its last but two
    for day in (start - timedelta(days=1), start - timedelta(days=1), start, end - timedelta(2)):
        await run_billing_day(session_factory, settings=settings, day=day)
    # then one SMS: it starts tomorrow; none yet about its end
    (starts,) = await _reminders(session_factory, "REMINDER_PAUSE_STARTS")
    assert (starts.channel, starts.recipient) == ("SMS", made.phone)
    assert starts.body_text == f"Договор {number}: интернет-пауза начнётся {reminder_date(start)}."
    assert await _status(session_factory, cid) == "PAUSED"
    assert await _reminders(session_factory, "REMINDER_PAUSE_ENDS") == []
    # when the day before its last day runs, twice, and its last day
    for day in (end - timedelta(1), end - timedelta(1), end):
        await run_billing_day(session_factory, settings=settings, day=day)
    # then one SMS: it ends tomorrow, the service is back the day after its last day
    (ends,) = await _reminders(session_factory, "REMINDER_PAUSE_ENDS")
    assert ends.body_text == (
        f"Договор {number}: пауза заканчивается, услуги снова с "
        f"{reminder_date(end + timedelta(days=1))}."
    )


async def test_a_pause_that_ends_below_zero_is_reminded_as_a_suspension(
    session_factory: Any, settings: Settings
) -> None:
    # given two contracts with 5.00, each paused for three days from the first billing day
    start = _month_start()
    by_day = await make_subscriber(session_factory, settings, balance=Decimal("5.00"))
    early = await make_subscriber(session_factory, settings, balance=Decimal("5.00"))
    for made in (by_day, early):
        await _choose(session_factory, made.id, LOW_BALANCE="NONE")
        async with unit_of_work(session_factory) as session:
            await pause.pause_service(
                session,
                settings=settings,
                contract_id=made.contract_ids[0],
                starts_on=start,
                ends_on=start + timedelta(days=2),
                actor="test",
                today=start - timedelta(days=1),
            )
    # when its days are billed (5.00 - 3 × 3.00 = -4.00), one resumed on the last day
    for n in (0, 1, 2):
        await run_billing_day(session_factory, settings=settings, day=start + timedelta(days=n))
    async with unit_of_work(session_factory) as session:
        await pause.resume_service(
            session,
            settings=settings,
            contract_id=early.contract_ids[0],
            today=start + timedelta(days=2),
        )
    # and the day after its last day, twice
    for _ in range(2):
        await run_billing_day(session_factory, settings=settings, day=start + timedelta(days=3))
    # then both are SUSPENDED, and each subscriber is told once
    for made in (by_day, early):
        assert await _status(session_factory, made.contract_ids[0]) == "SUSPENDED"
    suspended = await _reminders(session_factory, "REMINDER_SUSPENDED")
    assert sorted(r.recipient for r in suspended) == sorted((by_day.email, early.email))
    assert all("долг 4,00 руб." in r.body_text for r in suspended)


async def test_a_rolled_back_change_queues_no_reminder(
    session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    contracts = sa.select(Contract.id).where(col(Contract.subscriber_id) == made.id)
    # when the transaction that queued it fails
    with pytest.raises(RuntimeError):
        async with unit_of_work(session_factory) as session:
            await reminders.queue_pause_starts(
                session, settings=settings, contract_ids=contracts, starts_on=utcnow().date()
            )
            raise RuntimeError("the pause was refused after all")
    # then
    assert await _reminders(session_factory) == []


# -- two runs at once -----------------------------------------------------------------------


async def test_two_billing_runs_at_once_queue_each_reminder_once(
    session_factory: Any, settings: Settings, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("a race needs concurrent writers: PostgreSQL only (SQLite has one writer)")
    # given contracts to suspend, to warn of a low balance, and a promise due tomorrow
    today = utcnow().date()
    debtors = [await make_subscriber(session_factory, settings) for _ in range(4)]
    low = [await make_subscriber(session_factory, settings) for _ in range(4)]
    for made in low:
        cid = made.contract_ids[0]
        daily = await _daily(session_factory, cid, today)
        await post_ledger(session_factory, cid, "ADJUSTMENT", str(daily * 3))
    promising = await make_subscriber(session_factory, settings, balance=Decimal("20.00"))
    await _choose(session_factory, promising.id, LOW_BALANCE="NONE")
    result = await activate(session_factory, settings, promising.contract_ids[0], "300")
    day = result.promise.due_at.date() - timedelta(days=1)
    # when two hosts run the billing day at once, for today and then for the day before
    # the promise is due
    await asyncio.gather(
        run_billing_day(session_factory, settings=settings, day=today),
        run_billing_day(session_factory, settings=settings, day=today),
    )
    if day != today:
        await asyncio.gather(
            run_billing_day(session_factory, settings=settings, day=day),
            run_billing_day(session_factory, settings=settings, day=day),
        )
    # then each reminder once
    queued = await _reminders(session_factory)
    kinds = sorted((r.kind, r.recipient) for r in queued)
    assert kinds == sorted(
        [("REMINDER_SUSPENDED", m.email) for m in debtors]
        + [("REMINDER_LOW_BALANCE", m.email) for m in low]
        + [("REMINDER_PROMISE_DUE", promising.email)]
    )
