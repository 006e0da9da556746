"""Each event type Kabinet emits today, produced by its real trigger through the API or the
billing day's CLI, delivered to a receiver on loopback that checks the signature with the
docs' snippet (SPEC §9)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import unit_of_work
from core.payment_providers import sign
from core.webhooks_out import deliver_due
from kabinet import cli
from models import Contract, Event, PromisedPayment
from models.base import utcnow
from resolvers import payments
from resolvers.billing import run_billing_day
from resolvers.events import EVENT_TYPES
from resolvers.webhook_subscriptions import create_subscription
from tests.conftest import gql
from tests.events.receiver import Received, Receiver, running_receiver
from tests.factories import MadeSubscriber, make_staff, make_subscriber, sign_in
from tests.money.test_payments import top_up
from tests.money.test_webhook import _confirm as confirm_in_process
from tests.money.test_webhook import _never_at_once
from tests.services.test_services_api import give_points, mutate

REGISTER = """
mutation($input: RegisterInput!) {
  register(input: $input) { login errors { field code message } }
}
"""
TOP_UP = """
mutation($input: CreateTopUpInput!) {
  createTopUp(input: $input) { payment { id status } errors { field code message } }
}
"""
ACTIVATE = """
mutation($input: ActivatePromisedPaymentInput!) {
  activatePromisedPayment(input: $input) {
    promisedPayment { id amount fee dueAt }
    errors { field code message }
  }
}
"""
CATALOG = """{
  tariffs(region: "MOW") { id code }
  tvPackages { id code }
  channels { id mustCarry }
  serviceOptions { id code }
}"""
SERVICE = """
mutation($c: ChangeTariffInput!, $p: ConnectTvPackageInput!, $t: SetPersonalTvChannelsInput!,
         $o: ActivateOptionInput!) {
  changeTariff(input: $c) { errors { code message } }
  connectTvPackage(input: $p) { errors { code message } }
  setPersonalTvChannels(input: $t) { errors { code message } }
  activateOption(input: $o) { errors { code message } }
}
"""
MULTIROOM = """
mutation($a: AddMultiroomDeviceInput!) {
  addMultiroomDevice(input: $a) { contract { multiroomDevices { id } } errors { code } }
}
"""
REMOVE_MULTIROOM = """
mutation($r: RemoveMultiroomDeviceInput!) {
  removeMultiroomDevice(input: $r) { errors { code message } }
}
"""


def login_of(made: MadeSubscriber) -> str:
    assert made.login is not None
    return made.login


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


async def subscribe(
    session_factory: Any, settings: Any, receiver: Receiver, events: list[str] | None = None
) -> None:
    staff_id, _, _ = await make_staff(session_factory, settings)
    async with unit_of_work(session_factory) as session:
        created = await create_subscription(
            session,
            settings=settings,
            staff_id=staff_id,
            url=receiver.url,
            events=events or list(EVENT_TYPES),
            description="every event",
            client_address=None,
        )
    receiver.secrets.append(created.signing_secret)


async def delivered(session_factory: Any, settings: Any, receiver: Receiver) -> list[Received]:
    """One round of the deliverer; every delivery of it accepted."""
    report = await deliver_due(session_factory, settings=settings)
    assert report.failed == 0 and report.remaining == 0, report
    return receiver.events()


def check_delivery(received: Received, contract_number: str) -> dict[str, Any]:
    """The shape of SPEC §9, signed; the body's `data`."""
    assert received.signed, received.headers
    assert received.headers["content-type"] == "application/json"
    assert received.headers["kabinet-event-id"] == received.body["id"]
    assert received.headers["kabinet-signature"].startswith("t=")
    assert set(received.body) == {"id", "type", "occurredAt", "data"}
    assert received.body["occurredAt"].endswith("Z")
    data = received.body["data"]
    assert data["contractNumber"] == contract_number
    return data  # type: ignore[no-any-return]


def only(receiver: Receiver, kind: str) -> Received:
    found = receiver.events(kind)
    assert len(found) == 1, (kind, receiver.types())
    return found[0]


