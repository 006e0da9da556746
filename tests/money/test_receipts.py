"""Receipts (SPEC §3 "Receipt"): issued with a successful top-up, printable at
`/receipts/<Payment.id>` for the signed-in owner only, VAT included at the rate in force on
the receipt's date (22% since 2026-01-01, 20% before), rounded half-up."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from auth.sessions import COOKIE_NAME
from core.payment_providers import payment_global_id
from core.settings import Settings
from models import OutboxMessage, Receipt
from resolvers import payments
from resolvers.receipts import (
    OPERATOR,
    RECEIPT_ITEM,
    VAT_RATES,
    receipt_number,
    vat_included,
    vat_rate_on,
)
from tests.conftest import gql
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced
from tests.money.test_payments import (
    deliver,
    mount_payment_routes,
    top_up,
)


@pytest.fixture
def http(app: Any, settings: Settings, client: httpx.AsyncClient) -> httpx.AsyncClient:
    mount_payment_routes(app, settings)
    return client


async def _paid(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    contract_id: int,
    *,
    amount: str = "500.00",
    method: str = "SBP",
    reference: str = "prov-777",
) -> int:
    payment = await top_up(
        session_factory, settings, contract_id=contract_id, amount=amount, method=method
    )
    response = await deliver(http, settings, payment.id, reference=reference)
    assert response.status_code == 200, response.text
    return payment.id


async def _receipt(session_factory: Any, payment_id: int) -> Receipt:
    async with session_factory() as session:
        row = await session.scalar(sa.select(Receipt).where(Receipt.payment_id == payment_id))
    assert row is not None
    return row


# -- the receipt row ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "vat"),
    [
        ("12.15", "2.03"),  # 2.025: half-up, where half-even (and floats) give 2.02
        ("10.00", "1.67"),  # 1.6666…
        ("120.00", "20.00"),
        ("500.00", "83.33"),
        ("50000.00", "8333.33"),
        ("10.03", "1.67"),  # 1.67166…
        ("10.09", "1.68"),  # 1.68166…
    ],
)
def test_vat_is_20_percent_included_rounded_half_up(total: str, vat: str) -> None:
    assert vat_included(Decimal(total), Decimal("20")) == Decimal(vat)


async def test_the_receipt_has_what_the_spec_lists(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0], amount="12.15")
    receipt = await _receipt(session_factory, payment_id)
    assert receipt.number == receipt_number(payment_id, receipt.issued_at)
    assert re.fullmatch(r"R-\d{8}-\d{8}", receipt.number)
    assert (receipt.seller_name, receipt.seller_inn) == (OPERATOR.name, OPERATOR.inn)
    assert receipt.contract_number == made.contract_numbers[0]
    assert receipt.payer_email == made.email
    assert receipt.item == RECEIPT_ITEM == "Предоплата услуг связи"
    assert (receipt.vat_rate, receipt.vat_amount, receipt.total) == (
        Decimal("22.00"),  # in force since 2026-01-01 (was 20.00 and 2.03)
        Decimal("2.19"),  # 12.15 × 22 / 122 = 2.1909…
        Decimal("12.15"),
    )
    assert (receipt.method, receipt.provider_reference) == ("SBP", "prov-777")
    await assert_ledger_balanced(session_factory)


async def test_receipt_numbers_are_unique(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, contracts=2)
    ids = [
        await _paid(
            http, session_factory, settings, made.contract_ids[i % 2], reference=f"prov-{i}"
        )
        for i in range(6)
    ]
    async with session_factory() as session:
        numbers = (await session.scalars(sa.select(Receipt.number))).all()
    assert len(numbers) == len(set(numbers)) == 6
    assert {n.rsplit("-", 1)[1] for n in numbers} == {f"{i:08d}" for i in ids}
    await assert_ledger_balanced(session_factory)


async def test_no_receipt_for_a_pending_or_failed_payment(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    failed = await top_up(session_factory, settings, contract_id=made.contract_ids[0])
    await deliver(http, settings, failed.id, "FAILED")
    async with session_factory() as session:
        assert (await session.scalars(sa.select(Receipt))).all() == []


# -- the printable page -------------------------------------------------------------------


async def test_the_owner_gets_the_printable_receipt(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(
        http, session_factory, settings, made.contract_ids[0], amount="1234.50", method="BANK_CARD"
    )
    receipt = await _receipt(session_factory, payment_id)
    headers = await sign_in(http, made.login or "")
    # when
    response = await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)
    # then
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    for expected in (
        receipt.number,
        receipt.issued_at.strftime("%d.%m.%Y"),
        "ООО «Кабинет Телеком»",
        OPERATOR.inn,
        made.contract_numbers[0],
        made.email or "",
        "Предоплата услуг связи",
        "НДС 22%",  # in force since 2026-01-01 (was 20% and 205,75)
        "222,61",  # 1234.50 × 22 / 122
        "1\u00a0234,50",
        "Банковская карта",
        "prov-777",
    ):
        assert expected in page, expected
    assert "<script" not in page


async def test_the_session_cookie_works_too(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    token = (await sign_in(http, made.login or ""))["Authorization"].split(" ", 1)[1]
    response = await http.get(
        f"/receipts/{payment_global_id(payment_id)}", headers={"Cookie": f"{COOKIE_NAME}={token}"}
    )
    assert response.status_code == 200


async def test_staff_may_see_a_receipt(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    _, username, _ = await make_staff(session_factory, settings)
    headers = await sign_in(http, username)
    response = await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)
    assert response.status_code == 200


async def test_someone_elses_receipt_is_not_found(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    # given
    owner = await make_subscriber(session_factory, settings)
    stranger = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, owner.contract_ids[0])
    pending = await top_up(session_factory, settings, contract_id=stranger.contract_ids[0])
    headers = await sign_in(http, stranger.login or "")
    # when
    foreign = await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)
    missing = await http.get(f"/receipts/{payment_global_id(payment_id + 1000)}", headers=headers)
    no_receipt = await http.get(f"/receipts/{payment_global_id(pending.id)}", headers=headers)
    garbage = await http.get("/receipts/not-an-id", headers=headers)
    # then: "not yours" looks exactly like "does not exist"
    assert [r.status_code for r in (foreign, missing, no_receipt, garbage)] == [404] * 4
    assert foreign.text == missing.text == no_receipt.text
    assert owner.contract_numbers[0] not in foreign.text


async def test_a_signed_out_caller_gets_401(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    url = f"/receipts/{payment_global_id(payment_id)}"
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": f"{COOKIE_NAME}=not-a-token"},
    ):
        response = await http.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert made.contract_numbers[0] not in response.text


async def test_a_temporary_password_must_be_changed_first(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings, must_change_password=True)
    payment_id = await _paid(http, session_factory, settings, made.contract_ids[0])
    response = await http.post(
        "/graphql",
        json={
            "query": "mutation($i: LoginInput!) { login(input: $i) { accessToken } }",
            "variables": {"i": {"identifier": made.login, "password": made.password}},
        },
    )
    token = response.json()["data"]["login"]["accessToken"]
    page = await http.get(
        f"/receipts/{payment_global_id(payment_id)}", headers={"Authorization": f"Bearer {token}"}
    )
    assert page.status_code == 403


async def test_everything_on_the_page_is_escaped(
    http: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    made = await make_subscriber(session_factory, settings)
    payment_id = await _paid(
        http, session_factory, settings, made.contract_ids[0], reference="<b>x</b>&\"'"
    )
    headers = await sign_in(http, made.login or "")
    page = (await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)).text
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;&quot;&#x27;" in page


# -- the dated VAT rate (issue 16 item 3) ------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "percent", "code"),
    [
        (datetime(2026, 12, 6, 12, 0, tzinfo=UTC), "22", 12),
        (datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "22", 12),
        # midnight in Moscow (UTC+3), where the seller is: the new rate from then on
        (datetime(2025, 12, 31, 21, 0, tzinfo=UTC), "22", 12),
        (datetime(2025, 12, 31, 20, 59, 59, tzinfo=UTC), "20", 6),
        (datetime(2025, 12, 31, 12, 0, tzinfo=UTC), "20", 6),
        (datetime(2019, 1, 1, 12, 0, tzinfo=UTC), "20", 6),
    ],
)
def test_the_vat_rate_and_its_yookassa_code_follow_the_date(
    moment: datetime, percent: str, code: int
) -> None:
    rate = vat_rate_on(moment)
    assert (rate.percent, rate.yookassa_vat_code) == (Decimal(percent), code)
    assert rate in VAT_RATES


@pytest.mark.parametrize(
    ("total", "vat"),
    [("12.15", "2.19"), ("100.00", "18.03"), ("500.00", "90.16"), ("50000.00", "9016.39")],
)
def test_vat_22_percent_is_22_122_rounded_half_up(total: str, vat: str) -> None:
    assert vat_included(Decimal(total), Decimal("22")) == Decimal(vat)


RECEIPT_QUERY = """
query($id: ID!) { node(id: $id) { ... on Payment { receipt { number vatRate vatAmount total } } } }
"""


@pytest.mark.parametrize(
    ("confirmed_at", "rate", "vat"),
    [
        (datetime(2026, 12, 6, 10, 0, tzinfo=UTC), "22", "222.61"),  # 1234.50 × 22 / 122
        (datetime(2025, 12, 31, 10, 0, tzinfo=UTC), "20", "205.75"),  # 1234.50 × 20 / 120
    ],
)
async def test_a_receipt_states_the_rate_of_its_date_everywhere(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    confirmed_at: datetime,
    rate: str,
    vat: str,
) -> None:
    """Issued, shown (Receipt.vatRate / vatAmount), mailed and printed with the same rate and
    amount: the one in force on the day the payment was confirmed."""
    # given: a top-up confirmed at `confirmed_at`
    made = await make_subscriber(session_factory, settings)
    monkeypatch.setattr(payments, "utcnow", lambda: confirmed_at)
    payment_id = await _paid(
        http, session_factory, settings, made.contract_ids[0], amount="1234.50"
    )
    monkeypatch.undo()
    headers = await sign_in(http, made.login or "")
    # then: the stored receipt
    receipt = await _receipt(session_factory, payment_id)
    assert receipt.issued_at == confirmed_at
    assert (receipt.vat_rate, receipt.vat_amount) == (Decimal(rate), Decimal(vat))
    assert receipt.vat_amount == vat_included(Decimal("1234.50"), Decimal(rate))
    # GraphQL
    shown = (
        await gql(http, RECEIPT_QUERY, {"id": payment_global_id(payment_id)}, headers=headers)
    )["node"]["receipt"]
    assert shown == {
        "number": receipt.number,
        "vatRate": rate,
        "vatAmount": vat,
        "total": "1234.50",
    }
    # the letter
    async with session_factory() as session:
        (letter,) = (
            await session.scalars(
                sa.select(OutboxMessage).where(OutboxMessage.recipient == made.email)  # type: ignore[arg-type]
            )
        ).all()
    vat_line = f"В том числе НДС {rate}%: {vat.replace('.', ',')}\u00a0руб."
    assert vat_line in letter.body_text
    assert letter.body_html is not None and vat_line in letter.body_html
    # the printable page
    page = (await http.get(f"/receipts/{payment_global_id(payment_id)}", headers=headers)).text
    assert f"В том числе НДС {rate}%" in page and vat.replace(".", ",") in page
    assert f"НДС {'20' if rate == '22' else '22'}%" not in page


async def test_a_stored_receipt_keeps_its_rate(
    http: httpx.AsyncClient,
    session_factory: Any,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A receipt issued under 20% still says 20% once 22% is in force: rows are never
    rewritten, and reading one takes nothing from today's table."""
    made = await make_subscriber(session_factory, settings)
    monkeypatch.setattr(payments, "utcnow", lambda: datetime(2025, 6, 1, 9, 0, tzinfo=UTC))
    old = await _paid(http, session_factory, settings, made.contract_ids[0], reference="p-old")
    monkeypatch.undo()
    new = await _paid(http, session_factory, settings, made.contract_ids[0], reference="p-new")
    headers = await sign_in(http, made.login or "")
    rates = {}
    for payment_id in (old, new):
        answer = await gql(
            http, RECEIPT_QUERY, {"id": payment_global_id(payment_id)}, headers=headers
        )
        rates[payment_id] = (
            answer["node"]["receipt"]["vatRate"],
            answer["node"]["receipt"]["vatAmount"],
        )
    assert rates == {old: ("20", "83.33"), new: ("22", "90.16")}
