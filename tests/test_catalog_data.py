"""Invariants of the static reference catalogue in ``kabinet.catalog_data``."""

from collections import Counter
from dataclasses import FrozenInstanceError, fields
from decimal import Decimal

import pytest

from kabinet import catalog_data as cd
from resolvers.receipts import OPERATOR

MUST_CARRY_NAMES = (
    "Первый канал",
    "Россия 1",
    "Матч ТВ",
    "НТВ",
    "Пятый канал",
    "Россия К",
    "Россия 24",
    "Карусель",
    "ОТР",
    "ТВ Центр",
    "РЕН ТВ",
    "Спас",
    "СТС",
    "Домашний",
    "ТВ-3",
    "Пятница!",
    "Звезда",
    "Мир",
    "ТНТ",
    "Муз-ТВ",
)

PACKAGE_GENRES = {
    "sport": {"Спорт"},
    "cinema": {"Кино"},
    "kids": {"Детские"},
    "music": {"Музыка"},
}

CHANNELS_BY_NUMBER = {ch.number: ch for ch in cd.CHANNELS}
PACKAGES_BY_CODE = {p.code: p for p in cd.TV_PACKAGES}
OPTION_CODES = {o.code for o in cd.SERVICE_OPTIONS}


def _is_money(value: object) -> bool:
    return isinstance(value, Decimal) and value.as_tuple().exponent == -2


# --------------------------------------------------------------------------- #
# Regions and tariffs
# --------------------------------------------------------------------------- #


def test_three_regions():
    assert len(cd.REGIONS) == 3
    codes = {r.code for r in cd.REGIONS}
    assert codes == {"MOW", "SPB", "EKB"}
    assert all(r.name for r in cd.REGIONS)


def test_at_least_six_tariffs_per_region():
    per_region = Counter(t.region_code for t in cd.TARIFFS)
    assert set(per_region) == {r.code for r in cd.REGIONS}
    assert all(count >= 6 for count in per_region.values())
    assert len(cd.TARIFFS) >= 18


def test_tariff_code_unique_per_region():
    keys = [(t.region_code, t.code) for t in cd.TARIFFS]
    assert len(keys) == len(set(keys))


def test_prices_differ_by_region_for_same_code():
    by_code: dict[str, dict[str, Decimal]] = {}
    for t in cd.TARIFFS:
        by_code.setdefault(t.code, {})[t.region_code] = t.monthly_fee
    for code, prices in by_code.items():
        assert len(set(prices.values())) == len(prices), code
        if {"MOW", "SPB", "EKB"} <= set(prices):
            assert prices["MOW"] > prices["SPB"] > prices["EKB"], code


def test_tariff_prices_and_fields_realistic():
    for t in cd.TARIFFS:
        assert Decimal("350.00") <= t.monthly_fee <= Decimal("1500.00"), t
        assert t.speed_mbps > 0
        assert t.traffic_gb is None or t.traffic_gb > 0
        assert t.name and t.description


def test_most_tariffs_unlimited():
    capped = [t for t in cd.TARIFFS if t.traffic_gb is not None]
    assert capped
    assert len(capped) < len(cd.TARIFFS) / 2


def test_exactly_one_archived_tariff_per_region():
    archived = Counter(t.region_code for t in cd.TARIFFS if t.archived)
    assert archived == {r.code: 1 for r in cd.REGIONS}


# --------------------------------------------------------------------------- #
# Channels
# --------------------------------------------------------------------------- #


def test_channel_count_and_uniqueness():
    assert len(cd.CHANNELS) >= 190
    numbers = [ch.number for ch in cd.CHANNELS]
    names = [ch.name for ch in cd.CHANNELS]
    assert len(numbers) == len(set(numbers))
    assert len(names) == len(set(names))
    assert sorted(numbers) == list(range(1, len(cd.CHANNELS) + 1))


def test_channel_genres_from_fixed_set():
    assert {ch.genre for ch in cd.CHANNELS} <= set(cd.GENRES)


def test_exactly_twenty_must_carry_numbered_1_to_20():
    must_carry = [ch for ch in cd.CHANNELS if ch.must_carry]
    assert len(must_carry) == 20
    assert sorted(ch.number for ch in must_carry) == list(range(1, 21))
    by_number = sorted(must_carry, key=lambda ch: ch.number)
    assert tuple(ch.name for ch in by_number) == MUST_CARRY_NAMES


# --------------------------------------------------------------------------- #
# TV packages
# --------------------------------------------------------------------------- #


def test_packages_present():
    assert len(cd.TV_PACKAGES) >= 6
    assert len(PACKAGES_BY_CODE) == len(cd.TV_PACKAGES)
    assert {"base", "extended", "sport", "cinema", "kids", "music"} <= set(PACKAGES_BY_CODE)


