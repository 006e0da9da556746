"""Answers built by PostgreSQL in one statement (schema/sql_answers.py) are the executor's.

Each document is asked twice of the same data through POST /graphql: as served, and with
the one-statement way turned off (the executor, field by field). The two answers must be the
same JSON, and the first must really have come from one statement (the token checked in it).
On SQLite the one-statement way never answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from graphql import parse

from bench.pages import PAGES
from core.db import begin_write
from core.settings import Settings
from models import (
    AuthSession,
    BonusAccount,
    Contract,
    ContractPause,
    ContractTvPackage,
    Payment,
    PromisedPayment,
    SocialAccessGrant,
    Subscriber,
    Tariff,
    TvPackage,
)
from models.base import table_of, utcnow
from resolvers import ledger
from schema import build_schema
from schema.sql_answers import NotCompiled, SqlAnswers, compile_document
from tests.conftest import gql_raw
from tests.factories import make_staff, make_subscriber, sign_in
from tests.services.test_services import catalog_id
from tests.test_catalog_api import count_statements

OVERVIEW = """
{ me { displayName contracts { number status
  balance { amount daysLeft openPromisedPayment { amount dueAt } }
  tariff { name monthlyFee speedMbps }
  tvPackages { name monthlyFee }
  payments(first: 10) { edges { node { amount status createdAt } } } }
  bonusAccount { points } } }