async def test_registration_sends_subscriber_registered(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    made = await make_subscriber(
        session_factory, settings, registered=False, security_code="20240517", email=None
    )
    number = made.contract_numbers[0]
    # when
    registered = (
        await gql(
            client,
            REGISTER,
            {
                "input": {
                    "contractNumber": number,
                    "securityCode": "20240517",
                    "legalStatus": "INDIVIDUAL",
                    "documentNumber": made.document,
                    "email": "new.subscriber@example.org",
                }
            },
        )
    )["register"]
    assert registered["errors"] == []
    await delivered(session_factory, settings, receiver)
    # then
    data = check_delivery(only(receiver, "subscriber.registered"), number)
    assert data["login"] == registered["login"]
    assert data["legalStatus"] == "INDIVIDUAL" and data["subscriberId"]
    assert receiver.types() == ["subscriber.registered"]


async def _confirm(client: Any, settings: Any, payment_id: str) -> None:
    body = json.dumps(
        {"paymentId": payment_id, "status": "SUCCEEDED", "providerReference": f"ref-{payment_id}"}
    ).encode()
    response = await client.post(
        "/webhooks/payments",
        content=body,
        headers={"content-type": "application/json", "x-signature": sign(settings, body)},
    )
    assert response.status_code == 200, response.text


async def _top_up(client: Any, settings: Any, me: Any, number: str, amount: str, key: str) -> str:
    created = (
        await gql(
            client,
            TOP_UP,
            {
                "input": {
                    "contractNumber": number,
                    "amount": amount,
                    "method": "BANK_CARD",
                    "idempotencyKey": key,
                }
            },
            headers=me,
        )
    )["createTopUp"]
    assert created["errors"] == []
    payment_id: str = created["payment"]["id"]
    await _confirm(client, settings, payment_id)
    return payment_id


async def test_a_top_up_sends_payment_succeeded_and_lifting_a_suspension_contract_resumed(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given: a plain contract (credited by the one statement on PostgreSQL) and a suspended
    # one in debt (the step-by-step way)
    await subscribe(session_factory, settings, receiver)
    plain = await make_subscriber(session_factory, settings, balance=Decimal("10.00"))
    debtor = await make_subscriber(session_factory, settings, balance=Decimal("-40.00"))
    async with unit_of_work(session_factory) as session:
        await session.execute(
            sa.update(Contract)
            .where(col(Contract.id) == debtor.contract_ids[0])
            .values(status="SUSPENDED")
        )
    # when
    plain_payment = await _top_up(
        client,
        settings,
        await sign_in(client, login_of(plain)),
        plain.contract_numbers[0],
        "500.00",
        "plain-top-up-0001",
    )
    debtor_payment = await _top_up(
        client,
        settings,
        await sign_in(client, login_of(debtor)),
        debtor.contract_numbers[0],
        "100.00",
        "debtor-top-up-001",
    )
    await delivered(session_factory, settings, receiver)
    # then
    succeeded = {r.body["data"]["contractNumber"]: r for r in receiver.events("payment.succeeded")}
    assert set(succeeded) == {plain.contract_numbers[0], debtor.contract_numbers[0]}
    first = check_delivery(succeeded[plain.contract_numbers[0]], plain.contract_numbers[0])
    assert first["paymentId"] == plain_payment
    assert (first["amount"], first["currency"], first["method"]) == ("500.00", "RUB", "BANK_CARD")
    assert first["receiptNumber"]
    second = check_delivery(succeeded[debtor.contract_numbers[0]], debtor.contract_numbers[0])
    assert second["paymentId"] == debtor_payment and second["amount"] == "100.00"
    resumed = check_delivery(only(receiver, "contract.resumed"), debtor.contract_numbers[0])
    assert resumed == {
        "contractNumber": debtor.contract_numbers[0],
        "status": "ACTIVE",
        "balance": "60.00",
    }
    assert sorted(receiver.types()) == [
        "contract.resumed",
        "payment.succeeded",
        "payment.succeeded",
    ]


async def test_a_promise_sends_activated_and_the_billing_day_overdue_and_suspended(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    made = await make_subscriber(session_factory, settings, opened_days_ago=120)
    number = made.contract_numbers[0]
    me = await sign_in(client, login_of(made))
    # when: a promise taken through the API
    taken = (
        await gql(
            client, ACTIVATE, {"input": {"contractNumber": number, "amount": "300.00"}}, headers=me
        )
    )["activatePromisedPayment"]
    assert taken["errors"] == []
    await delivered(session_factory, settings, receiver)
    # then
    activated = check_delivery(only(receiver, "promised_payment.activated"), number)
    assert activated["promisedPaymentId"] == taken["promisedPayment"]["id"]
    assert (activated["amount"], activated["fee"]) == ("300.00", "10.00")
    assert activated["dueAt"].endswith("Z")

    # when: the billing day after it is due debits it: the balance stays below zero
    async with session_factory() as session:
        due_at = (await session.scalars(sa.select(col(PromisedPayment.due_at)))).one()
    after_due = due_at + timedelta(minutes=1)
    await run_billing_day(session_factory, settings=settings, day=after_due.date(), now=after_due)
    await delivered(session_factory, settings, receiver)
    # then
    overdue = check_delivery(only(receiver, "promised_payment.overdue"), number)
    assert overdue["promisedPaymentId"] == taken["promisedPayment"]["id"]
    assert overdue["amount"] == "300.00" and Decimal(overdue["balance"]) < 0
    suspended = check_delivery(only(receiver, "contract.suspended"), number)
    assert suspended["status"] == "SUSPENDED" and suspended["reason"] == "DEBT"
    assert Decimal(suspended["balance"]) < 0
    async with session_factory() as session:
        status = await session.scalar(
            sa.select(col(Contract.status)).where(col(Contract.number) == number)
        )
        occurred = (
            await session.scalars(
                sa.select(col(Event.occurred_at)).where(col(Event.type) == "contract.suspended")
            )
        ).one()
    assert status == "SUSPENDED" and occurred == after_due  # the run's clock


async def test_the_billing_cli_suspends_debtors_and_kabinet_events_deliver_sends_them(
    session_factory: Any, settings: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: two contracts in debt, one with money
    await subscribe(session_factory, settings, receiver, ["contract.suspended"])
    debtors = [
        await make_subscriber(session_factory, settings, balance=Decimal("-5.00")) for _ in range(2)
    ]
    await make_subscriber(session_factory, settings, balance=Decimal("5000.00"))
    monkeypatch.setenv("KABINET_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KABINET_LOG_LEVEL", "WARNING")
    today = utcnow().date().isoformat()
    # when: `kabinet billing run`, twice (the second changes nothing), then `kabinet events
    # deliver`
    for _ in range(2):
        assert await asyncio.to_thread(cli.main, ["billing", "run", "--date", today]) == 0
    assert await asyncio.to_thread(cli.main, ["events", "deliver"]) == 0
    # then: one event for each contract suspended, delivered once
    got = receiver.events("contract.suspended")
    assert sorted(r.body["data"]["contractNumber"] for r in got) == sorted(
        d.contract_numbers[0] for d in debtors
    )
    for received in got:
        check_delivery(received, received.body["data"]["contractNumber"])
    assert receiver.types() == ["contract.suspended"] * 2


async def test_services_send_services_changed_and_the_tariff_tariff_changed_in_force(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    made = await make_subscriber(session_factory, settings, balance=Decimal("3000.00"))
    number = made.contract_numbers[0]
    me = await sign_in(client, login_of(made))
    catalog = await gql(client, CATALOG)
    dearer = next(t for t in catalog["tariffs"] if t["code"] == "home-300")
    sport = next(p for p in catalog["tvPackages"] if p["code"] == "sport")
    channels = [c["id"] for c in catalog["channels"] if not c["mustCarry"]][:6]
    static_ip = next(o for o in catalog["serviceOptions"] if o["code"] == "static-ip")
    # when: every kind of service through the API
    changed = await gql(
        client,
        SERVICE,
        {
            "c": {"contractNumber": number, "tariffId": dearer["id"]},
            "p": {"contractNumber": number, "packageId": sport["id"]},
            "t": {"contractNumber": number, "channelIds": channels},
            "o": {"contractNumber": number, "optionId": static_ip["id"]},
        },
        headers=me,
    )
    assert all(result["errors"] == [] for result in changed.values()), changed
    added = (await gql(client, MULTIROOM, {"a": {"contractNumber": number}}, headers=me))[
        "addMultiroomDevice"
    ]
    device = added["contract"]["multiroomDevices"][0]["id"]
    removed = await gql(
        client, REMOVE_MULTIROOM, {"r": {"contractNumber": number, "deviceId": device}}, headers=me
    )
    assert removed["removeMultiroomDevice"]["errors"] == []
    await delivered(session_factory, settings, receiver)
    # then: a services event for each change, none for the tariff until it is in force
    changes = [check_delivery(r, number) for r in receiver.events("contract.services_changed")]
    assert sorted((c["service"], c["change"]) for c in changes) == [
        ("MULTIROOM", "CONNECTED"),
        ("MULTIROOM", "DISCONNECTED"),
        ("OPTION", "CONNECTED"),
        ("PERSONAL_TV", "CHANGED"),
        ("TV_PACKAGE", "CONNECTED"),
    ]
    personal = next(c for c in changes if c["service"] == "PERSONAL_TV")
    assert sorted(personal["added"]) == sorted(channels) and personal["removed"] == []
    package = next(c for c in changes if c["service"] == "TV_PACKAGE")
    assert package["itemId"] == sport["id"]
    assert receiver.events("contract.tariff_changed") == []

    # when: the next billing day puts the tariff in force
    tomorrow = (utcnow() + timedelta(days=1)).date()
    await run_billing_day(session_factory, settings=settings, day=tomorrow)
    await delivered(session_factory, settings, receiver)
    # then: with the new speed
    tariff = check_delivery(only(receiver, "contract.tariff_changed"), number)
    assert tariff["tariffCode"] == "home-300"
    assert tariff["speedMbps"] == 300 and tariff["monthlyFee"]
    # and a rerun of the day changes nothing and says nothing
    await run_billing_day(session_factory, settings=settings, day=tomorrow)
    await delivered(session_factory, settings, receiver)
    assert len(receiver.events("contract.tariff_changed")) == 1


async def test_both_ways_of_crediting_write_the_same_event(
    session_factory: Any, settings: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL credits a plain contract by one statement; its `payment.succeeded` is the
    step-by-step way's, made by the same function (resolvers/payments.py)."""
    if backend != "postgresql":
        pytest.skip("the one-statement confirmation is PostgreSQL's")
    one = await make_subscriber(session_factory, settings)
    two = await make_subscriber(session_factory, settings)
    paid = [
        await top_up(session_factory, settings, contract_id=made.contract_ids[0], amount="250.00")
        for made in (one, two)
    ]
    # when: the first the one-statement way, the second step by step
    assert (await confirm_in_process(session_factory, settings, paid[0].id)).applied
    monkeypatch.setattr(payments, "_credit_at_once", _never_at_once)
    assert (await confirm_in_process(session_factory, settings, paid[1].id)).applied
    # then
    async with session_factory() as session:
        found = (await session.scalars(sa.select(Event).order_by(col(Event.id)))).all()
    assert [event.type for event in found] == ["payment.succeeded"] * 2
    assert [event.contract_number for event in found] == [
        one.contract_numbers[0],
        two.contract_numbers[0],
    ]

    def shape(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k not in ("paymentId", "receiptNumber")}

    assert (
        shape(found[0].data)
        == shape(found[1].data)
        == {
            "amount": "250.00",
            "currency": "RUB",
            "method": "BANK_CARD",
            "provider": "sandbox",
        }
    )


async def test_a_bonus_reward_that_gives_a_service_sends_services_changed(
    client: Any, session_factory: Any, settings: Any, receiver: Receiver
) -> None:
    # given
    await subscribe(session_factory, settings, receiver)
    made = await make_subscriber(session_factory, settings)
    number = made.contract_numbers[0]
    me = await sign_in(client, login_of(made))
    await give_points(session_factory, made.id, 1000)
    rewards = (await gql(client, "{ bonusRewards { id kind } }"))["bonusRewards"]
    package = next(r for r in rewards if r["kind"] == "TV_PACKAGE")
    # when
    redeemed = await mutate(
        client, "redeemBonus", {"contractNumber": number, "rewardId": package["id"]}, me
    )
    assert redeemed["errors"] == []
    await delivered(session_factory, settings, receiver)
    # then
    data = check_delivery(only(receiver, "contract.services_changed"), number)
    assert (data["service"], data["change"]) == ("TV_PACKAGE", "CONNECTED")
    assert data["freeUntil"] > utcnow().date().isoformat() and data["bonusReward"]