@pytest.mark.parametrize("package", cd.TV_PACKAGES, ids=lambda p: p.code)
def test_package_channels_exist_and_not_must_carry(package):
    assert package.channel_numbers
    assert len(package.channel_numbers) == len(set(package.channel_numbers))
    for number in package.channel_numbers:
        assert number in CHANNELS_BY_NUMBER, number
        assert not CHANNELS_BY_NUMBER[number].must_carry, number


def test_extended_is_superset_of_base():
    base = set(PACKAGES_BY_CODE["base"].channel_numbers)
    extended = set(PACKAGES_BY_CODE["extended"].channel_numbers)
    assert base < extended
    assert 50 <= len(base) <= 70
    assert 90 <= len(extended) <= 110


@pytest.mark.parametrize("code", sorted(PACKAGE_GENRES))
def test_themed_package_genres_match(code):
    genres = {CHANNELS_BY_NUMBER[n].genre for n in PACKAGES_BY_CODE[code].channel_numbers}
    assert genres == PACKAGE_GENRES[code]


# --------------------------------------------------------------------------- #
# Options, rewards, operator
# --------------------------------------------------------------------------- #


def test_service_options():
    assert len(cd.SERVICE_OPTIONS) >= 5
    assert len(OPTION_CODES) == len(cd.SERVICE_OPTIONS)
    assert {
        "static-ip",
        "antivirus",
        "parental-control",
        "speed-boost",
        "cloud-dvr",
    } <= OPTION_CODES


def test_bonus_rewards_consistent():
    assert len(cd.BONUS_REWARDS) >= 4
    assert len({r.code for r in cd.BONUS_REWARDS}) == len(cd.BONUS_REWARDS)
    assert {r.kind for r in cd.BONUS_REWARDS} == set(cd.REWARD_KINDS)
    for r in cd.BONUS_REWARDS:
        assert r.points_price > 0
        if r.kind == "BALANCE_CREDIT":
            assert r.credit_amount is not None and r.credit_amount > 0
            assert r.tv_package_code is None and r.option_code is None
            assert r.duration_days is None
        elif r.kind == "TV_PACKAGE":
            assert r.tv_package_code in PACKAGES_BY_CODE
            assert r.credit_amount is None and r.option_code is None
            assert r.duration_days == 30
        elif r.kind == "SPEED_BOOST":
            assert r.option_code == "speed-boost"
            assert r.option_code in OPTION_CODES
            assert r.credit_amount is None and r.tv_package_code is None
            assert r.duration_days == 7
        else:  # pragma: no cover - guarded by the kind-set assertion
            pytest.fail(f"unknown reward kind {r.kind}")


def _inn10_is_valid(inn: str) -> bool:
    weights = (2, 4, 10, 3, 5, 9, 4, 6, 8)
    check = sum(int(d) * w for d, w in zip(inn[:9], weights, strict=True)) % 11 % 10
    return check == int(inn[9])


def test_operator():
    op = OPERATOR
    assert op.name == "ООО «Кабинет Телеком»"
    assert len(op.inn) == 10 and op.inn.isdigit()
    assert _inn10_is_valid(op.inn)
    assert op.address
    # The VAT rate is not the operator's: it is dated (resolvers.receipts.VAT_RATES).
    assert not hasattr(op, "vat_rate")


# --------------------------------------------------------------------------- #
# Money and immutability
# --------------------------------------------------------------------------- #


def _money_values():
    for t in cd.TARIFFS:
        yield f"tariff {t.region_code}/{t.code}", t.monthly_fee
    for p in cd.TV_PACKAGES:
        yield f"package {p.code}", p.monthly_fee
    for o in cd.SERVICE_OPTIONS:
        yield f"option {o.code}", o.monthly_fee
    for r in cd.BONUS_REWARDS:
        if r.credit_amount is not None:
            yield f"reward {r.code}", r.credit_amount


def test_all_money_is_decimal_with_two_places():
    values = list(_money_values())
    assert values
    for label, value in values:
        assert _is_money(value), (label, value)
        assert value > 0, label


def test_no_floats_anywhere():
    rows = (
        *cd.REGIONS,
        *cd.TARIFFS,
        *cd.CHANNELS,
        *cd.TV_PACKAGES,
        *cd.SERVICE_OPTIONS,
        *cd.BONUS_REWARDS,
        OPERATOR,
    )
    for row in rows:
        for f in fields(row):
            assert not isinstance(getattr(row, f.name), float), (row, f.name)


def test_dataclasses_are_frozen():
    with pytest.raises(FrozenInstanceError):
        cd.CHANNELS[0].name = "x"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        OPERATOR.inn = "0"  # type: ignore[misc]
