"""Staff `adjustBalance`: a ledger entry of the staff member, audited, with a reason."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from core.db import begin_write, unit_of_work
from core.errors import DomainError, ErrorCode
from models import AuditEntry, Contract, LedgerEntry
from resolvers import ledger
from resolvers.adjustments import Adjusted, adjust_balance
from tests.factories import make_staff, make_subscriber
from tests.money.test_ledger import assert_ledger_balanced

REASON = "Перерасчёт за аварию 12.05 на линии"


async def contract_state(session_factory: Any, contract_id: int) -> tuple[Decimal, str]:
    async with session_factory() as session:
        row = (
            await session.execute(
                sa.select(col(Contract.balance), col(Contract.status)).where(
                    col(Contract.id) == contract_id
                )
            )
        ).one()
    return row.balance, row.status


async def ledger_rows(session_factory: Any) -> list[LedgerEntry]:
    async with session_factory() as session:
        return list(
            (await session.execute(sa.select(LedgerEntry).order_by(col(LedgerEntry.id)))).scalars()
        )


async def audit_rows(session_factory: Any) -> list[AuditEntry]:
    async with session_factory() as session:
        return list(
            (await session.execute(sa.select(AuditEntry).order_by(col(AuditEntry.id)))).scalars()
        )


async def adjust(session_factory: Any, **kw: Any) -> Adjusted:
    async with unit_of_work(session_factory) as session:
        return await adjust_balance(session, **kw)


async def test_a_credit_is_a_staff_ledger_entry_with_an_audit_entry(
    session_factory: Any, settings: Any
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)
    contract_id = made.contract_ids[0]

    # when
    adjusted = await adjust(
        session_factory,
        settings=settings,
        staff_id=staff_id,
        contract_number=f" {made.contract_numbers[0]} ",
        amount=Decimal("150.50"),
        reason=f"  {REASON}\n",
        client_address="10.0.0.7",
    )

    # then: the result
    assert adjusted.contract_id == contract_id
    assert adjusted.balance_after == Decimal("150.50")
    assert adjusted.suspension_lifted is False
    # the balance and the ledger
    assert await contract_state(session_factory, contract_id) == (Decimal("150.50"), "ACTIVE")
    (entry,) = await ledger_rows(session_factory)
    assert entry.id == adjusted.entry_id and entry.contract_id == contract_id
    assert entry.kind == "ADJUSTMENT" and entry.amount == Decimal("150.50")
    assert entry.balance_after == Decimal("150.50")
    assert entry.actor == f"staff:{staff_id}" and entry.description == REASON
    # the audit log
    (audit,) = await audit_rows(session_factory)
    assert audit.action == "adjustBalance" and audit.actor_staff_id == staff_id
    assert audit.actor == f"staff:{staff_id}"
    assert (audit.target_type, audit.target_id) == ("Contract", str(contract_id))
    assert audit.reason == REASON and audit.client_address == "10.0.0.7"
    assert json.loads(audit.before or "") == {
        "balance": "0.00",
        "contract_number": made.contract_numbers[0],
    }
    assert json.loads(audit.after or "") == {
        "balance": "150.50",
        "amount": "150.50",
        "ledger_entry_id": adjusted.entry_id,
        "suspension_lifted": False,
    }
    await assert_ledger_balanced(session_factory)


async def test_a_debit_may_take_the_balance_below_zero(session_factory: Any, settings: Any) -> None:
    # given: a balance of 20.00
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)
    contract_id = made.contract_ids[0]
    async with session_factory() as session:
        await begin_write(session)
        await ledger.post(
            session, contract_id=contract_id, kind="TOP_UP", amount=Decimal("20.00"), actor="test"
        )
        await session.commit()

    # when
    adjusted = await adjust(
        session_factory,
        settings=settings,
        staff_id=staff_id,
        contract_number=made.contract_numbers[0],
        amount=Decimal("-100000.00"),
        reason="Ошибочное зачисление",
        client_address=None,
    )

    # then
    assert adjusted.balance_after == Decimal("-99980.00")
    assert await contract_state(session_factory, contract_id) == (Decimal("-99980.00"), "ACTIVE")
    entries = await ledger_rows(session_factory)
    assert [(e.kind, e.amount) for e in entries] == [
        ("TOP_UP", Decimal("20.00")),
        ("ADJUSTMENT", Decimal("-100000.00")),
    ]
    (audit,) = await audit_rows(session_factory)
    assert json.loads(audit.before or "")["balance"] == "20.00"
    assert json.loads(audit.after or "")["balance"] == "-99980.00"
    assert json.loads(audit.after or "")["amount"] == "-100000.00"
    assert audit.client_address is None
    await assert_ledger_balanced(session_factory)


async def test_the_limits_themselves_are_allowed(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)
    for amount, reason in ((Decimal("100000.00"), "x" * 5), (Decimal("0.01"), "я" * 500)):
        await adjust(
            session_factory,
            settings=settings,
            staff_id=staff_id,
            contract_number=made.contract_numbers[0],
            amount=amount,
            reason=reason,
            client_address=None,
        )
    assert (await contract_state(session_factory, made.contract_ids[0]))[0] == Decimal("100000.01")
    entries = await ledger_rows(session_factory)
    assert len(entries[1].description) == 300  # the ledger keeps the first 300 characters
    assert (await audit_rows(session_factory))[1].reason == "я" * 500  # the audit all of it
    await assert_ledger_balanced(session_factory)


@pytest.mark.parametrize(
    ("amount", "reason", "field"),
    [
        (Decimal("0"), REASON, "amount"),
        (Decimal("0.00"), REASON, "amount"),
        (Decimal("100000.01"), REASON, "amount"),
        (Decimal("-100000.01"), REASON, "amount"),
        (Decimal("1E+30"), REASON, "amount"),
        (Decimal("1.005"), REASON, "amount"),
        (Decimal("0.001"), REASON, "amount"),
        (Decimal("NaN"), REASON, "amount"),
        (Decimal("Infinity"), REASON, "amount"),
        (Decimal("-Infinity"), REASON, "amount"),
        (Decimal("10.00"), "", "reason"),
        (Decimal("10.00"), "abcd", "reason"),
        (Decimal("10.00"), "   ab    c   ", "reason"),  # "ab c": 4 characters
        (Decimal("10.00"), " \n\t  ", "reason"),
        (Decimal("10.00"), "x" * 501, "reason"),
        (Decimal("10.00"), "ошибка\u200bначисления", "reason"),  # a format character
    ],
)
async def test_invalid_input_changes_nothing(
    session_factory: Any, settings: Any, amount: Decimal, reason: str, field: str
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)

    # when
    with pytest.raises(DomainError) as caught:
        await adjust(
            session_factory,
            settings=settings,
            staff_id=staff_id,
            contract_number=made.contract_numbers[0],
            amount=amount,
            reason=reason,
            client_address=None,
        )

    # then
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, field)
    assert await contract_state(session_factory, made.contract_ids[0]) == (
        Decimal("0.00"),
        "ACTIVE",
    )
    assert await ledger_rows(session_factory) == []
    assert await audit_rows(session_factory) == []


@pytest.mark.parametrize("number", ["000000000000", "", "   ", "7" * 21, "77' OR 1=1 --"])
async def test_an_unknown_contract_is_not_found(
    session_factory: Any, settings: Any, number: str
) -> None:
    await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)

    with pytest.raises(DomainError) as caught:
        await adjust(
            session_factory,
            settings=settings,
            staff_id=staff_id,
            contract_number=number,
            amount=Decimal("10.00"),
            reason=REASON,
            client_address=None,
        )

    assert (caught.value.code, caught.value.field) == (ErrorCode.NOT_FOUND, "contractNumber")
    assert await ledger_rows(session_factory) == []
    assert await audit_rows(session_factory) == []


async def test_a_credit_that_pays_the_debt_lifts_the_suspension(
    session_factory: Any, settings: Any
) -> None:
    # given: a contract suspended at -50.00
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)
    contract_id, number = made.contract_ids[0], made.contract_numbers[0]
    async with session_factory() as session:
        await begin_write(session)
        await ledger.post(
            session, contract_id=contract_id, kind="CHARGE", amount=Decimal("-50.00"), actor="test"
        )
        await session.execute(
            sa.update(Contract).where(col(Contract.id) == contract_id).values(status="SUSPENDED")
        )
        await session.commit()

    # when: a credit that leaves it below zero
    partial = await adjust(
        session_factory,
        settings=settings,
        staff_id=staff_id,
        contract_number=number,
        amount=Decimal("30.00"),
        reason="Компенсация простоя",
        client_address=None,
    )

    # then: still suspended
    assert partial.suspension_lifted is False
    assert await contract_state(session_factory, contract_id) == (Decimal("-20.00"), "SUSPENDED")

    # when: a credit that brings it to zero
    full = await adjust(
        session_factory,
        settings=settings,
        staff_id=staff_id,
        contract_number=number,
        amount=Decimal("20.00"),
        reason="Компенсация простоя",
        client_address=None,
    )

    # then: active again, and the audit entry says so
    assert full.suspension_lifted is True and full.balance_after == Decimal("0.00")
    assert await contract_state(session_factory, contract_id) == (Decimal("0.00"), "ACTIVE")
    audits = await audit_rows(session_factory)
    assert [json.loads(a.after or "")["suspension_lifted"] for a in audits] == [False, True]
    await assert_ledger_balanced(session_factory)


async def test_a_debit_does_not_lift_or_set_a_suspension(
    session_factory: Any, settings: Any
) -> None:
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)
    async with session_factory() as session:
        await session.execute(sa.update(Contract).values(status="SUSPENDED"))
        await session.commit()

    adjusted = await adjust(
        session_factory,
        settings=settings,
        staff_id=staff_id,
        contract_number=made.contract_numbers[0],
        amount=Decimal("-5.00"),
        reason="Списание по заявлению",
        client_address=None,
    )

    assert adjusted.suspension_lifted is False
    assert await contract_state(session_factory, made.contract_ids[0]) == (
        Decimal("-5.00"),
        "SUSPENDED",
    )
    await assert_ledger_balanced(session_factory)


async def test_concurrent_adjustments_lose_nothing(session_factory: Any, settings: Any) -> None:
    made = await make_subscriber(session_factory, settings)
    staff_id, _, _ = await make_staff(session_factory, settings)

    await asyncio.gather(
        *(
            adjust(
                session_factory,
                settings=settings,
                staff_id=staff_id,
                contract_number=made.contract_numbers[0],
                amount=Decimal("1.01"),
                reason=f"Перерасчёт номер {i}",
                client_address=None,
            )
            for i in range(20)
        )
    )

    assert (await contract_state(session_factory, made.contract_ids[0]))[0] == Decimal("20.20")
    afters = sorted(e.balance_after for e in await ledger_rows(session_factory))
    assert afters == [Decimal("1.01") * i for i in range(1, 21)]
    audits = await audit_rows(session_factory)
    befores = sorted(Decimal(json.loads(a.before or "")["balance"]) for a in audits)
    assert befores == [Decimal("1.01") * i for i in range(20)]
    await assert_ledger_balanced(session_factory)
