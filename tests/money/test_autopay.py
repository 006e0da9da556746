"""Autopay (SPEC §7): saved methods and the rule through the API (both read paths), the
billing day's autopay payments credited through the sandbox, the monthly cap, three failures
switching autopay off, a provider that does not answer, and two billing runs at once
(PostgreSQL): one payment per contract."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import begin_write, create_engine, create_session_factory, unit_of_work
from core.ids import to_global_id
from core.payment_providers import SANDBOX_DECLINING_PREFIX
from core.settings import Settings
from models import (
    AutopayRule,
    AutopayRun,
    BillingCharge,
    Contract,
    LedgerEntry,
    OutboxMessage,
    Payment,
    PaymentMethod,
    Receipt,
)
from models.base import table_of
from resolvers import autopay, payments
from resolvers.billing import run_billing_day
from tests.conftest import gql, gql_raw
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced
from tests.test_sql_answers import _both_ways

SET_AUTOPAY = """
mutation($input: SetAutopayInput!) {
  setAutopay(input: $input) {
    errors { field code message }
    contract { number autopay { mode amount threshold dayOfMonth enabled failuresInRow
      paymentMethod { title } } }
  }
}
"""
DISABLE_AUTOPAY = """
mutation($input: DisableAutopayInput!) {
  disableAutopay(input: $input) {
    errors { field code } contract { autopay { enabled mode } }
  }
}
"""
FORGET = """
mutation($input: ForgetPaymentMethodInput!) {
  forgetPaymentMethod(input: $input) {
    errors { field code }
    contract { paymentMethods { id title } autopay { enabled paymentMethod { id } } }
  }
}
"""
READ = """
query($number: String!) {
  contract(number: $number) {
    paymentMethods { __typename id title }
    autopay { __typename id mode amount threshold dayOfMonth enabled failuresInRow
      paymentMethod { __typename id title } }
  }
}
"""
OWN = """
{ me { contracts { number
  paymentMethods { __typename id title createdAt }
  autopay { __typename id mode amount threshold dayOfMonth enabled failuresInRow updatedAt
    paymentMethod { __typename id title createdAt } } } } }