"""
EVERYTHING = """
query Everything($n: Int) {
  __typename
  me {
    __typename id login legalStatus displayName email phone
    bonusAccount { __typename points }
    contracts {
      ...ContractFields
      balance { __typename amount currency availableAmount daysLeft
        openPromisedPayment { __typename id amount fee status issuedAt dueAt settledAt } }
      region { __typename code name }
      tariff { __typename id code name regionCode monthlyFee speedMbps trafficGb unlimited
        description archived }
      tvPackages { __typename id code name monthlyFee description archived }
      recent: payments(first: $n) {
        __typename
        edges { __typename cursor node { __typename id amount method status createdAt
          confirmedAt } }
        pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor }
      }
      ... on Contract { all: payments { edges { cursor } pageInfo { hasNextPage endCursor } } }
      none: payments(first: 0) { edges { cursor } pageInfo { hasNextPage startCursor } }
      onlyInfo: payments(first: 2) { pageInfo { hasNextPage } }
    }
  }
}
fragment ContractFields on Contract { __typename id number address status openedOn }
"""
# Documents the executor answers (and which must come out exactly as before).
NOT_COMPILED = [
    ("{ me { contracts { payments(first: 1000) { edges { cursor } } } } }", None),
    ("query($n: Int) { me { contracts { payments(first: $n) { edges { cursor } } } } }", {"n": -1}),
    ("query($n: Int!) { me { contracts { payments(first: $n) { edges { cursor } } } } }", {}),
    (
        "query($n: Int) { me { contracts { payments(first: $n) { edges { cursor } } } } }",
        {"n": "x"},
    ),
    ("{ me { contracts { scheduledTariff { effectiveFrom } } } }", None),
    ("{ me { displayName @include(if: true) } }", None),
    ("{ me { a: displayName a: displayName } }", None),
    ('{ me { contracts { payments(first: 1, after: "MQ==") { edges { cursor } } } } }', None),
    ("{ me { contracts { ledger(first: 101) { edges { cursor } } } } }", None),
    ('{ me { contracts { ledger(from: "2026-01-02T03:00:00") { edges { cursor } } } } }', None),
    (
        "query($k: [LedgerKind!]) { me { contracts { ledger(kinds: $k) { edges { cursor } } } } }",
        {"k": ["CHARGE"]},
    ),
]


async def _rich_subscriber(session_factory: Any, settings: Any) -> Any:
    """Three contracts with what the overview shows, in the shapes that are easy to get
    wrong: timestamps with and without microseconds, a negative balance, a tariff change in
    force today and one to come, packages (one free for now), an open promise, quotes and
    backslashes in a name, no email."""
    made = await make_subscriber(
        session_factory, settings, contracts=3, balance=Decimal("1234.50"), email=None
    )
    first, second, third = made.contract_ids
    base = await catalog_id(session_factory, TvPackage, "base")
    sport = await catalog_id(session_factory, TvPackage, "sport")
    dearer = await catalog_id(session_factory, Tariff, "home-300")
    today = utcnow().date()
    whole_second = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(Subscriber)
            .where(Subscriber.id == made.id)
            .values(display_name="Тест \"в кавычках\" \\ и 'апостроф' <b>")
        )
        await session.execute(
            sa.update(BonusAccount).where(BonusAccount.subscriber_id == made.id).values(points=42)
        )
        for i in range(12):
            session.add(
                Payment(
                    contract_id=first,
                    amount=Decimal("100.00") + i,
                    method=("SBP", "BANK_CARD", "E_WALLET")[i % 3],
                    status=("SUCCEEDED", "PENDING", "FAILED", "CANCELED")[i % 4],
                    idempotency_scope="test",
                    idempotency_key=f"compiled-{made.id}-{i}",
                    request_fingerprint="x",
                    provider_reference=f"ref-{made.id}-{i}",
                    created_at=whole_second + timedelta(minutes=i)
                    if i % 2
                    else whole_second + timedelta(minutes=i, microseconds=i + 1),
                    confirmed_at=whole_second if i % 4 == 0 else None,
                )
            )
        session.add(ContractTvPackage(contract_id=first, package_id=sport, started_on=today))
        session.add(
            ContractTvPackage(
                contract_id=first,
                package_id=base,
                started_on=today - timedelta(days=3),
                ended_on=today + timedelta(days=5),
                free_until=today + timedelta(days=5),
            )
        )
        session.add(
            PromisedPayment(
                contract_id=first,
                amount=Decimal("300.00"),
                fee=Decimal("10.00"),
                status="OPEN",
                due_at=whole_second.replace(year=2027),
            )
        )
        await session.execute(
            sa.update(Contract)
            .where(Contract.id == second)
            .values(scheduled_tariff_id=dearer, scheduled_tariff_from=today)
        )
        await session.execute(
            sa.update(Contract)
            .where(Contract.id == third)
            .values(scheduled_tariff_id=dearer, scheduled_tariff_from=today + timedelta(days=1))
        )
        await ledger.post(
            session,
            contract_id=second,
            kind="ADJUSTMENT",
            amount=Decimal("-2000.00"),
            actor="test:compiled",
            description="below zero",
        )
        # More ledger than a page, in pairs that share a time (the id breaks the tie), with
        # and without microseconds; the balance stays as it was.
        for i in range(24):
            await ledger.post(
                session,
                contract_id=first,
                kind=("CHARGE", "REFUND", "ADJUSTMENT")[i % 3],
                amount=Decimal("-1.00") if i % 2 else Decimal("1.00"),
                actor="test:compiled",
                description=f"entry {i} «ё»",
                at=whole_second + timedelta(hours=i // 2, microseconds=7 * (i // 4 % 2)),
            )
        await session.commit()
    return made


async def _both_ways(
    client: Any,
    app: Any,
    monkeypatch: Any,
    query: str,
    variables: dict[str, Any] | None,
    headers: Any,
) -> tuple[dict[str, Any], dict[str, Any], list[str], bool]:
    """(served answer, executor's answer, statements of the served one, whether one
    statement answered it)."""
    answered: list[str] = []
    original = SqlAnswers.answer

    async def spying(self: SqlAnswers, *args: Any, **kwargs: Any) -> Any:
        found = await original(self, *args, **kwargs)
        if found is not None and found.data is not None:
            answered.append(found.data)
        return found

    monkeypatch.setattr(SqlAnswers, "answer", spying)
    await gql_raw(client, query, variables, headers=headers)  # warm the caches
    answered.clear()
    with count_statements(app.state.engine) as statements:
        served = await gql_raw(client, query, variables, headers=headers)

    async def never(self: SqlAnswers, *args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(SqlAnswers, "answer", never)
    executed = await gql_raw(client, query, variables, headers=headers)
    monkeypatch.setattr(SqlAnswers, "answer", original)
    assert served.status_code == executed.status_code == 200
    return served.json(), executed.json(), list(statements), bool(answered)


async def test_the_overview_from_one_statement_is_the_executors_answer(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given a subscriber with everything the overview shows
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    postgresql = app.state.engine.dialect.name == "postgresql"
    for query, variables in ((OVERVIEW, None), (EVERYTHING, {"n": 5}), (EVERYTHING, {})):
        # when
        served, executed, statements, compiled = await _both_ways(
            client, app, monkeypatch, query, variables, headers
        )
        # then the same answer, on PostgreSQL from one statement that checks the token too
        assert "errors" not in executed, executed
        assert served == executed
        assert compiled is postgresql
        if postgresql:
            assert len(statements) == 1, statements
    # and the answer holds what was made (not two equal empty answers)
    contracts = executed["data"]["me"]["contracts"]
    assert [c["number"] for c in contracts] == made.contract_numbers
    assert executed["data"]["me"]["displayName"].startswith('Тест "в кавычках" \\')
    assert executed["data"]["me"]["bonusAccount"]["points"] == 42
    first, second, third = contracts
    assert (
        len(first["recent"]["edges"]) == 12 and first["recent"]["pageInfo"]["hasNextPage"] is False
    )
    assert first["none"] == {"edges": [], "pageInfo": {"hasNextPage": True, "startCursor": None}}
    assert third["none"]["pageInfo"]["hasNextPage"] is False
    assert first["onlyInfo"]["pageInfo"]["hasNextPage"] is True
    assert first["balance"]["openPromisedPayment"]["dueAt"] == "2027-01-02T03:04:05+00:00"
    stamps = {e["node"]["createdAt"] for e in first["recent"]["edges"]}
    assert "2026-01-02T03:05:05+00:00" in stamps and "2026-01-02T03:04:05.000001+00:00" in stamps
    assert {p["code"] for p in first["tvPackages"]} == {"base", "sport"}
    assert second["balance"]["amount"] == "-765.50" and second["balance"]["daysLeft"] == 0
    assert second["balance"]["availableAmount"] == "0.00"
    assert second["tariff"]["code"] == "home-300" and third["tariff"]["code"] == "home-100"
    assert first["balance"]["daysLeft"] > 0


async def test_what_one_statement_does_not_answer_the_executor_does(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given a subscriber, and staff
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    for query, variables in NOT_COMPILED:
        # when
        served, executed, _, compiled = await _both_ways(
            client, app, monkeypatch, query, variables, headers
        )
        # then the executor answered, errors included
        assert compiled is False, query
        assert served == executed, query
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    served, executed, _, compiled = await _both_ways(
        client, app, monkeypatch, OVERVIEW, None, staff
    )
    assert compiled is False and served == executed == {"data": {"me": None}}
    anonymous, _, _, compiled = await _both_ways(client, app, monkeypatch, OVERVIEW, None, None)
    assert compiled is False and anonymous == {"data": {"me": None}}


async def test_one_statement_answers_only_the_callers_own_subscriber(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given two subscribers
    one = await _rich_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings, contracts=2)
    # when each asks for the overview
    for made in (one, other):
        headers = await sign_in(client, made.login)
        served, executed, _, _ = await _both_ways(client, app, monkeypatch, OVERVIEW, None, headers)
        # then each sees exactly their own contracts
        numbers = [c["number"] for c in served["data"]["me"]["contracts"]]
        assert numbers == made.contract_numbers
        assert served == executed


def test_documents_compile_once_and_refuse_what_they_do_not_know() -> None:
    schema = build_schema(Settings())
    graphql_schema = schema._schema
    plan = compile_document(graphql_schema, parse(OVERVIEW), None)
    assert len(plan.firsts) == 1 and plan.without_caller is None
    assert plan.parameters({}, 100) == {plan.firsts[0].param: 10}
    public = compile_document(graphql_schema, parse('{ tariffs(region: "MOW") { id } }'), None)
    assert public.without_caller is not None and public.parameters({}, 100) == {
        public.arguments[0].param: "MOW"
    }
    with pytest.raises(NotCompiled):  # refused by the field: the executor says why
        compile_document(graphql_schema, parse('{ tariffs(region: "") { id } }'), None)
    for query, _ in NOT_COMPILED[4:8]:
        with pytest.raises(NotCompiled):
            compile_document(graphql_schema, parse(query), None)


# The fields issue 15 added for front ends: every one is declared, so both ways answer it.
FRONT_END_FIELDS = """
{ me { bonusAccount { __typename id points } contracts { __typename id number
  balance { __typename id amount openPromisedPayment { id } }
  promisedPaymentOffer { __typename id available reasons reasonCodes messages }
  tariff { id regionCode region { code name } }
  payments(first: 3) { totalCount edges { cursor } }
  none: payments(first: 0) { totalCount pageInfo { hasNextPage } }
  ledger(first: 5) { totalCount pageInfo { hasNextPage } }
  kinds: ledger(first: 2, kinds: [CHARGE, REFUND]) { totalCount edges { node { kind } } }
} } }
"""


async def test_the_front_end_fields_from_one_statement_are_the_executors(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given a subscriber with payments, ledger entries and an open promise
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    postgresql = app.state.engine.dialect.name == "postgresql"
    public = '{ tariffs(region: "MOW") { id regionCode region { code name } } }'
    answers = []
    for query, who in ((FRONT_END_FIELDS, headers), (public, None)):
        # when
        served, executed, statements, compiled = await _both_ways(
            client, app, monkeypatch, query, None, who
        )
        # then
        assert "errors" not in executed, executed
        assert served == executed
        assert compiled is postgresql
        if postgresql:
            assert len(statements) == 1, statements
        else:  # the executor: one count per connection and arguments, for every contract
            counts = [s for s in statements if "count(*) AS total" in s]
            assert len(counts) == (3 if who else 0), counts
        answers.append(executed["data"])
    mine, catalogue = answers
    first, second, _ = mine["me"]["contracts"]
    assert first["payments"]["totalCount"] == first["none"]["totalCount"] == 12
    assert first["ledger"]["totalCount"] == 25 and first["kinds"]["totalCount"] == 16
    assert second["payments"]["totalCount"] == 0 and second["ledger"]["totalCount"] == 2
    assert first["balance"]["id"] != second["balance"]["id"]
    offer = first["promisedPaymentOffer"]
    assert "PROMISE_OPEN" in offer["reasonCodes"] and offer["reasons"] == offer["reasonCodes"]
    assert first["tariff"]["region"]["code"] == "MOW"
    tariffs = catalogue["tariffs"]
    assert tariffs and all(t["region"]["code"] == t["regionCode"] == "MOW" for t in tariffs)


async def test_the_token_is_checked_inside_the_one_statement(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    """The statement that answers also finds the caller: an ended session reads nothing, a
    temporary password is refused as before, and an idle session's expiry is still pushed."""
    # given a signed-in subscriber whose session was idle for two minutes
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    async with session_factory() as session:
        await begin_write(session)
        await session.execute(
            sa.update(AuthSession)
            .where(AuthSession.subscriber_id == made.id)
            .values(last_used_at=utcnow() - timedelta(minutes=2))
        )
        await session.commit()
    # when the overview is asked for
    served, executed, _, compiled = await _both_ways(
        client, app, monkeypatch, OVERVIEW, None, headers
    )
    # then it is answered, and the session was used just now
    assert served == executed and served["data"]["me"]["contracts"]
    async with session_factory() as session:
        used = await session.scalar(
            sa.select(sa.func.max(AuthSession.last_used_at)).where(
                AuthSession.subscriber_id == made.id
            )
        )
    assert utcnow() - used.replace(tzinfo=UTC) < timedelta(seconds=30)
    # when the session is ended (logout) and the token asked again
    logout = await gql_raw(client, "mutation { logout { ok } }", headers=headers)
    assert logout.json()["data"]["logout"]["ok"] is True
    served, executed, _, compiled = await _both_ways(
        client, app, monkeypatch, OVERVIEW, None, headers
    )
    # then nothing is read, and both ways say the session has ended (SPEC §4)
    assert compiled is False and served == executed
    assert served["data"] == {"me": None}
    assert [e["extensions"]["code"] for e in served["errors"]] == ["UNAUTHENTICATED"]
    # given a subscriber who must change a temporary password
    temporary = await make_subscriber(session_factory, settings, must_change_password=True)
    refused = await sign_in(client, temporary.login)
    served, executed, _, compiled = await _both_ways(
        client, app, monkeypatch, OVERVIEW, None, refused
    )
    # then the overview is refused as before
    assert compiled is False and served == executed
    assert served["errors"][0]["extensions"]["code"] == "PASSWORD_CHANGE_REQUIRED"


