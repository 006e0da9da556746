"""The fifteen catalogue mutations through GraphQL (create, update and archive of tariffs, TV
packages, channels, service options and bonus rewards): global IDs in, the item out, every
write audited under the mutation's name, wrong IDs and bad values as payload errors, and
only staff may call them. The rules themselves are tested on the verbs in
test_catalog_admin.py; this proves the wiring of each field."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from models import AuditEntry
from tests.conftest import _empty_non_catalog_tables, gql, gql_raw
from tests.factories import make_staff, make_subscriber, sign_in
from tests.services.test_catalog_admin import _delete_tagged, next_channel_number

ERRORS = "errors { field code message }"
SELECTIONS = {
    "tariff": "id code name regionCode monthlyFee speedMbps trafficGb unlimited description "
    "archived",
    "tvPackage": "id code name monthlyFee description archived channels { id }",
    "channel": "id number name genre hd mustCarry",
    "serviceOption": "id code name monthlyFee description archived",
    "bonusReward": "id code name kind pointsPrice creditAmount durationDays "
    "tvPackage { id } serviceOption { id }",
}
# mutation -> (input type, payload field)
MUTATIONS = {
    "createTariff": ("CreateTariffInput", "tariff"),
    "updateTariff": ("UpdateTariffInput", "tariff"),
    "archiveTariff": ("ArchiveInput", "tariff"),
    "createTvPackage": ("CreateTvPackageInput", "tvPackage"),
    "updateTvPackage": ("UpdateTvPackageInput", "tvPackage"),
    "archiveTvPackage": ("ArchiveInput", "tvPackage"),
    "createChannel": ("CreateChannelInput", "channel"),
    "updateChannel": ("UpdateChannelInput", "channel"),
    "archiveChannel": ("ArchiveInput", "channel"),
    "createServiceOption": ("CreateServiceOptionInput", "serviceOption"),
    "updateServiceOption": ("UpdateServiceOptionInput", "serviceOption"),
    "archiveServiceOption": ("ArchiveInput", "serviceOption"),
    "createBonusReward": ("CreateBonusRewardInput", "bonusReward"),
    "updateBonusReward": ("UpdateBonusRewardInput", "bonusReward"),
    "archiveBonusReward": ("ArchiveInput", "bonusReward"),
}


def document(name: str) -> str:
    input_type, field = MUTATIONS[name]
    return (
        f"mutation($i: {input_type}!) {{ {name}(input: $i) "
        f"{{ {field} {{ {SELECTIONS[field]} }} {ERRORS} }} }}"
    )


@pytest.fixture
async def tag(engine: AsyncEngine) -> AsyncIterator[str]:
    value = uuid.uuid4().hex[:8]
    yield value
    await _empty_non_catalog_tables(engine)
    await _delete_tagged(engine, value)


@pytest.fixture
async def staff(client: Any, session_factory: Any, settings: Any) -> dict[str, str]:
    _, username, password = await make_staff(session_factory, settings, role="ADMIN")
    return await sign_in(client, username, password)


async def run(
    client: Any, headers: dict[str, str], mutation: str, /, **values: Any
) -> dict[str, Any]:
    """The payload of `mutation` called with `values` as its input."""
    data = await gql(client, document(mutation), {"i": values}, headers=headers)
    payload: dict[str, Any] = data[mutation]
    return payload


async def done(client: Any, headers: dict[str, str], mutation: str, /, **values: Any) -> Any:
    """The item `mutation` answers with; it must answer without errors."""
    payload = await run(client, headers, mutation, **values)
    assert payload["errors"] == [], payload["errors"]
    return payload[MUTATIONS[mutation][1]]


async def audit_actions(session_factory: Any) -> list[str]:
    async with session_factory() as session:
        rows = (await session.execute(sa.select(AuditEntry).order_by(col(AuditEntry.id)))).scalars()
        return [row.action for row in rows]


async def test_staff_run_each_catalogue_mutation_and_each_is_audited(
    client: Any, session_factory: Any, staff: dict[str, str], tag: str
) -> None:
    # tariffs
    tariff = await done(
        client,
        staff,
        "createTariff",
        region="MOW",
        code=f"t-{tag}",
        name=f"Тариф {tag}",
        monthlyFee="499.00",
        speedMbps=500,
        trafficGb=100,
    )
    assert (tariff["code"], tariff["regionCode"], tariff["monthlyFee"]) == (
        f"t-{tag}",
        "MOW",
        "499.00",
    )
    assert (tariff["trafficGb"], tariff["unlimited"], tariff["description"]) == (100, False, "")
    edited = await done(
        client, staff, "updateTariff", tariffId=tariff["id"], monthlyFee="550", unlimited=True
    )
    assert (edited["monthlyFee"], edited["trafficGb"], edited["unlimited"]) == (
        "550.00",
        None,
        True,
    )
    assert edited["name"] == f"Тариф {tag}"
    edited = await done(client, staff, "updateTariff", tariffId=tariff["id"], trafficGb=200)
    assert (edited["trafficGb"], edited["unlimited"]) == (200, False)
    archived = await done(client, staff, "archiveTariff", id=tariff["id"])
    assert archived["archived"] is True
    restored = await done(client, staff, "archiveTariff", id=tariff["id"], archived=False)
    assert restored["archived"] is False

    # channels
    number = await next_channel_number(session_factory)
    channel = await done(
        client, staff, "createChannel", number=number, name=f"Канал {tag}", genre="Кино"
    )
    assert (channel["number"], channel["hd"], channel["mustCarry"]) == (number, False, False)
    channel = await done(client, staff, "updateChannel", channelId=channel["id"], hd=True)
    assert (channel["hd"], channel["genre"]) == (True, "Кино")
    second = await done(
        client,
        staff,
        "createChannel",
        number=number + 1,
        name=f"Канал {tag} 2",
        genre="Спорт",
        hd=True,
    )

    # TV packages
    package = await done(
        client,
        staff,
        "createTvPackage",
        code=f"p-{tag}",
        name=f"Пакет {tag}",
        monthlyFee="199.00",
        channelIds=[channel["id"]],
    )
    assert [c["id"] for c in package["channels"]] == [channel["id"]]
    package = await done(
        client,
        staff,
        "updateTvPackage",
        packageId=package["id"],
        channelIds=[channel["id"], second["id"]],
        description="Два канала",
    )
    assert {c["id"] for c in package["channels"]} == {channel["id"], second["id"]}
    assert (package["description"], package["monthlyFee"]) == ("Два канала", "199.00")

    # service options
    option = await done(
        client,
        staff,
        "createServiceOption",
        code=f"o-{tag}",
        name=f"Опция {tag}",
        monthlyFee="49.90",
        description="Быстрее",
    )
    assert (option["monthlyFee"], option["description"]) == ("49.90", "Быстрее")
    option = await done(client, staff, "updateServiceOption", optionId=option["id"], name="X")
    assert option["name"] == "X"

    # bonus rewards
    reward = await done(
        client,
        staff,
        "createBonusReward",
        code=f"r-{tag}",
        name=f"Награда {tag}",
        kind="TV_PACKAGE",
        pointsPrice=300,
        tvPackageId=package["id"],
        durationDays=30,
    )
    assert (reward["kind"], reward["tvPackage"], reward["durationDays"]) == (
        "TV_PACKAGE",
        {"id": package["id"]},
        30,
    )
    reward = await done(client, staff, "updateBonusReward", rewardId=reward["id"], pointsPrice=250)
    assert (reward["pointsPrice"], reward["durationDays"]) == (250, 30)
    speed = await done(
        client,
        staff,
        "createBonusReward",
        code=f"s-{tag}",
        name=f"Скорость {tag}",
        kind="SPEED_BOOST",
        pointsPrice=100,
        optionId=option["id"],
        durationDays=7,
    )
    assert speed["serviceOption"] == {"id": option["id"]}

    # archive each of the others (the channel's packages keep it)
    assert (await done(client, staff, "archiveBonusReward", id=reward["id"]))["id"] == reward["id"]
    assert (await done(client, staff, "archiveServiceOption", id=option["id"]))["archived"]
    assert (await done(client, staff, "archiveTvPackage", id=package["id"]))["archived"]
    assert (await done(client, staff, "archiveChannel", id=second["id"]))["id"] == second["id"]

    assert await audit_actions(session_factory) == [
        "createTariff",
        "updateTariff",
        "updateTariff",
        "archiveTariff",
        "archiveTariff",
        "createChannel",
        "updateChannel",
        "createChannel",
        "createTvPackage",
        "updateTvPackage",
        "createServiceOption",
        "updateServiceOption",
        "createBonusReward",
        "updateBonusReward",
        "createBonusReward",
        "archiveBonusReward",
        "archiveServiceOption",
        "archiveTvPackage",
        "archiveChannel",
    ]


async def test_wrong_ids_and_bad_values_are_payload_errors(
    client: Any, session_factory: Any, staff: dict[str, str], tag: str
) -> None:
    number = await next_channel_number(session_factory)
    channel = await done(
        client, staff, "createChannel", number=number, name=f"Канал {tag}", genre="Кино"
    )
    tariffs = await gql(client, '{ tariffs(region: "MOW") { id } }')
    tariff_id = tariffs["tariffs"][0]["id"]
    cases: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
        # an ID of another type is no such item, on the field that carried it
        ("updateTariff", {"tariffId": channel["id"], "name": "X"}, ("tariffId", "NOT_FOUND")),
        ("archiveTariff", {"id": channel["id"]}, ("tariffId", "NOT_FOUND")),
        ("updateChannel", {"channelId": tariff_id}, ("channelId", "NOT_FOUND")),
        ("archiveChannel", {"id": "not-an-id"}, ("channelId", "NOT_FOUND")),
        ("updateTvPackage", {"packageId": tariff_id}, ("packageId", "NOT_FOUND")),
        ("archiveTvPackage", {"id": tariff_id}, ("packageId", "NOT_FOUND")),
        ("updateServiceOption", {"optionId": tariff_id}, ("optionId", "NOT_FOUND")),
        ("archiveServiceOption", {"id": tariff_id}, ("optionId", "NOT_FOUND")),
        ("updateBonusReward", {"rewardId": tariff_id}, ("rewardId", "NOT_FOUND")),
        ("archiveBonusReward", {"id": tariff_id}, ("rewardId", "NOT_FOUND")),
        (
            "createTvPackage",
            {
                "code": f"p-{tag}",
                "name": "P",
                "monthlyFee": "1.00",
                "channelIds": [channel["id"], tariff_id],
            },
            ("channelIds", "NOT_FOUND"),
        ),
        (
            "createBonusReward",
            {
                "code": f"r-{tag}",
                "name": "R",
                "kind": "TV_PACKAGE",
                "pointsPrice": 1,
                "tvPackageId": tariff_id,
                "durationDays": 1,
            },
            ("tvPackageId", "NOT_FOUND"),
        ),
        (
            "createBonusReward",
            {
                "code": f"r-{tag}",
                "name": "R",
                "kind": "SPEED_BOOST",
                "pointsPrice": 1,
                "optionId": tariff_id,
                "durationDays": 1,
            },
            ("optionId", "NOT_FOUND"),
        ),
        # the verbs' own checks come through as they are
        (
            "createTariff",
            {
                "region": "XXX",
                "code": f"t-{tag}",
                "name": "T",
                "monthlyFee": "1.00",
                "speedMbps": 1,
            },
            ("region", "INVALID"),
        ),
        (
            "createChannel",
            {"number": number, "name": f"Другой {tag}", "genre": "Кино"},
            ("number", "CONFLICT"),
        ),
        (
            "createServiceOption",
            {"code": "Not A Code", "name": "O", "monthlyFee": "1.00"},
            ("code", "INVALID"),
        ),
        ("updateChannel", {"channelId": channel["id"], "name": " "}, ("name", "INVALID")),
    ]
    for name, values, (field, code) in cases:
        payload = await run(client, staff, name, **values)
        assert payload[MUTATIONS[name][1]] is None, name
        assert [(e["field"], e["code"]) for e in payload["errors"]] == [(field, code)], name
    assert await audit_actions(session_factory) == ["createChannel"]


REQUIRED: dict[str, dict[str, Any]] = {
    "createTariff": {
        "region": "MOW",
        "code": "x-x",
        "name": "X",
        "monthlyFee": "1.00",
        "speedMbps": 1,
    },
    "updateTariff": {"tariffId": "x"},
    "createTvPackage": {"code": "x-x", "name": "X", "monthlyFee": "1.00", "channelIds": []},
    "updateTvPackage": {"packageId": "x"},
    "createChannel": {"number": 1, "name": "X", "genre": "X"},
    "updateChannel": {"channelId": "x"},
    "createServiceOption": {"code": "x-x", "name": "X", "monthlyFee": "1.00"},
    "updateServiceOption": {"optionId": "x"},
    "createBonusReward": {"code": "x-x", "name": "X", "kind": "BALANCE_CREDIT", "pointsPrice": 1},
    "updateBonusReward": {"rewardId": "x"},
}


async def test_only_staff_may_edit_the_catalogue(
    client: Any, session_factory: Any, settings: Any
) -> None:
    subscriber = await make_subscriber(session_factory, settings)
    as_subscriber = await sign_in(client, subscriber.login)
    for name in MUTATIONS:
        values = REQUIRED.get(name, {"id": "x"})
        for headers, code in ((as_subscriber, "FORBIDDEN"), ({}, "UNAUTHENTICATED")):
            response = await gql_raw(client, document(name), {"i": values}, headers=headers)
            body = response.json()
            assert body["data"] is None, name
            assert [e["extensions"]["code"] for e in body["errors"]] == [code], name
    assert await audit_actions(session_factory) == []
