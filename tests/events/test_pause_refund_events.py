"""The last four event types of SPEC §9, each produced by its real trigger (the API, the
billing day), delivered signed to the receiver on loopback: `payment.refunded`,
`contract.paused` and `contract.pause_ended` (a pause from today and its resumption, and the
billing day's, run twice and twice at once: each reported once; a pause that ends below zero
also `contract.suspended`), `social_access.activated` (not on the idempotent repeat)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from core.ids import to_global_id
from core.payment_providers import payment_global_id
from models import Event, Refund, SocialAccessGrant
from models.base import utcnow
from resolvers.billing import run_billing_day
from tests.conftest import gql
from tests.events.receiver import Receiver
from tests.events.test_triggers import check_delivery, delivered, only, receiver, subscribe
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_charges import fund
from tests.money.test_refunds import paid

__all__ = ["receiver"]  # the fixture, shared with test_triggers

REFUND = """
mutation($input: RefundPaymentInput!) {
  refundPayment(input: $input) { refundStatus errors { field code message } }
}
"""
PAUSE = """mutation($i: PauseServiceInput!) { pauseService(input: $i) {
  contract { status } errors { field code message } } }"""
RESUME = """mutation($i: ResumeServiceInput!) { resumeService(input: $i) {
  contract { status } errors { field code message } } }"""
SOCIAL = """mutation($i: ActivateSocialAccessInput!) { activateSocialAccess(input: $i) {
  contract { status socialAccess { active until } } errors { field code message } } }"""


def _day(n: int) -> date:
    return utcnow().date() + timedelta(days=n)


async def _pause(client: Any, me: Any, number: str, start: date, end: date) -> Any:
    variables = {"i": {"contractNumber": number, "from": start.isoformat(), "to": end.isoformat()}}
    answer = (await gql(client, PAUSE, variables, headers=me))["pauseService"]
    assert answer["errors"] == [], answer
    return answer


async def _stored(session_factory: Any, kind: str) -> list[Event]:
    async with session_factory() as session:
        return list(
            (
                await session.scalars(
                    sa.select(Event).where(col(Event.type) == kind).order_by(col(Event.id))
                )
            ).all()
        )


async def test_a_refund_sends_payment_refunded_with_the_total_refunded(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given a 500.00 sandbox top-up
    await subscribe(session_factory, settings, receiver, ["payment.refunded"])
    made = await make_subscriber(session_factory, settings)
    number = made.contract_numbers[0]
    payment_id = await paid(client, settings, session_factory, made.contract_ids[0])
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    # when: refunded in two parts (the sandbox refunds at once)
    for amount in ("200.00", "300.00"):
        variables = {
            "input": {
                "paymentId": payment_global_id(payment_id),
                "amount": amount,
                "reason": "Абонент оплатил дважды",
            }
        }
        answer = (await gql(client, REFUND, variables, headers=staff))["refundPayment"]
        assert answer == {"refundStatus": "SUCCEEDED", "errors": []}
    await delivered(session_factory, settings, receiver)
    # then: one event per refund, the reason not in it
    async with session_factory() as session:
        refund_ids = (
            await session.scalars(sa.select(col(Refund.id)).order_by(col(Refund.id)))
        ).all()
    got = sorted(
        (check_delivery(r, number) for r in receiver.events("payment.refunded")),
        key=lambda data: data["refundedTotal"],
    )
    assert [data["refundId"] for data in got] == [to_global_id("Refund", i) for i in refund_ids]
    assert got[0] == {
        "contractNumber": number,
        "paymentId": payment_global_id(payment_id),
        "refundId": got[0]["refundId"],
        "amount": "200.00",
        "currency": "RUB",
        "provider": "sandbox",
        "refundedTotal": "200.00",
    }
    assert (got[1]["amount"], got[1]["refundedTotal"]) == ("300.00", "500.00")
    assert receiver.types() == ["payment.refunded"] * 2


async def test_a_pause_from_today_and_its_resumption_send_paused_and_pause_ended(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    made = await make_subscriber(session_factory, settings, balance=Decimal("100.00"))
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    me = await sign_in(client, made.login or "")
    # when: a pause from today (it starts at once)
    started = await _pause(client, me, number, _day(0), _day(4))
    assert started["contract"]["status"] == "PAUSED"
    await delivered(session_factory, settings, receiver)
    # then
    paused = check_delivery(only(receiver, "contract.paused"), number)
    assert paused == {
        "contractNumber": number,
        "status": "PAUSED",
        "from": _day(0).isoformat(),
        "to": _day(4).isoformat(),
    }
    # when: resumed while the balance is below zero (staff's adjustment meanwhile)
    await fund(session_factory, cid, Decimal("-150.00"), kind="ADJUSTMENT")
    resumed = (await gql(client, RESUME, {"i": {"contractNumber": number}}, headers=me))[
        "resumeService"
    ]
    assert resumed["errors"] == [] and resumed["contract"]["status"] == "SUSPENDED"
    await delivered(session_factory, settings, receiver)
    # then: the pause's end, and the suspension the network must apply
    ended = check_delivery(only(receiver, "contract.pause_ended"), number)
    assert ended == {
        "contractNumber": number,
        "status": "SUSPENDED",
        "from": _day(0).isoformat(),
        "to": _day(4).isoformat(),
        "endedOn": _day(0).isoformat(),
    }
    suspended = check_delivery(only(receiver, "contract.suspended"), number)
    assert suspended == {
        "contractNumber": number,
        "status": "SUSPENDED",
        "reason": "DEBT",
        "balance": "-50.00",
    }
    assert sorted(receiver.types()) == [
        "contract.pause_ended",
        "contract.paused",
        "contract.suspended",
    ]


async def test_a_resumption_in_funds_sends_pause_ended_active_only(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given a pause from today
    await subscribe(session_factory, settings, receiver, ["contract.pause_ended"])
    made = await make_subscriber(session_factory, settings, balance=Decimal("100.00"))
    number = made.contract_numbers[0]
    me = await sign_in(client, made.login or "")
    await _pause(client, me, number, _day(0), _day(2))
    # when
    resumed = (await gql(client, RESUME, {"i": {"contractNumber": number}}, headers=me))[
        "resumeService"
    ]
    assert resumed["errors"] == [] and resumed["contract"]["status"] == "ACTIVE"
    await delivered(session_factory, settings, receiver)
    # then
    ended = check_delivery(only(receiver, "contract.pause_ended"), number)
    assert (ended["status"], ended["endedOn"]) == ("ACTIVE", _day(0).isoformat())
    assert await _stored(session_factory, "contract.suspended") == []


async def test_the_billing_day_reports_each_pause_start_and_end_once(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given two pauses from tomorrow: one in funds for two days, one with 5.00 for three
    # days (3 × 3.00 takes it below zero: it ends SUSPENDED)
    await subscribe(session_factory, settings, receiver)
    rich = await make_subscriber(session_factory, settings, balance=Decimal("1000.00"))
    poor = await make_subscriber(session_factory, settings, balance=Decimal("5.00"))
    for made, last in ((rich, _day(2)), (poor, _day(3))):
        me = await sign_in(client, made.login or "")
        await _pause(client, me, made.contract_numbers[0], _day(1), last)
    rich_number, poor_number = rich.contract_numbers[0], poor.contract_numbers[0]
    # when: each day from tomorrow run twice at once, then once more
    for n in (1, 2, 3, 4):
        runs = await asyncio.gather(
            run_billing_day(session_factory, settings=settings, day=_day(n)),
            run_billing_day(session_factory, settings=settings, day=_day(n)),
        )
        again = await run_billing_day(session_factory, settings=settings, day=_day(n))
        assert (again.pauses_started, again.pauses_ended) == (0, 0)
        assert sum(r.pauses_started for r in runs) == (2 if n == 1 else 0)
        assert sum(r.pauses_ended for r in runs) == (1 if n in (3, 4) else 0)
    await delivered(session_factory, settings, receiver)
    # then: each pause started once and ended once
    paused = {r.body["data"]["contractNumber"]: r for r in receiver.events("contract.paused")}
    assert len(receiver.events("contract.paused")) == 2
    assert check_delivery(paused[rich_number], rich_number) == {
        "contractNumber": rich_number,
        "status": "PAUSED",
        "from": _day(1).isoformat(),
        "to": _day(2).isoformat(),
    }
    assert check_delivery(paused[poor_number], poor_number)["to"] == _day(3).isoformat()
    ended = {r.body["data"]["contractNumber"]: r for r in receiver.events("contract.pause_ended")}
    assert len(receiver.events("contract.pause_ended")) == 2
    assert check_delivery(ended[rich_number], rich_number) == {
        "contractNumber": rich_number,
        "status": "ACTIVE",
        "from": _day(1).isoformat(),
        "to": _day(2).isoformat(),
        "endedOn": _day(2).isoformat(),
    }
    assert check_delivery(ended[poor_number], poor_number) == {
        "contractNumber": poor_number,
        "status": "SUSPENDED",
        "from": _day(1).isoformat(),
        "to": _day(3).isoformat(),
        "endedOn": _day(3).isoformat(),
    }
    # and the network learns to block the one below zero, once
    suspended = check_delivery(only(receiver, "contract.suspended"), poor_number)
    assert suspended == {
        "contractNumber": poor_number,
        "status": "SUSPENDED",
        "reason": "DEBT",
        "balance": "-4.00",
    }
    assert len(receiver.events()) == 5


async def test_social_access_sends_activated_once(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given a contract the billing day suspends for debt
    await subscribe(session_factory, settings, receiver, ["social_access.activated"])
    made = await make_subscriber(session_factory, settings, balance=Decimal("0.00"))
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    me = await sign_in(client, made.login or "")
    await run_billing_day(session_factory, settings=settings, day=_day(0))
    # when: activated, and again (the same access)
    variables = {"i": {"contractNumber": number}}
    for _ in range(2):
        answer = (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"]
        assert answer["errors"] == [] and answer["contract"]["socialAccess"]["active"] is True
    await delivered(session_factory, settings, receiver)
    # then: one event, with the grant's end
    async with session_factory() as session:
        until = (
            await session.scalars(
                sa.select(col(SocialAccessGrant.until)).where(
                    col(SocialAccessGrant.contract_id) == cid
                )
            )
        ).one()
    data = check_delivery(only(receiver, "social_access.activated"), number)
    assert data == {
        "contractNumber": number,
        "status": "SUSPENDED",
        "until": until.isoformat().replace("+00:00", "Z"),
    }
    assert receiver.types() == ["social_access.activated"]
