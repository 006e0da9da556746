"""The catalogue read API, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from core.db import STATEMENT_LISTENERS
from kabinet import catalog_data
from tests.conftest import gql

CATALOGUE = """
query Catalogue($region: String) {
  regions { code name }
  tariffs(region: $region) {
    id code name regionCode monthlyFee speedMbps trafficGb unlimited archived
  }
  tvPackages { id code name monthlyFee channels { number name mustCarry } }
  channels { id number name genre hd mustCarry }
  serviceOptions { id code name monthlyFee }
  bonusRewards { id code kind pointsPrice creditAmount durationDays
                 tvPackage { code } serviceOption { code } }
}
"""

NODE = """
query Node($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Tariff { name monthlyFee }
    ... on TvPackage { name channels { number } }
    ... on Channel { name }
    ... on ServiceOption { name }
    ... on BonusReward { name }
  }
}
"""


@contextmanager
def count_statements(engine: Any) -> Iterator[list[str]]:
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def fast(statement: str) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    STATEMENT_LISTENERS.append(fast)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        STATEMENT_LISTENERS.remove(fast)


async def test_regions_and_tariffs_of_a_region(client: Any) -> None:
    # when
    data = await gql(client, CATALOGUE, {"region": "SPB"})
    # then
    assert [r["code"] for r in data["regions"]] == ["EKB", "MOW", "SPB"]
    expected = [t for t in catalog_data.TARIFFS if t.region_code == "SPB" and not t.archived]
    assert len(data["tariffs"]) == len(expected) >= 5
    assert {t["regionCode"] for t in data["tariffs"]} == {"SPB"}
    fees = [Decimal(t["monthlyFee"]) for t in data["tariffs"]]
    assert fees == sorted(fees)
    assert all(
        isinstance(t["monthlyFee"], str) and t["monthlyFee"].count(".") == 1
        for t in data["tariffs"]
    )
    capped = [t for t in data["tariffs"] if not t["unlimited"]]
    assert all(t["trafficGb"] > 0 for t in capped)


async def test_prices_depend_on_the_region(client: Any) -> None:
    # when
    mow = await gql(client, CATALOGUE, {"region": "MOW"})
    ekb = await gql(client, CATALOGUE, {"region": "EKB"})
    # then
    mow_fees = {t["code"]: Decimal(t["monthlyFee"]) for t in mow["tariffs"]}
    ekb_fees = {t["code"]: Decimal(t["monthlyFee"]) for t in ekb["tariffs"]}
    assert mow_fees.keys() == ekb_fees.keys()
    assert all(mow_fees[code] > ekb_fees[code] for code in mow_fees)


async def test_unknown_region_has_no_tariffs_and_archived_are_hidden(client: Any) -> None:
    data = await gql(client, CATALOGUE, {"region": "XXX"})
    assert data["tariffs"] == []
    everything = await gql(client, CATALOGUE, {"region": None})
    assert not any(t["archived"] for t in everything["tariffs"])
    assert len(everything["tariffs"]) == sum(1 for t in catalog_data.TARIFFS if not t.archived)


async def test_channels_packages_options_rewards(client: Any) -> None:
    data = await gql(client, CATALOGUE)
    assert len(data["channels"]) >= 190
    must_carry = [c for c in data["channels"] if c["mustCarry"]]
    assert len(must_carry) == 20
    assert len(data["tvPackages"]) >= 6
    base = next(p for p in data["tvPackages"] if p["code"] == "base")
    expected = next(p for p in catalog_data.TV_PACKAGES if p.code == "base")
    assert [c["number"] for c in base["channels"]] == sorted(expected.channel_numbers)
    assert not any(c["mustCarry"] for p in data["tvPackages"] for c in p["channels"])
    assert len(data["serviceOptions"]) >= 5
    assert len(data["bonusRewards"]) >= 4
    for reward in data["bonusRewards"]:
        if reward["kind"] == "TV_PACKAGE":
            assert reward["tvPackage"]["code"] and reward["durationDays"] == 30
        if reward["kind"] == "SPEED_BOOST":
            assert reward["serviceOption"]["code"] == "speed-boost"
        if reward["kind"] == "BALANCE_CREDIT":
            assert Decimal(reward["creditAmount"]) > 0


async def test_node_fetches_each_catalogue_type_by_global_id(client: Any) -> None:
    data = await gql(client, CATALOGUE)
    samples = {
        "Tariff": data["tariffs"][0]["id"],
        "TvPackage": data["tvPackages"][0]["id"],
        "Channel": data["channels"][0]["id"],
        "ServiceOption": data["serviceOptions"][0]["id"],
        "BonusReward": data["bonusRewards"][0]["id"],
    }
    for type_name, global_id in samples.items():
        node = (await gql(client, NODE, {"id": global_id}))["node"]
        assert node["__typename"] == type_name
        assert node["id"] == global_id


async def test_node_with_a_bad_or_unknown_id_is_null(client: Any) -> None:
    for bad in [
        "",
        "not-base64!",
        "VGFyaWZmOjk5OTk5OQ==",
        "Q29udHJhY3Q6MQ==",
        "x" * 500,
        "VGFyaWZmOi0x",
        "U3Vic2NyaWJlcjox",
    ]:
        assert (await gql(client, NODE, {"id": bad}))["node"] is None


async def test_the_catalogue_costs_a_fixed_number_of_statements(
    client: Any, app: Any, engine: Any
) -> None:
    """One statement per list, one for all packages' channels, one per reward link type —
    whatever the number of packages, channels and rewards."""
    # given: one more package, so that a per-package query would show up in the count
    await gql(client, CATALOGUE)  # warm caches
    with count_statements(app.state.engine) as before:
        await gql(client, CATALOGUE)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO tv_packages"
                " (code, name, monthly_fee, description, archived, created_at)"
                " VALUES ('extra-test', 'Extra', 10, '', false, CURRENT_TIMESTAMP)"
            )
        )
    try:
        # when
        with count_statements(app.state.engine) as after:
            await gql(client, CATALOGUE)
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM tv_packages WHERE code = 'extra-test'"))
    # then
    selects = [s for s in after if s.lstrip().upper().startswith("SELECT")]
    # On PostgreSQL the reads of one level travel in one statement: the lists; the
    # packages' channels and the rewards' packages and options.
    assert len(selects) == (2 if engine.dialect.name == "postgresql" else 9), selects
    assert len(after) == len(before)
