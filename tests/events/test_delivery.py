"""The deliverer (core/webhooks_out.py): the outbox's transaction, the retry schedule on a
moved clock, a receiver that does not answer, several deliverers at once, the signature
and the docs' snippet."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import create_engine, create_session_factory, unit_of_work
from core.webhooks_out import (
    FAN_OUT_BATCH,
    RETRY_DELAYS,
    deliver_all_now,
    deliver_due,
    signature,
)
from models import Event, ServiceOption, WebhookDelivery
from models.base import utcnow
from resolvers import services
from resolvers.events import record_event
from tests.events.receiver import Receiver, docs_verify, running_receiver
from tests.events.test_triggers import subscribe
from tests.factories import make_subscriber


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


async def _deliveries(session_factory: Any) -> list[Any]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(sa.select(WebhookDelivery).order_by(col(WebhookDelivery.id)))
            ).scalars()
        )


async def test_a_rolled_back_change_sends_nothing(
    session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    made = await make_subscriber(session_factory, settings, balance=Decimal("500.00"))
    async with session_factory() as session:
        option_id = await session.scalar(
            sa.select(col(ServiceOption.id)).where(col(ServiceOption.code) == "static-ip")
        )
    assert option_id is not None

    # when: a service change whose transaction is rolled back after its event was written
    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with unit_of_work(session_factory) as session:
            await services.activate_option(
                session, settings=settings, contract_id=made.contract_ids[0], option_id=option_id
            )
            raise Abandoned
    report = await deliver_due(session_factory, settings=settings)
    # then: no event, no delivery, nothing received
    async with session_factory() as session:
        assert await session.scalar(sa.select(sa.func.count(col(Event.id)))) == 0
    assert report.delivered == 0 and receiver.events() == []

    # when: the same change committed
    async with unit_of_work(session_factory) as session:
        await services.activate_option(
            session, settings=settings, contract_id=made.contract_ids[0], option_id=option_id
        )
    await deliver_due(session_factory, settings=settings)
    # then
    assert receiver.types() == ["contract.services_changed"]


async def _record(session_factory: Any, count: int, kind: str = "contract.suspended") -> None:
    async with unit_of_work(session_factory) as session:
        for n in range(count):
            await record_event(session, kind, contract_number=f"7700{n:04d}", data={"n": n})


async def test_a_receiver_down_gets_the_event_later_on_the_retry_schedule(
    session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given: the receiver answers 500
    await subscribe(session_factory, settings, receiver)
    await _record(session_factory, 1)
    receiver.mode = "fail"
    start = utcnow()
    moment = start
    receiver.clock = moment.timestamp()
    # when: the first attempt, then the clock moved to each retry and just before it
    report = await deliver_due(session_factory, settings=settings, now=moment)
    assert report.failed == 1
    for attempt, delay in enumerate(RETRY_DELAYS[:4], start=2):
        almost = moment + delay - timedelta(seconds=1)
        receiver.clock = almost.timestamp()
        early = await deliver_due(session_factory, settings=settings, now=almost)
        assert early.delivered + early.failed == 0, (attempt, "tried before it was due")
        moment = moment + delay
        receiver.clock = moment.timestamp()
        due = await deliver_due(session_factory, settings=settings, now=moment)
        assert due.failed == 1, attempt
        (delivery,) = await _deliveries(session_factory)
        assert delivery.attempts == attempt and delivery.status == "PENDING"
        assert delivery.last_status_code == 500
        assert delivery.next_attempt_at == moment + RETRY_DELAYS[attempt - 1]
    # then: the receiver back, the next attempt on the schedule delivers it
    receiver.mode = "ok"
    moment = moment + RETRY_DELAYS[4]
    receiver.clock = moment.timestamp()
    report = await deliver_due(session_factory, settings=settings, now=moment)
    assert report.delivered == 1
    (delivery,) = await _deliveries(session_factory)
    assert delivery.status == "DELIVERED" and delivery.attempts == 6
    assert delivery.delivered_at == moment and delivery.last_error is None
    got = receiver.events()
    assert len(got) == 6 and len({r.event_id for r in got}) == 1  # one event, six attempts
    assert all(r.signed for r in got)
    # and the schedule: 1 min, 5 min, 30 min, 2 h, 6 h, then 12 h while within 3 days
    assert [d.total_seconds() / 60 for d in RETRY_DELAYS[:5]] == [1, 5, 30, 120, 360]
    assert set(RETRY_DELAYS[5:]) == {timedelta(hours=12)}
    assert sum(RETRY_DELAYS, timedelta()) <= timedelta(days=3)
    assert sum(RETRY_DELAYS, timedelta()) + timedelta(hours=12) > timedelta(days=3)


async def test_a_delivery_failing_for_three_days_is_failed(
    session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    await _record(session_factory, 1)
    receiver.mode = "fail"
    moment = utcnow()
    # when: every attempt of the schedule fails
    for delay in (timedelta(), *RETRY_DELAYS):
        moment = moment + delay
        receiver.clock = moment.timestamp()
        report = await deliver_due(session_factory, settings=settings, now=moment)
        assert report.failed == 1
    # then: FAILED, and never tried again
    (delivery,) = await _deliveries(session_factory)
    assert delivery.status == "FAILED" and delivery.attempts == len(RETRY_DELAYS) + 1
    later = await deliver_due(session_factory, settings=settings, now=moment + timedelta(days=9))
    assert later.delivered + later.failed == 0 and later.remaining == 0
    assert len(receiver.events()) == len(RETRY_DELAYS) + 1


async def test_a_receiver_that_does_not_answer_is_retried(
    session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given: the receiver holds the request longer than the client waits
    await subscribe(session_factory, settings, receiver)
    await _record(session_factory, 1)
    receiver.mode = "hang"
    receiver.hang_seconds = 3
    moment = utcnow()
    # when
    async with httpx.AsyncClient(timeout=0.5, trust_env=False) as impatient:
        report = await deliver_due(session_factory, settings=settings, now=moment, client=impatient)
    # then
    assert report.failed == 1
    (delivery,) = await _deliveries(session_factory)
    assert delivery.status == "PENDING" and delivery.last_status_code is None
    assert delivery.last_error is not None and "no answer" in delivery.last_error
    assert delivery.next_attempt_at == moment + RETRY_DELAYS[0]
    assert delivery.locked_until is None


async def test_two_deliverers_at_once_send_no_event_twice(
    settings: Any, session_factory: Any, receiver: Receiver, backend: str
) -> None:
    # given: many events for two subscriptions, and two deliverers with their own engines
    # (two processes' worth of connections)
    await subscribe(session_factory, settings, receiver)
    await subscribe(session_factory, settings, receiver)
    await _record(session_factory, 120)
    engines = [create_engine(settings) for _ in range(2)]
    moment = utcnow()
    try:
        factories = [create_session_factory(engine) for engine in engines]

        async def deliverer(factory: Any) -> int:
            sent = 0
            for _ in range(20):
                report = await deliver_due(factory, settings=settings, now=moment, limit=25)
                sent += report.delivered + report.failed
            return sent

        # when
        sent = await asyncio.gather(*(deliverer(factory) for factory in factories))
    finally:
        for engine in engines:
            await engine.dispose()
    # then: every (event, subscription) pair sent exactly once in the round
    got = receiver.events()
    assert len(got) == 240 and sum(sent) == 240
    pairs = Counter((r.event_id, r.headers["kabinet-signature"].split(",v1=")[1]) for r in got)
    assert set(pairs.values()) == {1}
    per_event = Counter(r.event_id for r in got)
    assert set(per_event.values()) == {2} and len(per_event) == 120
    assert {d.status for d in await _deliveries(session_factory)} == {"DELIVERED"}
    if backend == "postgresql":
        assert min(sent) > 0, sent  # both took part


def test_the_docs_snippet_accepts_a_delivery_and_rejects_a_forged_or_stale_one() -> None:
    verify = docs_verify()
    secret = "whsec_test-secret"
    body = json.dumps({"id": "evt_1", "type": "contract.suspended"}).encode()
    now = 1_800_000_000
    good = signature(secret, now, body)
    # then: what Kabinet signs is accepted
    assert verify(secret, good, body, now + 10)
    # a forged body, a forged signature, another secret: rejected
    assert not verify(secret, good, body.replace(b"suspended", b"resumed"), now)
    forged = hmac.new(b"guess", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert not verify(secret, f"t={now},v1={forged}", body, now)
    assert not verify("whsec_other", good, body, now)
    # a stale one (replayed more than 5 minutes later), or a timestamp moved forward
    assert not verify(secret, good, body, now + 301)
    moved = good.replace(f"t={now}", f"t={now + 1000}")
    assert not verify(secret, moved, body, now + 1000)
    # garbage headers
    for header in ("", "t=abc,v1=00", "v1=00", "nonsense"):
        assert not verify(secret, header, body, now)


async def test_one_pass_gets_past_many_events_nobody_wants(
    session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given: more events of an unwanted type than a round fans out, then a wanted one
    await subscribe(session_factory, settings, receiver, ["contract.resumed"])
    await _record(session_factory, FAN_OUT_BATCH + 20, "contract.suspended")
    await _record(session_factory, 1, "contract.resumed")
    # when: `kabinet events deliver`'s one pass
    report = await deliver_all_now(settings)
    # then
    assert report.delivered == 1 and report.remaining == 0
    assert receiver.types() == ["contract.resumed"]
