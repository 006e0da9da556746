"""Pruning the history (core/webhooks_out.py `prune`, `kabinet events prune`): old final
deliveries and their events go; anything still to send, recent or not fanned out stays; two
prunes at once delete each row once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import create_engine, create_session_factory, unit_of_work
from core.webhooks_out import PruneReport, prune
from kabinet import cli
from models import Event, WebhookDelivery
from models.base import table_of, utcnow
from resolvers.events import EVENT_TYPES
from resolvers.webhook_subscriptions import create_subscription, redeliver
from tests.factories import make_staff

_events = table_of(Event)
_deliveries = table_of(WebhookDelivery)


async def _subscriptions(session_factory: Any, settings: Any, count: int) -> list[int]:
    staff_id, _, _ = await make_staff(session_factory, settings)
    ids = []
    for n in range(count):
        async with unit_of_work(session_factory) as session:
            created = await create_subscription(
                session,
                settings=settings,
                staff_id=staff_id,
                url=f"http://127.0.0.1:9/hook{n}",
                events=list(EVENT_TYPES),
                description="",
                client_address=None,
            )
        ids.append(int(created.subscription.id))
    return ids


async def _event(
    session_factory: Any, *, occurred_at: datetime, fanned_out: bool = True, statuses: Any = ()
) -> int:
    """An event as the deliverer leaves it: `statuses` is (subscription id, status) pairs."""
    async with unit_of_work(session_factory) as session:
        event_id = (
            await session.execute(
                sa.insert(_events)
                .values(
                    type="contract.suspended",
                    occurred_at=occurred_at,
                    contract_number="100001",
                    data={},
                    fanned_out_at=occurred_at if fanned_out else None,
                )
                .returning(_events.c.id)
            )
        ).scalar_one()
        for subscription_id, status in statuses:
            await session.execute(
                sa.insert(_deliveries).values(
                    event_id=event_id,
                    subscription_id=subscription_id,
                    status=status,
                    attempts=3 if status != "DELIVERED" else 1,
                    created_at=occurred_at,
                    next_attempt_at=occurred_at + timedelta(hours=2),
                    delivered_at=occurred_at if status == "DELIVERED" else None,
                )
            )
    return int(event_id)


async def _left(session_factory: Any) -> tuple[set[int], set[tuple[int, str]]]:
    async with session_factory() as session:
        events = set((await session.scalars(sa.select(_events.c.id))).all())
        deliveries = {
            (row.event_id, row.status)
            for row in (
                await session.execute(sa.select(_deliveries.c.event_id, _deliveries.c.status))
            ).all()
        }
    return events, deliveries


async def test_old_final_history_goes_and_what_may_still_be_sent_stays(
    session_factory: Any, settings: Any
) -> None:
    # given: two subscriptions, events 40 days old and 10 days old
    one, two = await _subscriptions(session_factory, settings, 2)
    now = utcnow()
    old, recent = now - timedelta(days=40), now - timedelta(days=10)
    delivered = await _event(session_factory, occurred_at=old, statuses=[(one, "DELIVERED")])
    failed = await _event(
        session_factory, occurred_at=old, statuses=[(one, "FAILED"), (two, "DELIVERED")]
    )
    nobody = await _event(session_factory, occurred_at=old)  # no subscription wanted it
    retrying = await _event(session_factory, occurred_at=old, statuses=[(one, "PENDING")])
    half = await _event(
        session_factory, occurred_at=old, statuses=[(one, "DELIVERED"), (two, "PENDING")]
    )
    fresh = await _event(session_factory, occurred_at=recent, statuses=[(one, "DELIVERED")])
    unsent = await _event(session_factory, occurred_at=old, fanned_out=False)
    progress: list[str] = []

    # when: batches of 2 rows
    report = await prune(
        session_factory, older_than=timedelta(days=30), now=now, batch=2, progress=progress.append
    )

    # then
    assert (report.deliveries, report.events) == (4, 3)
    events, deliveries = await _left(session_factory)
    assert delivered not in events and failed not in events and nobody not in events
    assert events == {retrying, half, fresh, unsent}
    assert deliveries == {(retrying, "PENDING"), (half, "PENDING"), (fresh, "DELIVERED")}
    assert progress[-1] == "events prune: 3 events deleted so far"
    assert "events prune: 4 deliveries deleted so far" in progress

    # when: again, nothing more to do
    again = await prune(session_factory, older_than=timedelta(days=30), now=now)

    # then
    assert (again.deliveries, again.events) == (0, 0)
    assert (await _left(session_factory))[0] == {retrying, half, fresh, unsent}


async def test_the_cli_prunes_and_prints_the_counts(
    session_factory: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given: a delivered event 40 days old and one 10 days old
    (one,) = await _subscriptions(session_factory, settings, 1)
    now = utcnow()
    await _event(session_factory, occurred_at=now - timedelta(days=40), statuses=[(one, "FAILED")])
    fresh = await _event(
        session_factory, occurred_at=now - timedelta(days=10), statuses=[(one, "DELIVERED")]
    )
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KABINET_LOG_LEVEL", "WARNING")

    # when: the default (30 days)
    assert await asyncio.to_thread(cli.main, ["events", "prune"]) == 0

    # then
    out = capsys.readouterr().out
    assert "events prune: deleting the history older than 30 days" in out
    assert "events prune: 1 deliveries deleted so far" in out
    assert "events prune: 1 deliveries and 1 events deleted (occurred before " in out
    assert (await _left(session_factory)) == ({fresh}, {(fresh, "DELIVERED")})

    # when: a shorter history asked for
    assert await asyncio.to_thread(cli.main, ["events", "prune", "--older-than-days", "5"]) == 0

    # then
    assert "events prune: 1 deliveries and 1 events deleted" in capsys.readouterr().out
    assert (await _left(session_factory)) == (set(), set())


async def test_the_cli_refuses_less_than_a_day(
    settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)

    # when
    code = await asyncio.to_thread(cli.main, ["events", "prune", "--older-than-days", "0"])

    # then
    assert code == 2
    assert "bad --older-than-days 0" in capsys.readouterr().err


async def test_two_prunes_at_once_delete_each_row_once(
    session_factory: Any, settings: Any, backend: str
) -> None:
    # given: 600 old events delivered to two subscriptions, and two prunes with their own
    # engines (two processes' worth of connections)
    one, two = await _subscriptions(session_factory, settings, 2)
    now = utcnow()
    old = now - timedelta(days=40)
    async with unit_of_work(session_factory) as session:
        await session.execute(
            sa.insert(_events),
            [
                {
                    "type": "contract.suspended",
                    "occurred_at": old,
                    "contract_number": "100001",
                    "data": {},
                    "fanned_out_at": old,
                }
                for _ in range(600)
            ],
        )
        ids = (await session.scalars(sa.select(_events.c.id))).all()
        await session.execute(
            sa.insert(_deliveries),
            [
                {
                    "event_id": event_id,
                    "subscription_id": subscription_id,
                    "status": "DELIVERED",
                    "attempts": 1,
                    "created_at": old,
                    "next_attempt_at": old,
                }
                for event_id in ids
                for subscription_id in (one, two)
            ],
        )
    keep = await _event(session_factory, occurred_at=old, statuses=[(one, "PENDING")])
    engines = [create_engine(settings) for _ in range(2)]
    try:
        factories = [create_session_factory(engine) for engine in engines]

        # when
        reports: list[PruneReport] = await asyncio.gather(
            *(
                prune(factory, older_than=timedelta(days=30), now=now, batch=50)
                for factory in factories
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()

    # then: every row deleted by one of them, counted once
    assert sum(r.deliveries for r in reports) == 1200
    assert sum(r.events for r in reports) == 600
    assert (await _left(session_factory)) == ({keep}, {(keep, "PENDING")})


async def test_a_prune_leaves_a_delivery_being_redelivered(
    session_factory: Any, settings: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    # given: an old FAILED delivery that staff are redelivering (transaction still open)
    staff_id, _, _ = await make_staff(session_factory, settings, username="redeliverer")
    (one,) = await _subscriptions(session_factory, settings, 1)
    now = utcnow()
    event = await _event(
        session_factory, occurred_at=now - timedelta(days=40), statuses=[(one, "FAILED")]
    )
    async with session_factory() as session:
        delivery_id = (await session.scalars(sa.select(_deliveries.c.id))).one()
    other = create_engine(settings)
    try:
        async with unit_of_work(session_factory) as session:
            await redeliver(
                session, staff_id=staff_id, delivery_id=delivery_id, client_address=None
            )

            # when: a prune runs meanwhile (its own connections)
            report = await prune(
                create_session_factory(other), older_than=timedelta(days=30), now=now
            )
    finally:
        await other.dispose()

    # then: it skipped the delivery, now PENDING again, and kept its event
    assert (report.deliveries, report.events) == (0, 0)
    assert (await _left(session_factory)) == ({event}, {(event, "PENDING")})