"""
DAY = date(2026, 12, 1)


async def save_method(
    session_factory: Any,
    contract_id: int,
    *,
    title: str = "Card *4444",
    reference: str | None = None,
    provider: str = "sandbox",
) -> int:
    """A method the provider saved for the contract (as the sandbox page saves its card)."""
    async with session_factory() as session:
        await begin_write(session)
        method = PaymentMethod(
            contract_id=contract_id,
            provider=provider,
            reference=reference or f"sandbox-card-{contract_id}-{title[-4:]}",
            title=title,
        )
        session.add(method)
        await session.commit()
        assert method.id is not None
        return method.id


async def set_rule(
    session_factory: Any,
    settings: Settings,
    contract_id: int,
    method_id: int,
    *,
    mode: str = "BELOW_THRESHOLD",
    amount: str = "500.00",
    threshold: str | None = "100.00",
    day_of_month: int | None = None,
) -> None:
    async with unit_of_work(session_factory) as session:
        await autopay.set_autopay(
            session,
            settings=settings,
            contract_id=contract_id,
            payment_method_id=method_id,
            mode=mode,
            amount=Decimal(amount),
            threshold=None if threshold is None else Decimal(threshold),
            day_of_month=day_of_month,
        )


async def rows(session_factory: Any, model: Any, *where: Any) -> list[Any]:
    async with session_factory() as session:
        return list((await session.execute(sa.select(model).where(*where))).scalars())


def method_gid(method_id: int) -> str:
    return str(to_global_id("SavedPaymentMethod", method_id))


# -- the API ------------------------------------------------------------------------------


async def test_a_subscriber_sets_reads_and_disables_autopay(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    # given a contract with a saved card
    made = await make_subscriber(session_factory, settings)
    contract_id, number = made.contract_ids[0], made.contract_numbers[0]
    method_id = await save_method(session_factory, contract_id)
    me = await sign_in(client, str(made.login))
    variables = {
        "input": {
            "contractNumber": number,
            "paymentMethodId": method_gid(method_id),
            "mode": "BELOW_THRESHOLD",
            "amount": "500.00",
            "threshold": "100.00",
            "dayOfMonth": 7,  # ignored for BELOW_THRESHOLD
        }
    }
    # when
    answer = (await gql(client, SET_AUTOPAY, variables, headers=me))["setAutopay"]
    # then
    assert answer["errors"] == []
    assert answer["contract"]["autopay"] == {
        "mode": "BELOW_THRESHOLD",
        "amount": "500.00",
        "threshold": "100.00",
        "dayOfMonth": None,
        "enabled": True,
        "failuresInRow": 0,
        "paymentMethod": {"title": "Card *4444"},
    }
    (rule,) = await rows(session_factory, AutopayRule)
    assert (rule.contract_id, rule.payment_method_id, rule.mode) == (
        contract_id,
        method_id,
        "BELOW_THRESHOLD",
    )
    assert rule.amount == Decimal("500.00") and rule.threshold == Decimal("100.00")
    assert rule.day_of_month is None and rule.enabled
    (letter,) = await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY")
    assert letter.recipient == made.email and "включён" in letter.subject
    assert "Card *4444" in letter.body_text and "100,00" in letter.body_text

    # when: the rule becomes MONTHLY
    variables["input"] |= {"mode": "MONTHLY", "dayOfMonth": 28, "amount": "300.50"}
    answer = (await gql(client, SET_AUTOPAY, variables, headers=me))["setAutopay"]
    # then: replaced; the threshold is not kept
    assert answer["contract"]["autopay"]["mode"] == "MONTHLY"
    assert answer["contract"]["autopay"]["threshold"] is None
    assert answer["contract"]["autopay"]["dayOfMonth"] == 28
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.threshold is None and rule.day_of_month == 28 and rule.amount == Decimal("300.50")

    # when: disabled
    off = {"input": {"contractNumber": number}}
    answer = (await gql(client, DISABLE_AUTOPAY, off, headers=me))["disableAutopay"]
    # then: kept, off, mailed
    assert answer == {"errors": [], "contract": {"autopay": {"enabled": False, "mode": "MONTHLY"}}}
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.enabled is False
    letters = await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY")
    assert len(letters) == 3 and "выключен" in letters[-1].subject


async def test_set_autopay_reports_every_input_problem_at_once(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    method_id = await save_method(session_factory, made.contract_ids[0])
    me = await sign_in(client, str(made.login))
    base = {"contractNumber": made.contract_numbers[0], "paymentMethodId": method_gid(method_id)}
    cases: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
        (
            {"mode": "BELOW_THRESHOLD", "amount": "5.00"},
            [("amount", "INVALID"), ("threshold", "INVALID")],
        ),
        (
            {"mode": "BELOW_THRESHOLD", "amount": "50000.01", "threshold": "-1.00"},
            [("amount", "INVALID"), ("threshold", "INVALID")],
        ),
        (
            {"mode": "MONTHLY", "amount": "0.00", "dayOfMonth": 29},
            [
                ("amount", "INVALID"),
                ("dayOfMonth", "INVALID"),
            ],
        ),
        ({"mode": "MONTHLY", "amount": "100.00"}, [("dayOfMonth", "INVALID")]),
        ({"mode": "MONTHLY", "amount": "100.00", "dayOfMonth": 0}, [("dayOfMonth", "INVALID")]),
    ]
    for given, expected in cases:
        # when
        answer = (await gql(client, SET_AUTOPAY, {"input": base | given}, headers=me))["setAutopay"]
        # then: every field at fault, nothing written
        assert [(e["field"], e["code"]) for e in answer["errors"]] == expected, given
        assert answer["contract"] is None
    assert await rows(session_factory, AutopayRule) == []
    assert await rows(session_factory, OutboxMessage) == []


async def test_only_the_owner_acts_on_autopay_and_reads_it(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    # given two subscribers, each with a saved card, and staff
    one = await make_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings)
    mine = await save_method(session_factory, one.contract_ids[0])
    theirs = await save_method(session_factory, other.contract_ids[0])
    await set_rule(session_factory, settings, other.contract_ids[0], theirs)
    me = await sign_in(client, str(one.login))
    rule = {"mode": "MONTHLY", "amount": "100.00", "dayOfMonth": 3}
    # when / then: another's contract is not found
    answer = (
        await gql(
            client,
            SET_AUTOPAY,
            {
                "input": rule
                | {"contractNumber": other.contract_numbers[0], "paymentMethodId": method_gid(mine)}
            },
            headers=me,
        )
    )["setAutopay"]
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [("contractNumber", "NOT_FOUND")]
    # another's method on my contract, or an ID of another type: not found
    for method in (method_gid(theirs), str(to_global_id("Payment", mine))):
        answer = (
            await gql(
                client,
                SET_AUTOPAY,
                {
                    "input": rule
                    | {"contractNumber": one.contract_numbers[0], "paymentMethodId": method}
                },
                headers=me,
            )
        )["setAutopay"]
        assert [(e["field"], e["code"]) for e in answer["errors"]] == [
            ("paymentMethodId", "NOT_FOUND")
        ]
    off = {"input": {"contractNumber": other.contract_numbers[0]}}
    answer = (await gql(client, DISABLE_AUTOPAY, off, headers=me))["disableAutopay"]
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [("contractNumber", "NOT_FOUND")]
    forget = {"input": {"paymentMethodId": method_gid(theirs)}}
    answer = (await gql(client, FORGET, forget, headers=me))["forgetPaymentMethod"]
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [("paymentMethodId", "NOT_FOUND")]
    # no rule of my own to disable
    off = {"input": {"contractNumber": one.contract_numbers[0]}}
    answer = (await gql(client, DISABLE_AUTOPAY, off, headers=me))["disableAutopay"]
    assert [(e["field"], e["code"]) for e in answer["errors"]] == [("contractNumber", "NOT_FOUND")]
    # and another's contract reads as nothing
    read = await gql(client, READ, {"number": other.contract_numbers[0]}, headers=me)
    assert read == {"contract": None}
    # nothing changed
    (their_rule,) = await rows(session_factory, AutopayRule)
    assert their_rule.enabled and their_rule.contract_id == other.contract_ids[0]
    assert all(m.forgotten_at is None for m in await rows(session_factory, PaymentMethod))

    # staff read the rule, but may not set it
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    read = await gql(client, READ, {"number": other.contract_numbers[0]}, headers=staff)
    assert read["contract"]["autopay"]["enabled"] is True
    assert read["contract"]["paymentMethods"][0]["title"] == "Card *4444"
    refused = await gql_raw(
        client,
        SET_AUTOPAY,
        {
            "input": rule
            | {"contractNumber": other.contract_numbers[0], "paymentMethodId": method_gid(theirs)}
        },
        headers=staff,
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql_raw(client, READ, {"number": other.contract_numbers[0]})
    assert anonymous.json()["data"] == {"contract": None}


async def test_forgetting_the_method_switches_its_autopay_off(
    client: Any, settings: Settings, session_factory: Any
) -> None:
    # given autopay from a saved card, and a second card
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await save_method(session_factory, contract_id)
    other = await save_method(session_factory, contract_id, title="SBP", reference="sbp-1")
    await set_rule(session_factory, settings, contract_id, card)
    me = await sign_in(client, str(made.login))
    # when
    variables = {"input": {"paymentMethodId": method_gid(card)}}
    answer = (await gql(client, FORGET, variables, headers=me))["forgetPaymentMethod"]
    # then: gone from the list, autopay off and mailed
    assert answer == {
        "errors": [],
        "contract": {
            "paymentMethods": [{"id": method_gid(other), "title": "SBP"}],
            "autopay": {"enabled": False, "paymentMethod": None},
        },
    }
    forgotten = await rows(session_factory, PaymentMethod, PaymentMethod.id == card)
    assert forgotten[0].forgotten_at is not None
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.enabled is False
    letters = await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY")
    assert "Card *4444" in letters[-1].body_text and "выключен" in letters[-1].subject
    # when: again
    again = (await gql(client, FORGET, variables, headers=me))["forgetPaymentMethod"]
    # then
    assert [(e["field"], e["code"]) for e in again["errors"]] == [("paymentMethodId", "NOT_FOUND")]


async def test_saved_methods_and_autopay_from_one_statement_are_the_executors(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given contracts: with a rule and two methods (one forgotten), with a method only, bare
    made = await make_subscriber(session_factory, settings, contracts=3)
    first, second, _ = made.contract_ids
    card = await save_method(session_factory, first)
    await save_method(session_factory, first, title="SBP", reference="sbp-x")
    gone = await save_method(session_factory, first, title="Card *1111", reference="gone")
    await save_method(session_factory, second, title="Card *2222", reference="second")
    await set_rule(session_factory, settings, first, card, threshold="0.00")
    headers = await sign_in(client, str(made.login))
    forget = {"input": {"paymentMethodId": method_gid(gone)}}
    assert (await gql(client, FORGET, forget, headers=headers))["forgetPaymentMethod"][
        "errors"
    ] == []
    # when
    served, executed, statements, compiled = await _both_ways(
        client, app, monkeypatch, OWN, None, headers
    )
    # then the same answer, from one statement on PostgreSQL
    assert "errors" not in executed, executed
    assert served == executed
    if app.state.engine.dialect.name == "postgresql":
        assert compiled and len(statements) == 1, statements
    one, two, three = executed["data"]["me"]["contracts"]
    assert [m["title"] for m in one["paymentMethods"]] == ["Card *4444", "SBP"]
    assert one["autopay"]["threshold"] == "0.00" and one["autopay"]["enabled"] is True
    assert one["autopay"]["paymentMethod"]["id"] == method_gid(card)
    assert one["autopay"]["id"] == str(to_global_id("Autopay", first))
    assert [m["title"] for m in two["paymentMethods"]] == ["Card *2222"]
    assert two["autopay"] is None and three == {
        "number": made.contract_numbers[2],
        "paymentMethods": [],
        "autopay": None,
    }


# -- after the billing day ----------------------------------------------------------------


async def _balance(session_factory: Any, contract_id: int) -> Decimal:
    async with session_factory() as session:
        contracts = table_of(Contract)
        value = await session.scalar(
            sa.select(contracts.c.balance).where(contracts.c.id == contract_id)
        )
    return Decimal(value)


async def _charged(session_factory: Any, contract_id: int) -> Decimal:
    found = await rows(session_factory, BillingCharge, BillingCharge.contract_id == contract_id)
    return sum((Decimal(c.amount) for c in found), Decimal(0))


async def test_the_billing_day_pays_below_the_threshold_through_the_sandbox(
    settings: Settings, session_factory: Any
) -> None:
    # given: a contract at 0.00 with a rule below 100.00, one at 1000.00 with the same rule
    low = await make_subscriber(session_factory, settings)
    rich = await make_subscriber(session_factory, settings, balance=Decimal("1000.00"))
    for made in (low, rich):
        method = await save_method(session_factory, made.contract_ids[0])
        await set_rule(session_factory, settings, made.contract_ids[0], method)
    low_id = low.contract_ids[0]
    # when
    summary = await run_billing_day(session_factory, settings=settings, day=DAY)
    # then: one autopay payment, for the contract below the threshold after its charge
    assert (summary.autopay.created, summary.autopay.succeeded) == (1, 1)
    (payment,) = await rows(session_factory, Payment)
    assert payment.contract_id == low_id and payment.autopay
    assert payment.status == "SUCCEEDED" and payment.amount == Decimal("500.00")
    assert payment.idempotency_scope == "autopay"
    assert payment.idempotency_key == f"autopay:{low_id}:{DAY.isoformat()}"
    assert payment.provider_reference == f"sandbox-{payment.id}"
    (run,) = await rows(session_factory, AutopayRun)
    assert (run.contract_id, run.day, run.payment_id, run.outcome) == (
        low_id,
        DAY,
        payment.id,
        "SUCCEEDED",
    )
    # credited through the webhook's path: a TOP_UP entry, a receipt and its letter
    (entry,) = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert entry.amount == Decimal("500.00") and entry.reference == f"payment:{payment.id}"
    (receipt,) = await rows(session_factory, Receipt)
    assert receipt.payment_id == payment.id
    assert await rows(session_factory, OutboxMessage, OutboxMessage.kind == "RECEIPT")
    charge = await _charged(session_factory, low_id)
    assert charge > 0
    assert await _balance(session_factory, low_id) == Decimal("500.00") - charge
    await assert_ledger_balanced(session_factory)

    # when: the same day again
    again = await run_billing_day(session_factory, settings=settings, day=DAY)
    # then: nothing more
    assert again.autopay.created == 0
    assert len(await rows(session_factory, Payment)) == 1


async def test_monthly_autopay_pays_on_its_day_and_at_most_the_months_cap(
    settings: Settings, session_factory: Any
) -> None:
    # given: a MONTHLY rule on the 3rd; a BELOW_THRESHOLD rule always below; a cap of 2
    settings = settings.model_copy(update={"autopay_max_per_month": 2})
    monthly = await make_subscriber(session_factory, settings, balance=Decimal("5000.00"))
    always = await make_subscriber(session_factory, settings)
    method = await save_method(session_factory, monthly.contract_ids[0])
    await set_rule(
        session_factory,
        settings,
        monthly.contract_ids[0],
        method,
        mode="MONTHLY",
        amount="300.00",
        threshold=None,
        day_of_month=3,
    )
    method = await save_method(session_factory, always.contract_ids[0])
    await set_rule(session_factory, settings, always.contract_ids[0], method, threshold="50000.00")
    # when: four days
    for offset in range(4):
        await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=offset))
    # then: MONTHLY on the 3rd only; the other twice (the cap), on the 1st and the 2nd
    made = await rows(session_factory, AutopayRun)
    by_contract = {
        contract_id: sorted(run.day for run in made if run.contract_id == contract_id)
        for contract_id in (monthly.contract_ids[0], always.contract_ids[0])
    }
    assert by_contract[monthly.contract_ids[0]] == [date(2026, 12, 3)]
    assert by_contract[always.contract_ids[0]] == [date(2026, 12, 1), date(2026, 12, 2)]
    assert all(p.status == "SUCCEEDED" for p in await rows(session_factory, Payment))
    # the next month starts a new count
    await run_billing_day(session_factory, settings=settings, day=date(2027, 1, 1))
    assert len(await rows(session_factory, AutopayRun)) == 4
    await assert_ledger_balanced(session_factory)


async def test_three_failures_in_a_row_switch_autopay_off_and_a_success_resets(
    settings: Settings, session_factory: Any
) -> None:
    # given: autopay from the sandbox's declining card, always below the threshold
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await save_method(
        session_factory,
        contract_id,
        title="Card *0002",
        reference=f"{SANDBOX_DECLINING_PREFIX}{contract_id}",
    )
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    # when: one failure, then the card pays (the provider's mind changed), then fails again
    await run_billing_day(session_factory, settings=settings, day=DAY)
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.failures_in_row == 1 and rule.enabled
    await _reference(session_factory, card, "sandbox-card-good")
    await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=1))
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.failures_in_row == 0 and rule.enabled
    await _reference(session_factory, card, f"{SANDBOX_DECLINING_PREFIX}again")
    for offset in (2, 3, 4):
        await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=offset))
    # then: three failures in a row switched it off; the next day makes no payment
    (rule,) = await rows(session_factory, AutopayRule)
    assert rule.failures_in_row == 3 and rule.enabled is False
    await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=5))
    statuses = [p.status for p in sorted(await rows(session_factory, Payment), key=lambda p: p.id)]
    assert statuses == ["FAILED", "SUCCEEDED", "FAILED", "FAILED", "FAILED"]
    outcomes = [
        r.outcome for r in sorted(await rows(session_factory, AutopayRun), key=lambda r: r.day)
    ]
    assert outcomes == ["FAILED", "SUCCEEDED", "FAILED", "FAILED", "FAILED"]
    # each failure mailed; the third says autopay is off
    letters = sorted(
        await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY_FAILED"),
        key=lambda m: m.id,
    )
    assert len(letters) == 4
    assert all(m.recipient == made.email and "Card *0002" in m.body_text for m in letters)
    assert "выключится" in letters[0].body_text and "выключен" not in letters[0].subject
    assert "не прошёл" in letters[2].subject
    assert "выключен" in letters[3].subject and "3-я неудача подряд" in letters[3].body_text
    # only the success credited
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert [e.amount for e in entries] == [Decimal("500.00")]
    await assert_ledger_balanced(session_factory)


async def _reference(session_factory: Any, method_id: int, reference: str) -> None:
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(table_of(PaymentMethod))
            .where(table_of(PaymentMethod).c.id == method_id)
            .values(reference=reference)
        )
        await session.commit()


def _closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return int(listener.getsockname()[1])


async def test_a_provider_that_does_not_answer_leaves_the_payment_pending(
    settings: Settings, session_factory: Any
) -> None:
    # given: YooKassa on a port where nothing listens, a YooKassa card
    settings = settings.model_copy(
        update={
            "payment_provider": "yookassa",
            "yookassa_shop_id": "123456",
            "yookassa_secret_key": "test_secret_key_for_autopay",
            "yookassa_api_url": f"http://127.0.0.1:{_closed_port()}/v3",
        }
    )
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await save_method(
        session_factory, contract_id, provider="yookassa", reference="2ea4d5f4-000f-5000-9000-1"
    )
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    # when
    summary = await run_billing_day(session_factory, settings=settings, day=DAY)
    # then: made, committed, PENDING; nothing credited
    assert (summary.autopay.created, summary.autopay.pending) == (1, 1)
    (payment,) = await rows(session_factory, Payment)
    assert payment.status == "PENDING" and payment.provider == "yookassa"
    assert payment.provider_reference is None
    assert await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP") == []
    # the next day makes none while it is pending
    await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=1))
    assert len(await rows(session_factory, Payment)) == 1
    # when: the notification path settles it (the provider reports it canceled)
    async with unit_of_work(session_factory) as session:
        await payments.apply_provider_event(
            session,
            settings=settings,
            payment_id=payment.id,
            status="FAILED",
            provider_reference=None,
        )
    # then: the next run records its outcome once (a failure, mailed)
    await run_billing_day(session_factory, settings=settings, day=DAY + timedelta(days=2))
    (first_run, *_) = sorted(await rows(session_factory, AutopayRun), key=lambda r: r.day)
    assert first_run.payment_id == payment.id and first_run.outcome == "FAILED"
    letters = await rows(session_factory, OutboxMessage, OutboxMessage.kind == "AUTOPAY_FAILED")
    assert len(letters) == 1
    async with unit_of_work(session_factory) as session:
        again = await autopay.autopay_outcome(
            session, settings=settings, payment_id=payment.id, succeeded=False
        )
    assert again is None


async def test_two_billing_runs_at_once_charge_each_contract_once(
    settings: Settings, session_factory: Any, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("races are run on PostgreSQL; SQLite serialises writers")
    # given: twelve contracts whose rule fires, and two hosts (engines of their own)
    contract_ids = []
    for _ in range(12):
        made = await make_subscriber(session_factory, settings)
        method = await save_method(session_factory, made.contract_ids[0])
        await set_rule(session_factory, settings, made.contract_ids[0], method)
        contract_ids.append(made.contract_ids[0])
    engines = [create_engine(settings) for _ in range(2)]
    try:
        # when: both run the same billing day at once
        summaries = await asyncio.gather(
            *(
                run_billing_day(create_session_factory(engine), settings=settings, day=DAY)
                for engine in engines
            )
        )
    finally:
        for engine in engines:
            await engine.dispose()
    # then: one autopay payment per contract, credited once
    assert sum(s.autopay.created for s in summaries) == 12
    made_payments = await rows(session_factory, Payment)
    assert sorted(p.contract_id for p in made_payments) == sorted(contract_ids)
    assert all(p.status == "SUCCEEDED" for p in made_payments)
    assert len(await rows(session_factory, AutopayRun)) == 12
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert sorted(e.contract_id for e in entries) == sorted(contract_ids)
    for contract_id in contract_ids:
        charge = await _charged(session_factory, contract_id)
        assert await _balance(session_factory, contract_id) == Decimal("500.00") - charge
    await assert_ledger_balanced(session_factory)


async def test_a_rerun_charges_the_payments_a_stopped_run_made(
    settings: Settings, session_factory: Any
) -> None:
    # given: a run that committed its autopay payment and stopped before the provider
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    card = await save_method(session_factory, contract_id)
    await set_rule(session_factory, settings, contract_id, card, threshold="50000.00")
    async with unit_of_work(session_factory) as session:
        (payment_id,) = await autopay._create_payments(
            session, settings=settings, day=DAY, now=datetime.now(UTC) - timedelta(minutes=5)
        )
    # when: the day is billed again
    summary = await run_billing_day(session_factory, settings=settings, day=DAY)
    # then: no second payment; the first is charged and credited once
    assert (summary.autopay.created, summary.autopay.succeeded) == (0, 1)
    (payment,) = await rows(session_factory, Payment)
    assert payment.id == payment_id and payment.status == "SUCCEEDED"
    entries = await rows(session_factory, LedgerEntry, LedgerEntry.kind == "TOP_UP")
    assert [e.amount for e in entries] == [Decimal("500.00")]
    await assert_ledger_balanced(session_factory)
