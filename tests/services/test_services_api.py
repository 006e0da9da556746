"""Services through GraphQL: the issue's "done means" path as a test — change the tariff,
build a Personal TV line-up, add two TVs, switch an option, redeem a reward, see each in
monthlyCharges and, after a billing day, in the ledger; plus staff catalogue edits."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from core.db import begin_write
from models import BonusAccount, BonusEntry
from models.base import utcnow
from resolvers.billing import run_billing_day
from tests.conftest import gql, gql_raw
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced

CATALOG = """{
  tariffs(region: "MOW") { id code monthlyFee }
  tvPackages { id code monthlyFee }
  channels { id number mustCarry }
  serviceOptions { id code monthlyFee }
  bonusRewards { id code kind pointsPrice }
}"""
CONTRACT = """query($n: String!) { contract(number: $n) {
  tariff { code } scheduledTariff { tariff { code } effectiveFrom }
  tvPackages { code } personalTvChannels { channel { number } monthlyFee }
  multiroomDevices { id serial monthlyFee } options { option { code } freeUntil }
  channels { number mustCarry }
  monthlyCharges { total items { kind name quantity monthlyFee } }
  balance { amount }
  ledger(first: 5, kinds: [CHARGE]) { edges { node { amount description } } }
} }"""
MUTATIONS = {
    "changeTariff": "mutation($i: ChangeTariffInput!) { changeTariff(input: $i) "
    "{ contract { number } errors { field code message } } }",
    "connectTvPackage": "mutation($i: ConnectTvPackageInput!) { connectTvPackage(input: $i) "
    "{ contract { number } errors { field code message } } }",
    "setPersonalTvChannels": "mutation($i: SetPersonalTvChannelsInput!) "
    "{ setPersonalTvChannels(input: $i) { contract { number } errors { field code message } } }",
    "addMultiroomDevice": "mutation($i: AddMultiroomDeviceInput!) { addMultiroomDevice(input: $i) "
    "{ contract { number } errors { field code message } } }",
    "activateOption": "mutation($i: ActivateOptionInput!) { activateOption(input: $i) "
    "{ contract { number } errors { field code message } } }",
    "redeemBonus": "mutation($i: RedeemBonusInput!) { redeemBonus(input: $i) "
    "{ bonusAccount { points } contract { number } errors { field code message } } }",
}


async def mutate(client: Any, name: str, variables: dict[str, Any], headers: Any) -> Any:
    return (await gql(client, MUTATIONS[name], {"i": variables}, headers=headers))[name]


async def give_points(session_factory: Any, subscriber_id: int, points: int) -> None:
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            BonusEntry(
                subscriber_id=subscriber_id,
                kind="ACCRUAL",
                points=points,
                remaining=points,
                expires_at=utcnow() + timedelta(days=300),
            )
        )
        await session.execute(
            sa.update(BonusAccount)
            .where(BonusAccount.subscriber_id == subscriber_id)
            .values(points=points)
        )
        await session.commit()


async def test_a_subscriber_builds_services_and_pays_for_them(
    client: Any, session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings, balance=Decimal("3000.00"))
    me = await sign_in(client, made.login)
    number = made.contract_numbers[0]
    catalog = await gql(client, CATALOG)
    dearer = next(t for t in catalog["tariffs"] if t["code"] == "home-300")
    sport = next(p for p in catalog["tvPackages"] if p["code"] == "sport")
    paid_channels = [c["id"] for c in catalog["channels"] if not c["mustCarry"]][:6]
    must_carry = [c["number"] for c in catalog["channels"] if c["mustCarry"]]
    static_ip = next(o for o in catalog["serviceOptions"] if o["code"] == "static-ip")
    reward = next(r for r in catalog["bonusRewards"] if r["kind"] == "TV_PACKAGE")
    await give_points(session_factory, made.id, 1000)

    # when: each service through the API
    steps = [
        ("changeTariff", {"contractNumber": number, "tariffId": dearer["id"]}),
        ("connectTvPackage", {"contractNumber": number, "packageId": sport["id"]}),
        ("setPersonalTvChannels", {"contractNumber": number, "channelIds": paid_channels}),
        ("addMultiroomDevice", {"contractNumber": number}),
        ("addMultiroomDevice", {"contractNumber": number}),
        ("activateOption", {"contractNumber": number, "optionId": static_ip["id"]}),
        ("redeemBonus", {"contractNumber": number, "rewardId": reward["id"]}),
    ]
    for name, variables in steps:
        result = await mutate(client, name, variables, me)
        assert result["errors"] == [], (name, result)
        assert result["contract"]["number"] == number

    # then: the contract shows all of it, and what next month costs
    contract = (await gql(client, CONTRACT, {"n": number}, headers=me))["contract"]
    assert contract["tariff"]["code"] == "home-100"
    assert contract["scheduledTariff"]["tariff"]["code"] == "home-300"
    assert {p["code"] for p in contract["tvPackages"]} >= {"sport"}
    assert len(contract["personalTvChannels"]) == 6
    assert len(contract["multiroomDevices"]) == 2
    assert [o["option"]["code"] for o in contract["options"]] == ["static-ip"]
    numbers = [c["number"] for c in contract["channels"]]
    assert set(must_carry) <= set(numbers) and len(numbers) == len(set(numbers))
    kinds = {item["kind"]: item for item in contract["monthlyCharges"]["items"]}
    assert kinds["TARIFF"]["monthlyFee"] == dearer["monthlyFee"]
    assert kinds["PERSONAL_TV"]["quantity"] == 6 and kinds["PERSONAL_TV"]["monthlyFee"] == "90.00"
    total = sum(Decimal(i["monthlyFee"]) for i in contract["monthlyCharges"]["items"])
    assert Decimal(contract["monthlyCharges"]["total"]) == total

    # when: the next billing day runs
    tomorrow = (utcnow() + timedelta(days=1)).date()
    await run_billing_day(session_factory, settings=settings, day=tomorrow)
    # then: the day's charge is in the ledger and the new tariff is the contract's
    after = (await gql(client, CONTRACT, {"n": number}, headers=me))["contract"]
    assert after["tariff"]["code"] == "home-300" and after["scheduledTariff"] is None
    (charge,) = after["ledger"]["edges"]
    assert Decimal(charge["node"]["amount"]) < 0
    await assert_ledger_balanced(session_factory)


async def test_services_of_another_subscriber_are_not_found(
    client: Any, session_factory: Any, settings: Any
) -> None:
    owner = await make_subscriber(session_factory, settings, balance=Decimal("500.00"))
    stranger = await make_subscriber(session_factory, settings)
    headers = await sign_in(client, stranger.login)
    result = await mutate(
        client, "addMultiroomDevice", {"contractNumber": owner.contract_numbers[0]}, headers
    )
    assert result["errors"][0]["code"] == "NOT_FOUND" and result["contract"] is None


async def test_money_rules_for_new_items(client: Any, session_factory: Any, settings: Any) -> None:
    poor = await make_subscriber(session_factory, settings, balance=Decimal("0.50"))
    headers = await sign_in(client, poor.login)
    refused = await mutate(
        client, "addMultiroomDevice", {"contractNumber": poor.contract_numbers[0]}, headers
    )
    assert refused["errors"][0]["code"] == "INSUFFICIENT_FUNDS"


async def test_staff_edit_the_catalogue(client: Any, session_factory: Any, settings: Any) -> None:
    _, username, password = await make_staff(session_factory, settings, role="ADMIN")
    staff = await sign_in(client, username, password)
    create = """mutation($i: CreateServiceOptionInput!) {
      createServiceOption(input: $i) {
        serviceOption { id code monthlyFee archived } errors { code field }
      }
    }"""
    created = await gql(
        client,
        create,
        {"i": {"code": "gql-test-option", "name": "Test", "monthlyFee": "12.34"}},
        headers=staff,
    )
    option = created["createServiceOption"]["serviceOption"]
    assert option["monthlyFee"] == "12.34"
    try:
        archive = """mutation($i: ArchiveInput!) {
          archiveServiceOption(input: $i) { serviceOption { archived } errors { code } } }"""
        done = await gql(client, archive, {"i": {"id": option["id"]}}, headers=staff)
        assert done["archiveServiceOption"]["serviceOption"]["archived"] is True
        listed = await gql(client, "{ serviceOptions { code } }")
        assert "gql-test-option" not in {o["code"] for o in listed["serviceOptions"]}
        duplicate = await gql(
            client,
            create,
            {"i": {"code": "gql-test-option", "name": "Again", "monthlyFee": "1.00"}},
            headers=staff,
        )
        assert duplicate["createServiceOption"]["errors"][0]["code"] == "CONFLICT"
        subscriber = await make_subscriber(session_factory, settings)
        as_subscriber = await gql_raw(
            client,
            create,
            {"i": {"code": "x-x", "name": "X", "monthlyFee": "1.00"}},
            headers=await sign_in(client, subscriber.login),
        )
        assert as_subscriber.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    finally:
        async with session_factory() as session:
            await session.execute(
                sa.text("DELETE FROM service_options WHERE code = 'gql-test-option'")
            )
            await session.commit()