LEDGER = """
{ me { contracts {
  ledger(first: 5) { edges { cursor node { id kind amount balanceAfter description reference
    createdAt } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }
  all: ledger(first: 100) { edges { cursor } pageInfo { hasNextPage endCursor } }
  none: ledger(first: 0) { edges { cursor } pageInfo { hasNextPage startCursor endCursor } }
  charges: ledger(kinds: [CHARGE, ADJUSTMENT, CHARGE]) { edges { node { kind } } }
  every: ledger(first: 3, kinds: []) { edges { cursor } }
  period: ledger(from: "2026-01-02T06:00:00+03:00", to: "2026-01-02T06:00:00.000007Z") {
    edges { node { createdAt } } pageInfo { hasNextPage } }
} } }
"""


async def test_the_ledger_from_one_statement_is_the_executors_answer(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given a subscriber whose first contract has more ledger than a page (and its opening
    # balance, posted now, newest)
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    # when the ledger is asked for, with its filters, both ways
    served, executed, statements, compiled = await _both_ways(
        client, app, monkeypatch, LEDGER, None, headers
    )
    # then the same answer, from one statement on PostgreSQL
    assert "errors" not in executed, executed
    assert served == executed
    if app.state.engine.dialect.name == "postgresql":
        assert compiled and len(statements) == 1, statements
    first = executed["data"]["me"]["contracts"][0]
    edges = first["ledger"]["edges"]
    assert [e["node"]["description"] for e in edges] == [
        "opening balance", "entry 23 «ё»", "entry 22 «ё»", "entry 21 «ё»", "entry 20 «ё»"
    ]  # fmt: skip
    assert first["ledger"]["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": edges[0]["cursor"],
        "endCursor": edges[-1]["cursor"],
    }
    assert len(first["all"]["edges"]) == 25 and first["all"]["pageInfo"]["hasNextPage"] is False
    assert first["none"]["pageInfo"] == {
        "hasNextPage": True,
        "startCursor": None,
        "endCursor": None,
    }
    assert {e["node"]["kind"] for e in first["charges"]["edges"]} == {"CHARGE", "ADJUSTMENT"}
    assert len(first["every"]["edges"]) == 3
    assert [e["node"]["createdAt"] for e in first["period"]["edges"]] == [
        "2026-01-02T05:04:05.000007+00:00",
        "2026-01-02T05:04:05.000007+00:00",
        "2026-01-02T04:04:05+00:00",
        "2026-01-02T04:04:05+00:00",
        "2026-01-02T03:04:05+00:00",
        "2026-01-02T03:04:05+00:00",
    ]
    # and the executor goes on from a cursor of the one statement
    after = first["ledger"]["pageInfo"]["endCursor"]
    following = (
        "query($after: String) { me { contracts { ledger(first: 2, after: $after) {"
        " edges { node { description } } pageInfo { hasPreviousPage } } } } }"
    )
    served, executed, _, compiled = await _both_ways(
        client, app, monkeypatch, following, {"after": after}, headers
    )
    assert compiled is False and served == executed
    page = executed["data"]["me"]["contracts"][0]["ledger"]
    assert [e["node"]["description"] for e in page["edges"]] == ["entry 19 «ё»", "entry 18 «ё»"]
    assert page["pageInfo"]["hasPreviousPage"] is True


@pytest.mark.parametrize("page", sorted(PAGES))
async def test_every_page_a_front_end_sends_is_one_statement_and_the_executors_answer(
    page: str, client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    """The pages of the bench (bench/pages.py): on PostgreSQL each is answered by one
    statement that also checks the token, with the executor's answer to the letter."""
    # given a subscriber with everything the pages show
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    # when the page is asked for both ways
    served, executed, statements, compiled = await _both_ways(
        client, app, monkeypatch, PAGES[page][1], None, headers
    )
    # then the same answer, from one statement on PostgreSQL
    assert "errors" not in executed, executed
    assert served == executed
    assert executed["data"], executed
    if app.state.engine.dialect.name == "postgresql":
        assert compiled, page
        assert len(statements) == 1, statements


OFFERS = """
{ me { contracts { number promisedPaymentOffer { __typename available maxAmount termDays
  reasons messages feeTiers { __typename upTo fee } } } } }
"""


async def test_the_promised_payment_offer_from_one_statement_is_the_executors_answer(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    """Every field of the offer (resolvers/promised.py's SQL, declared in resolvers/views.py)
    both ways: the reasons and their texts in order, the fee tiers."""
    # given contracts with an open promise and enough money, below zero, with enough money
    made = await _rich_subscriber(session_factory, settings)
    headers = await sign_in(client, made.login)
    # when
    served, executed, statements, compiled = await _both_ways(
        client, app, monkeypatch, OFFERS, None, headers
    )
    # then the same answer, from one statement on PostgreSQL
    assert "errors" not in executed, executed
    assert served == executed
    if app.state.engine.dialect.name == "postgresql":
        assert compiled and len(statements) == 1, statements
    first, second, third = (c["promisedPaymentOffer"] for c in executed["data"]["me"]["contracts"])
    assert first["reasons"] == ["PROMISE_OPEN", "BALANCE_SUFFICIENT"]
    assert first["messages"] == [
        "A promised payment is open already.",
        "The balance covers the next 30 days of charges.",
    ]
    assert (first["available"], first["maxAmount"], first["termDays"]) == (False, "0.00", 3)
    # below zero, on home-300 (750.00 a month in MOW) from today, no top-ups: up to its fee
    assert (second["available"], second["reasons"], second["messages"]) == (True, [], [])
    assert second["maxAmount"] == "750.00"
    assert third["reasons"] == ["BALANCE_SUFFICIENT"]
    assert first["feeTiers"] == [
        {"__typename": "PromiseFeeTier", "upTo": "100.00", "fee": "0.00"},
        {"__typename": "PromiseFeeTier", "upTo": "500.00", "fee": "10.00"},
        {"__typename": "PromiseFeeTier", "upTo": None, "fee": "25.00"},
    ]


EXPENSES = """
{ me { contracts { number
  year: expenseSummary(from: "2025-12-01", to: "2026-11-30") {
    from to totalCharged totalCredited byCategory { kind total } byMonth { month charged credited }
  }
  short: expenseSummary(from: "2026-02-10", to: "2026-03-05") {
    to byMonth { credited month } byCategory { total kind } totalCredited
  }
} } }
"""


async def test_expense_summaries_from_one_statement_are_the_executors(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    # given entries on the edges of two periods (times with and without microseconds),
    # of several kinds, on two of three contracts
    made = await make_subscriber(session_factory, settings, contracts=3)
    first, second, _ = made.contract_ids
    entries = [
        (first, "TOP_UP", "999.00", datetime(2025, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        (first, "TOP_UP", "1000.00", datetime(2025, 12, 1, tzinfo=UTC)),
        (first, "CHARGE", "-16.13", datetime(2026, 2, 9, 23, 59, 59, tzinfo=UTC)),
        (first, "CHARGE", "-16.13", datetime(2026, 2, 10, tzinfo=UTC)),
        (first, "ADJUSTMENT", "0.30", datetime(2026, 3, 5, 23, 59, 59, 1, tzinfo=UTC)),
        (first, "ADJUSTMENT", "-0.30", datetime(2026, 3, 6, tzinfo=UTC)),
        (first, "PROMISED_PAYMENT", "300.00", datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)),
        (first, "PROMISED_PAYMENT_FEE", "-10.00", datetime(2026, 12, 1, tzinfo=UTC)),
        (second, "REFUND", "5.55", datetime(2026, 2, 28, 12, tzinfo=UTC)),
    ]
    async with session_factory() as session:
        await begin_write(session)
        for contract_id, kind, amount, at in entries:
            await ledger.post(
                session,
                contract_id=contract_id,
                kind=kind,
                amount=Decimal(amount),
                actor="test:expenses",
                at=at,
            )
        await session.commit()
    headers = await sign_in(client, made.login or "")
    # when
    served, executed, statements, compiled = await _both_ways(
        client, app, monkeypatch, EXPENSES, None, headers
    )
    # then the same answer, on PostgreSQL from one statement
    assert "errors" not in executed, executed
    assert served == executed
    if app.state.engine.dialect.name == "postgresql":
        assert compiled and len(statements) == 1, statements
    one, two, three = executed["data"]["me"]["contracts"]
    year = one["year"]
    assert (year["from"], year["to"]) == ("2025-12-01", "2026-11-30")
    assert (year["totalCharged"], year["totalCredited"]) == ("32.56", "1300.30")
    assert year["byCategory"] == [
        {"kind": "TOP_UP", "total": "1000.00"},
        {"kind": "CHARGE", "total": "-32.26"},
        {"kind": "PROMISED_PAYMENT", "total": "300.00"},
        {"kind": "ADJUSTMENT", "total": "0.00"},  # +0.30 and -0.30: listed, as zero
    ]
    assert [m["month"] for m in year["byMonth"]] == [
        "2025-12",
        *(f"2026-{n:02d}" for n in range(1, 12)),
    ]
    assert year["byMonth"][2] == {"month": "2026-02", "charged": "32.26", "credited": "0.00"}
    assert one["short"] == {
        "to": "2026-03-05",
        "byMonth": [
            {"credited": "0.00", "month": "2026-02"},
            {"credited": "0.30", "month": "2026-03"},
        ],
        "byCategory": [
            {"total": "-16.13", "kind": "CHARGE"},
            {"total": "0.30", "kind": "ADJUSTMENT"},
        ],
        "totalCredited": "0.30",
    }
    assert two["short"]["byCategory"] == [{"total": "5.55", "kind": "REFUND"}]
    assert three["year"]["byCategory"] == [] and three["year"]["totalCharged"] == "0.00"
    assert len(three["year"]["byMonth"]) == 12


PAUSES = """
{ me { contracts { number status pause { __typename from to } balance { amount daysLeft }
  socialAccess { __typename active until } } } }
"""


async def test_pauses_and_social_access_from_one_statement_are_the_executors(
    client: Any, app: Any, session_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    """`Contract.pause` and `Contract.socialAccess` (resolvers/pause.py's and
    resolvers/social_access.py's SQL, declared in resolvers/views.py) both ways: a pause
    planned, one running, an ended one not shown; access active, run out, none."""
    # given four contracts: a pause planned; PAUSED (and an ended pause before it);
    # SUSPENDED with access on; SUSPENDED with access run out
    made = await make_subscriber(session_factory, settings, contracts=4)
    planned, paused, social, expired = made.contract_ids
    today = utcnow().date()
    now = utcnow()
    async with session_factory() as session:
        await begin_write(session)
        session.add_all(
            [
                ContractPause(
                    contract_id=planned,
                    starts_on=today + timedelta(days=3),
                    ends_on=today + timedelta(days=9),
                    actor="test",
                ),
                ContractPause(
                    contract_id=paused,
                    starts_on=today - timedelta(days=60),
                    ends_on=today - timedelta(days=50),
                    ended_on=today - timedelta(days=50),
                    status="ENDED",
                    actor="test",
                ),
                ContractPause(
                    contract_id=paused,
                    starts_on=today,
                    ends_on=today + timedelta(days=1),
                    status="RUNNING",
                    actor="test",
                ),
                SocialAccessGrant(
                    contract_id=social,
                    until=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                    actor="test",
                ),
                SocialAccessGrant(
                    contract_id=expired, until=now - timedelta(minutes=1), actor="test"
                ),
            ]
        )
        contracts = table_of(Contract)
        await session.execute(
            sa.update(contracts).where(contracts.c.id == paused).values(status="PAUSED")
        )
        await session.execute(
            sa.update(contracts)
            .where(contracts.c.id.in_([social, expired]))
            .values(status="SUSPENDED")
        )
        await session.commit()
    headers = await sign_in(client, made.login or "")
    # when
    served, executed, statements, compiled = await _both_ways(
        client, app, monkeypatch, PAUSES, None, headers
    )
    # then the same answer, on PostgreSQL from one statement
    assert "errors" not in executed, executed
    assert served == executed
    if app.state.engine.dialect.name == "postgresql":
        assert compiled and len(statements) == 1, statements
    one, two, three, four = executed["data"]["me"]["contracts"]
    assert one["pause"] == {
        "__typename": "ContractPause",
        "from": (today + timedelta(days=3)).isoformat(),
        "to": (today + timedelta(days=9)).isoformat(),
    }
    assert two["status"] == "PAUSED" and two["pause"]["from"] == today.isoformat()
    assert two["balance"] == {"amount": "0.00", "daysLeft": 0}
    assert three["pause"] is None and one["socialAccess"] is None
    assert three["socialAccess"] == {
        "__typename": "SocialAccess",
        "active": True,
        "until": "2030-01-02T03:04:05.000006+00:00",
    }
    assert four["socialAccess"]["active"] is False
