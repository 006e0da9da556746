"""The voluntary pause and socially significant access (SPEC §8) through GraphQL and the
billing day, on SQLite and PostgreSQL: every refusal of `pauseService`, a pause over several
billing days (status, the fee only, back to ACTIVE, the ledger), resuming early, cancelling,
two billing runs at once, two pause requests at once, and `activateSocialAccess` from
activation to expiry and to the lifting of the suspension."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import begin_write
from models import (
    BillingCharge,
    Contract,
    ContractPause,
    LedgerEntry,
    PromisedPayment,
    SocialAccessGrant,
)
from models.base import table_of, utcnow
from resolvers import pause
from resolvers.billing import run_billing_day
from resolvers.charges import daily_share
from tests.conftest import gql
from tests.factories import make_subscriber, sign_in
from tests.money.test_charges import fund
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_money_api import TOP_UP, confirm

_contracts = table_of(Contract)
_charges_table = table_of(BillingCharge)
_ledger = table_of(LedgerEntry)
HOME_100 = Decimal("590.00")  # the factories' tariff, a month in MOW
FEE = Decimal("3.00")
CENT = Decimal("0.01")

CONTRACT = """query($n: String!) { contract(number: $n) {
  status pause { from to } socialAccess { active until } balance { amount daysLeft }
} }"""
PAUSE = """mutation($i: PauseServiceInput!) { pauseService(input: $i) {
  contract { status pause { from to } } errors { field code message } } }"""
RESUME = """mutation($i: ResumeServiceInput!) { resumeService(input: $i) {
  contract { status pause { from to } } errors { field code message } } }"""
CANCEL = """mutation($i: CancelPauseInput!) { cancelPause(input: $i) {
  contract { status pause { from to } } errors { field code message } } }"""
SOCIAL = """mutation($i: ActivateSocialAccessInput!) { activateSocialAccess(input: $i) {
  contract { status socialAccess { active until } } errors { field code message } } }"""
CONNECT = """mutation($i: ConnectTvPackageInput!) { connectTvPackage(input: $i) {
  errors { field code message } } }"""
CHANGE_TARIFF = """mutation($i: ChangeTariffInput!) { changeTariff(input: $i) {
  errors { field code message } } }"""
CATALOG = '{ tariffs(region: "MOW") { id code } tvPackages { id code } }'


def _today() -> date:
    return utcnow().date()


def _day(n: int) -> date:
    return _today() + timedelta(days=n)


async def _pause(client: Any, me: Any, number: str, start: date, end: date) -> Any:
    variables = {"i": {"contractNumber": number, "from": start.isoformat(), "to": end.isoformat()}}
    return (await gql(client, PAUSE, variables, headers=me))["pauseService"]


async def _contract(client: Any, me: Any, number: str) -> Any:
    return (await gql(client, CONTRACT, {"n": number}, headers=me))["contract"]


async def _rows(session_factory: Any, model: Any, contract_id: int) -> list[Any]:
    async with session_factory() as session:
        return list(
            (
                await session.execute(
                    sa.select(model).where(model.contract_id == contract_id).order_by(model.id)
                )
            )
            .scalars()
            .all()
        )


async def _status_and_balance(session_factory: Any, contract_id: int) -> tuple[str, Decimal]:
    async with session_factory() as session:
        row = (
            await session.execute(
                sa.select(_contracts.c.status, _contracts.c.balance).where(
                    _contracts.c.id == contract_id
                )
            )
        ).one()
    return row.status, Decimal(str(row.balance)).quantize(CENT)


async def _charges(session_factory: Any, contract_id: int) -> dict[date, Decimal]:
    async with session_factory() as session:
        rows = (
            await session.execute(
                sa.select(_charges_table.c.day, _charges_table.c.amount).where(
                    _charges_table.c.contract_id == contract_id
                )
            )
        ).all()
    return {r.day: Decimal(str(r.amount)).quantize(CENT) for r in rows}


async def _charge_entries(session_factory: Any, contract_id: int) -> list[Decimal]:
    async with session_factory() as session:
        rows = (
            await session.execute(
                sa.select(_ledger.c.amount)
                .where(_ledger.c.contract_id == contract_id, _ledger.c.kind == "CHARGE")
                .order_by(_ledger.c.id)
            )
        ).all()
    return [Decimal(str(r.amount)).quantize(CENT) for r in rows]


async def _subscriber(
    client: Any, session_factory: Any, settings: Any, balance: str = "1000.00", contracts: int = 1
) -> Any:
    made = await make_subscriber(
        session_factory, settings, balance=Decimal(balance), contracts=contracts
    )
    return made, await sign_in(client, made.login or "")


# -- the rules -----------------------------------------------------------------------------


async def test_every_problem_of_the_days_is_reported_at_once(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    made, me = await _subscriber(client, session_factory, settings)
    number = made.contract_numbers[0]
    # when: a start in the past and 31 days
    past = await _pause(client, me, number, _day(-1), _day(29))
    # then: both, by field
    assert [(e["field"], e["code"]) for e in past["errors"]] == [
        ("from", "INVALID"),
        ("to", "INVALID"),
    ]
    assert past["contract"] is None
    # when: a start more than 30 days ahead, an end before the start
    far = await _pause(client, me, number, _day(31), _day(30))
    assert [(e["field"], e["code"]) for e in far["errors"]] == [
        ("from", "INVALID"),
        ("to", "INVALID"),
    ]
    # then nothing was written
    assert await _rows(session_factory, ContractPause, made.contract_ids[0]) == []
    # and 30 days starting on the 30th day ahead are fine
    longest = await _pause(client, me, number, _day(30), _day(59))
    assert longest["errors"] == [] and longest["contract"]["pause"] == {
        "from": _day(30).isoformat(),
        "to": _day(59).isoformat(),
    }


async def test_a_pause_is_refused_below_zero_suspended_with_a_promise_or_twice(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given a contract below zero, suspended by the billing day
    made, me = await _subscriber(client, session_factory, settings, balance="0.00", contracts=3)
    debtor, promised, planned = made.contract_numbers
    await fund(session_factory, made.contract_ids[0], Decimal("-10.00"), kind="ADJUSTMENT")
    for contract_id in made.contract_ids[1:]:
        await fund(session_factory, contract_id, Decimal("100.00"))
    await run_billing_day(session_factory, settings=settings, day=_today())
    # when / then: suspended and below zero, both said
    refused = await _pause(client, me, debtor, _day(1), _day(5))
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [
        ("NOT_ELIGIBLE", None),
        ("INSUFFICIENT_FUNDS", None),
    ]
    assert "suspended" in refused["errors"][0]["message"]
    # given an open promised payment (balance ≥ 0)
    async with session_factory() as session:
        await begin_write(session)
        session.add(
            PromisedPayment(
                contract_id=made.contract_ids[1],
                amount=Decimal("100.00"),
                fee=Decimal("0.00"),
                status="OPEN",
                due_at=utcnow() + timedelta(days=3),
            )
        )
        await session.commit()
    refused = await _pause(client, me, promised, _day(1), _day(5))
    assert [e["code"] for e in refused["errors"]] == ["NOT_ELIGIBLE"]
    assert "promised payment" in refused["errors"][0]["message"]
    # given a pause planned already
    assert (await _pause(client, me, planned, _day(2), _day(3)))["errors"] == []
    refused = await _pause(client, me, planned, _day(10), _day(12))
    assert [e["code"] for e in refused["errors"]] == ["CONFLICT"]
    # then only the one pause
    assert [
        p.starts_on for p in await _rows(session_factory, ContractPause, made.contract_ids[2])
    ] == [_day(2)]
    for contract_id in made.contract_ids[:2]:
        assert await _rows(session_factory, ContractPause, contract_id) == []


async def test_another_subscribers_contract_is_not_found(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    owner, _ = await _subscriber(client, session_factory, settings)
    _stranger, stranger = await _subscriber(client, session_factory, settings)
    number = owner.contract_numbers[0]
    # when: the stranger pauses, resumes, cancels, asks for social access on it
    paused = await _pause(client, stranger, number, _day(1), _day(2))
    others = [
        (await gql(client, q, {"i": {"contractNumber": number}}, headers=stranger))[name]
        for q, name in (
            (RESUME, "resumeService"),
            (CANCEL, "cancelPause"),
            (SOCIAL, "activateSocialAccess"),
        )
    ]
    # then NOT_FOUND each time, and nothing written
    for answer in (paused, *others):
        assert [e["code"] for e in answer["errors"]] == ["NOT_FOUND"], answer
    assert await _rows(session_factory, ContractPause, owner.contract_ids[0]) == []
    assert await _rows(session_factory, SocialAccessGrant, owner.contract_ids[0]) == []


# -- through the billing day ---------------------------------------------------------------


async def test_a_pause_over_several_billing_days(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given a contract with 1,000.00 and a pause from tomorrow for 3 days
    made, me = await _subscriber(client, session_factory, settings)
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    planned = await _pause(client, me, number, _day(1), _day(3))
    assert planned["errors"] == []
    assert planned["contract"] == {
        "status": "ACTIVE",
        "pause": {"from": _day(1).isoformat(), "to": _day(3).isoformat()},
    }
    expected: dict[date, Decimal] = {}
    # when: today (before the pause) is billed
    await run_billing_day(session_factory, settings=settings, day=_today())
    expected[_today()] = daily_share(HOME_100, _today())
    assert (await _status_and_balance(session_factory, cid))[0] == "ACTIVE"
    # when: the pause's three days are billed
    for n in (1, 2, 3):
        summary = await run_billing_day(session_factory, settings=settings, day=_day(n))
        expected[_day(n)] = FEE
        # then: PAUSED from the first day, the fee only
        assert summary.pauses_started == (1 if n == 1 else 0)
        assert (await _status_and_balance(session_factory, cid))[0] == "PAUSED"
    shown = await _contract(client, me, number)
    assert shown["status"] == "PAUSED" and shown["pause"]["to"] == _day(3).isoformat()
    # the balance lasts at the pause's fee
    paused_balance = Decimal(shown["balance"]["amount"])
    assert shown["balance"]["daysLeft"] == int(paused_balance // FEE)
    # while paused: no paid item, no tariff change; a top-up still credits
    catalog = await gql(client, CATALOG)
    sport = next(p["id"] for p in catalog["tvPackages"] if p["code"] == "sport")
    dearer = next(t["id"] for t in catalog["tariffs"] if t["code"] == "home-300")
    connect = await gql(
        client, CONNECT, {"i": {"contractNumber": number, "packageId": sport}}, headers=me
    )
    change = await gql(
        client, CHANGE_TARIFF, {"i": {"contractNumber": number, "tariffId": dearer}}, headers=me
    )
    for refused in (connect["connectTvPackage"], change["changeTariff"]):
        assert [e["code"] for e in refused["errors"]] == ["NOT_ELIGIBLE"]
        assert "paused" in refused["errors"][0]["message"]
    top_up = {
        "contractNumber": number,
        "amount": "100.00",
        "method": "SBP",
        "idempotencyKey": f"pause-top-up-{cid}",
    }
    payment = (await gql(client, TOP_UP, {"input": top_up}, headers=me))["createTopUp"]
    await confirm(client, settings, payment["payment"]["id"])
    assert (await _status_and_balance(session_factory, cid))[0] == "PAUSED"
    # when: the day after the last is billed (twice)
    ended = await run_billing_day(session_factory, settings=settings, day=_day(4))
    await run_billing_day(session_factory, settings=settings, day=_day(4))
    expected[_day(4)] = daily_share(HOME_100, _day(4))
    # then: ACTIVE again and charged in full, the pause gone from the contract
    assert ended.pauses_ended == 1
    status, balance = await _status_and_balance(session_factory, cid)
    assert status == "ACTIVE"
    assert await _charges(session_factory, cid) == expected
    assert await _charge_entries(session_factory, cid) == [-v for _, v in sorted(expected.items())]
    assert balance == Decimal("1100.00") - sum(expected.values())
    shown = await _contract(client, me, number)
    assert shown["pause"] is None and shown["status"] == "ACTIVE"
    (row,) = await _rows(session_factory, ContractPause, cid)
    assert (row.status, row.ended_on) == ("ENDED", _day(3))
    await assert_ledger_balanced(session_factory)


async def test_a_pause_that_takes_the_balance_below_zero_ends_suspended(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given 5.00 and a pause from today for 3 days: it starts at once
    made, me = await _subscriber(client, session_factory, settings, balance="5.00")
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    started = await _pause(client, me, number, _today(), _day(2))
    assert started["errors"] == [] and started["contract"]["status"] == "PAUSED"
    # when: its days are billed (5.00 - 3 × 3.00 = -4.00)
    for n in (0, 1, 2):
        await run_billing_day(session_factory, settings=settings, day=_day(n))
    # then: below zero yet PAUSED (a pause is not suspended)
    assert await _status_and_balance(session_factory, cid) == ("PAUSED", Decimal("-4.00"))
    # when: the day after its last day
    summary = await run_billing_day(session_factory, settings=settings, day=_day(3))
    # then: SUSPENDED, and not charged that day
    assert summary.pauses_ended == 1
    assert await _status_and_balance(session_factory, cid) == ("SUSPENDED", Decimal("-4.00"))
    assert await _charge_entries(session_factory, cid) == [-FEE] * 3


async def test_resume_early_and_pause_again_thirty_days_later(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given a pause from today for 10 days, today billed at the fee
    made, me = await _subscriber(client, session_factory, settings)
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    assert (await _pause(client, me, number, _today(), _day(9)))["errors"] == []
    await run_billing_day(session_factory, settings=settings, day=_today())
    # when: resumed
    resumed = (await gql(client, RESUME, {"i": {"contractNumber": number}}, headers=me))[
        "resumeService"
    ]
    # then: ACTIVE, no pause; tomorrow is charged in full
    assert resumed["errors"] == []
    assert resumed["contract"] == {"status": "ACTIVE", "pause": None}
    (row,) = await _rows(session_factory, ContractPause, cid)
    assert (row.status, row.ended_on) == ("ENDED", _today())
    await run_billing_day(session_factory, settings=settings, day=_day(1))
    assert await _charge_entries(session_factory, cid) == [-FEE, -daily_share(HOME_100, _day(1))]
    assert (await _status_and_balance(session_factory, cid))[0] == "ACTIVE"
    # when: resumed again (nothing runs)
    again = (await gql(client, RESUME, {"i": {"contractNumber": number}}, headers=me))[
        "resumeService"
    ]
    assert [e["code"] for e in again["errors"]] == ["NOT_FOUND"]
    # when: the next pause asked for 29 days after the last one's end, then 30
    early = await _pause(client, me, number, _day(29), _day(30))
    assert [(e["field"], e["code"]) for e in early["errors"]] == [("from", "NOT_ELIGIBLE")]
    assert _day(30).isoformat() in early["errors"][0]["message"]
    assert (await _pause(client, me, number, _day(30), _day(31)))["errors"] == []


async def test_cancel_a_planned_pause(client: Any, session_factory: Any, settings: Any) -> None:
    # given a pause from tomorrow
    made, me = await _subscriber(client, session_factory, settings)
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    assert (await _pause(client, me, number, _day(1), _day(2)))["errors"] == []
    # resuming a pause that has not started is refused
    early = (await gql(client, RESUME, {"i": {"contractNumber": number}}, headers=me))[
        "resumeService"
    ]
    assert [e["code"] for e in early["errors"]] == ["NOT_ELIGIBLE"]
    # when: cancelled
    cancelled = (await gql(client, CANCEL, {"i": {"contractNumber": number}}, headers=me))[
        "cancelPause"
    ]
    # then: no pause; tomorrow is an ordinary day
    assert cancelled["errors"] == [] and cancelled["contract"]["pause"] is None
    (row,) = await _rows(session_factory, ContractPause, cid)
    assert row.status == "CANCELED"
    await run_billing_day(session_factory, settings=settings, day=_day(1))
    assert (await _status_and_balance(session_factory, cid))[0] == "ACTIVE"
    assert await _charge_entries(session_factory, cid) == [-daily_share(HOME_100, _day(1))]
    again = (await gql(client, CANCEL, {"i": {"contractNumber": number}}, headers=me))[
        "cancelPause"
    ]
    assert [e["code"] for e in again["errors"]] == ["NOT_FOUND"]
    # a cancelled pause does not count: one from the day after tomorrow is fine, and once it
    # runs it cannot be cancelled
    assert (await _pause(client, me, number, _day(2), _day(3)))["errors"] == []
    await run_billing_day(session_factory, settings=settings, day=_day(2))
    running = (await gql(client, CANCEL, {"i": {"contractNumber": number}}, headers=me))[
        "cancelPause"
    ]
    assert [e["code"] for e in running["errors"]] == ["NOT_ELIGIBLE"]
    assert (await _status_and_balance(session_factory, cid))[0] == "PAUSED"


async def test_two_billing_runs_at_once_start_and_end_each_pause_once(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given six contracts pausing tomorrow for two days, and one that is not
    made, me = await _subscriber(client, session_factory, settings, contracts=7)
    for number in made.contract_numbers[:6]:
        assert (await _pause(client, me, number, _day(1), _day(2)))["errors"] == []
    for n in (1, 2, 3):
        # when: two runs of the day at once
        first, second = await asyncio.gather(
            run_billing_day(session_factory, settings=settings, day=_day(n)),
            run_billing_day(session_factory, settings=settings, day=_day(n)),
        )
        # then: each transition once, each contract charged once
        assert first.pauses_started + second.pauses_started == (6 if n == 1 else 0)
        assert first.pauses_ended + second.pauses_ended == (6 if n == 3 else 0)
        assert first.contracts_charged + second.contracts_charged == 7
    full = [-daily_share(HOME_100, _day(n)) for n in (1, 2, 3)]
    for cid in made.contract_ids[:6]:
        assert await _charge_entries(session_factory, cid) == [-FEE, -FEE, full[2]]
        assert (await _status_and_balance(session_factory, cid))[0] == "ACTIVE"
        assert [p.status for p in await _rows(session_factory, ContractPause, cid)] == ["ENDED"]
    assert await _charge_entries(session_factory, made.contract_ids[6]) == full
    await assert_ledger_balanced(session_factory)


async def test_two_pause_requests_at_once_make_one_pause(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given
    made, me = await _subscriber(client, session_factory, settings)
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    # when: two requests at once
    answers = await asyncio.gather(
        _pause(client, me, number, _day(1), _day(3)), _pause(client, me, number, _day(2), _day(4))
    )
    # then: one succeeded, the other is a CONFLICT; one row
    codes = sorted(str([e["code"] for e in a["errors"]]) for a in answers)
    assert codes == ["['CONFLICT']", "[]"], answers
    assert len(await _rows(session_factory, ContractPause, cid)) == 1


async def test_a_pause_cancelled_while_the_billing_day_waits_does_not_start(
    client: Any, session_factory: Any, settings: Any, backend: str
) -> None:
    """The billing day locks the contracts before it reads their pauses: a cancellation
    committed while it waits is seen (the contract is not PAUSED without its pause)."""
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers: there is no race to lose")
    # given a pause from tomorrow
    made, me = await _subscriber(client, session_factory, settings)
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    assert (await _pause(client, me, number, _day(1), _day(2)))["errors"] == []
    async with session_factory() as other:
        # when: its cancellation holds the contract's row, and the billing day starts
        await pause.cancel_pause(other, settings=settings, contract_id=cid)
        billing = asyncio.ensure_future(
            run_billing_day(session_factory, settings=settings, day=_day(1))
        )
        blocked = 0
        for _ in range(250):
            async with session_factory() as probe:  # a transaction of its own: a fresh view
                blocked = await probe.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                )
            if blocked:
                break
            await asyncio.sleep(0.02)
        assert blocked, "the billing day did not wait for the contract's lock"
        await other.commit()
    summary = await billing
    # then: not paused, charged in full, the pause cancelled
    assert summary.pauses_started == 0
    assert (await _status_and_balance(session_factory, cid))[0] == "ACTIVE"
    assert await _charge_entries(session_factory, cid) == [-daily_share(HOME_100, _day(1))]
    assert [p.status for p in await _rows(session_factory, ContractPause, cid)] == ["CANCELED"]


# -- socially significant access -----------------------------------------------------------


async def test_social_access_from_activation_to_expiry_and_lifting(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given a contract in service: refused
    made, me = await _subscriber(client, session_factory, settings, balance="0.00")
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    variables = {"i": {"contractNumber": number}}
    refused = (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"]
    assert [e["code"] for e in refused["errors"]] == ["NOT_ELIGIBLE"]
    # given it is suspended for debt by the billing day
    await run_billing_day(session_factory, settings=settings, day=_today())
    assert (await _status_and_balance(session_factory, cid))[0] == "SUSPENDED"
    # when: activated, and again
    before = utcnow()
    first = (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"]
    second = (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"]
    # then: active for 7 days; the second answers the same access
    assert first["errors"] == [] and second["errors"] == []
    access = first["contract"]["socialAccess"]
    assert access["active"] is True and second["contract"]["socialAccess"] == access
    (grant,) = await _rows(session_factory, SocialAccessGrant, cid)
    assert before + timedelta(days=7) <= grant.until <= utcnow() + timedelta(days=7)
    # when: it runs out
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(table_of(SocialAccessGrant))
            .where(table_of(SocialAccessGrant).c.id == grant.id)
            .values(until=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    # then: not active, and not again in this suspension
    assert (await _contract(client, me, number))["socialAccess"]["active"] is False
    used = (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"]
    assert [e["code"] for e in used["errors"]] == ["NOT_ELIGIBLE"]
    # when: a top-up lifts the suspension
    top_up = {
        "contractNumber": number,
        "amount": "500.00",
        "method": "SBP",
        "idempotencyKey": f"social-top-up-{cid}",
    }
    payment = (await gql(client, TOP_UP, {"input": top_up}, headers=me))["createTopUp"]
    await confirm(client, settings, payment["payment"]["id"])
    # then: ACTIVE, the episode's access is over
    shown = await _contract(client, me, number)
    assert shown["status"] == "ACTIVE" and shown["socialAccess"] is None
    (grant,) = await _rows(session_factory, SocialAccessGrant, cid)
    assert grant.closed_at is not None
    # when: the next suspension, a new episode
    await fund(session_factory, cid, Decimal("-1000.00"), kind="ADJUSTMENT")
    await run_billing_day(session_factory, settings=settings, day=_day(1))
    again = (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"]
    assert again["errors"] == [] and again["contract"]["socialAccess"]["active"] is True
    assert len(await _rows(session_factory, SocialAccessGrant, cid)) == 2


async def test_social_access_ends_when_the_suspension_is_lifted_by_any_credit(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given a suspended contract with social access on
    made, me = await _subscriber(client, session_factory, settings, balance="0.00")
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    await run_billing_day(session_factory, settings=settings, day=_today())
    variables = {"i": {"contractNumber": number}}
    assert (await gql(client, SOCIAL, variables, headers=me))["activateSocialAccess"][
        "errors"
    ] == []
    # when: the balance is back to ≥ 0 and the contract ACTIVE without lift_if_paid (staff
    # fixing the row): the access is no longer active at once
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(_contracts).where(_contracts.c.id == cid).values(status="ACTIVE")
        )
        await session.commit()
    assert (await _contract(client, me, number))["socialAccess"]["active"] is False
    # and the billing day closes its episode
    await fund(session_factory, cid, Decimal("1000.00"))
    await run_billing_day(session_factory, settings=settings, day=_day(1))
    (grant,) = await _rows(session_factory, SocialAccessGrant, cid)
    assert grant.closed_at is not None
    assert (await _contract(client, me, number))["socialAccess"] is None


async def test_two_activations_at_once_make_one_access(
    client: Any, session_factory: Any, settings: Any
) -> None:
    # given a suspended contract
    made, me = await _subscriber(client, session_factory, settings, balance="0.00")
    number, cid = made.contract_numbers[0], made.contract_ids[0]
    await run_billing_day(session_factory, settings=settings, day=_today())
    variables = {"i": {"contractNumber": number}}
    # when: two requests at once
    answers = await asyncio.gather(
        gql(client, SOCIAL, variables, headers=me), gql(client, SOCIAL, variables, headers=me)
    )
    # then: both answer the one access
    first, second = (a["activateSocialAccess"] for a in answers)
    assert first["errors"] == [] and second["errors"] == []
    assert first["contract"]["socialAccess"] == second["contract"]["socialAccess"]
    assert len(await _rows(session_factory, SocialAccessGrant, cid)) == 1
