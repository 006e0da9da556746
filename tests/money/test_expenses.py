"""Expense control: the ledger page by page, the summary by kind and month, the CSV statement."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from auth.sessions import COOKIE_NAME
from core.db import RequestReader, begin_write
from core.errors import DomainError, ErrorCode
from core.settings import Settings
from core.views import Link, value_label
from kabinet.web.statements import HEADER, statement_routes
from models import LedgerEntry
from resolvers import ledger
from resolvers.expenses import statement_rows
from resolvers.loaders import Loaders
from resolvers.pagination import Page, encode_cursor
from resolvers.views import VIEWS
from tests.factories import make_staff, make_subscriber, sign_in
from tests.money.test_ledger import assert_ledger_balanced


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


async def post_entries(
    session_factory: Any, contract_id: int, entries: list[tuple[str, str, datetime]], **kw: Any
) -> list[int]:
    """Posts (kind, amount, at) entries through the ledger; returns their ids."""
    ids = []
    async with session_factory() as session:
        await begin_write(session)
        for kind, amount, when in entries:
            posted = await ledger.post(
                session,
                contract_id=contract_id,
                kind=kind,
                amount=Decimal(amount),
                actor="test",
                at=when,
                **kw,
            )
            ids.append(posted.entry_id)
        await session.commit()
    return ids


@pytest.fixture
async def reader(engine: AsyncEngine) -> AsyncIterator[RequestReader]:
    request_reader = RequestReader(engine)
    yield request_reader
    await request_reader.close()


async def ledger_page(
    reader: RequestReader,
    *,
    contract_id: int,
    first: int | None,
    after: str | None,
    kinds: list[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> Page[Any]:
    """A page of `Contract.ledger` as the executor reads it (resolvers/views.py declares
    it): DomainError for a value refused."""
    loaders = Loaders(reader, Settings())
    page = loaders.page(
        "Contract",
        "ledger",
        first=first,
        after=after,
        max_page_size=100,
        kinds=kinds,
        **{"from": since, "to": until},
    )
    return await page.load(contract_id)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    kind: str
    total: Decimal


@dataclass(frozen=True, slots=True)
class MonthTotal:
    month: str
    charged: Decimal
    credited: Decimal


@dataclass(frozen=True, slots=True)
class Summary:
    by_category: list[CategoryTotal]
    by_month: list[MonthTotal]
    total_charged: Decimal
    total_credited: Decimal


async def expense_summary(
    reader: RequestReader, settings: Any, *, contract_id: int, since: date, until: date
) -> Summary:
    """`Contract.expenseSummary(from, to)` as the executor reads it: the link's check, then
    the loaders made from the declarations (resolvers/views.py), the period passed on to
    the lists from the summary's row."""
    link = VIEWS["Contract"].fields["expenseSummary"]
    assert isinstance(link, Link) and link.check is not None
    period = {"from": since, "to": until}
    link.check(period)
    loaders = Loaders(reader, settings)
    row = await loaders.linked("Contract", "expenseSummary", **period).load(contract_id)

    async def listed(field: str) -> list[Any]:
        nested = VIEWS["ExpenseSummary"].fields[field]
        assert isinstance(nested, Link)
        given = {name: getattr(row, column) for name, column in nested.from_parent}
        rows = await loaders.linked("ExpenseSummary", field, **given).load(row.contract_id)
        return [
            {
                name: getattr(r, value_label(nested.target, name))
                for name in VIEWS[nested.target].values
            }
            for r in rows
        ]

    def value(name: str) -> Any:
        return getattr(row, value_label("ExpenseSummary", name))

    assert (value("from"), value("to")) == (since, until)
    return Summary(
        by_category=[CategoryTotal(**c) for c in await listed("byCategory")],
        by_month=[MonthTotal(**m) for m in await listed("byMonth")],
        total_charged=value("totalCharged"),
        total_credited=value("totalCredited"),
    )


async def all_pages(reader: RequestReader, contract_id: int, first: int, **kw: Any) -> list[Any]:
    pages, after = [], None
    while True:
        page = await ledger_page(reader, contract_id=contract_id, first=first, after=after, **kw)
        pages.append(page)
        if not page.has_next_page:
            return pages
        after = page.cursors[-1]


def page_kw(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"kinds": None, "since": None, "until": None}
    values.update(overrides)
    return values


# -- Contract.ledger ------------------------------------------------------------------------


async def test_pages_cover_every_entry_once_when_entries_share_a_time(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    # given: 8 entries, three of them at one instant and two at another, and a neighbour's
    mine = await make_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings)
    contract_id = mine.contract_ids[0]
    t1, t2, t3 = at(2024, 3, 1, 10), at(2024, 3, 2, 10), at(2024, 3, 3, 10)
    ids = await post_entries(
        session_factory,
        contract_id,
        [
            ("TOP_UP", "500.00", t1),
            ("CHARGE", "-10.00", t2),
            ("CHARGE", "-11.00", t2),
            ("CHARGE", "-12.00", t2),
            ("ADJUSTMENT", "5.00", t1),
            ("CHARGE", "-13.00", t3),
            ("CHARGE", "-14.00", t3),
            ("REFUND", "1.00", t3),
        ],
    )
    await post_entries(session_factory, other.contract_ids[0], [("TOP_UP", "7.00", t2)])
    when = dict(zip(ids, [t1, t2, t2, t2, t1, t3, t3, t3], strict=True))
    expected = sorted(ids, key=lambda i: (when[i], i), reverse=True)

    # when: pages of 3, then of 1
    for size in (3, 1):
        pages = await all_pages(reader, contract_id, size, **page_kw())

        # then: newest first, no duplicates, no gaps, the page flags right
        seen = [row.id for page in pages for row in page.items]
        assert seen == expected
        assert len(pages) == -(-len(ids) // size)
        assert [p.has_previous_page for p in pages] == [False] + [True] * (len(pages) - 1)
        assert all(len(p.cursors) == len(p.items) for p in pages)
    await assert_ledger_balanced(session_factory)


async def test_a_page_is_stable_when_newer_entries_arrive(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    # given: the first page was read
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    ids = await post_entries(
        session_factory,
        contract_id,
        [("TOP_UP", "1.00", at(2024, 3, 1, 10, n)) for n in range(4)],
    )
    first = await ledger_page(reader, contract_id=contract_id, first=2, after=None, **page_kw())
    await reader.release()

    # when: a newer entry is posted, then the next page is read
    await post_entries(session_factory, contract_id, [("CHARGE", "-1.00", at(2024, 3, 5))])
    second = await ledger_page(
        reader, contract_id=contract_id, first=2, after=first.cursors[-1], **page_kw()
    )

    # then: the next page goes on where the first stopped
    assert [r.id for r in first.items] == [ids[3], ids[2]]
    assert [r.id for r in second.items] == [ids[1], ids[0]]
    assert second.has_next_page is False


async def test_rows_carry_the_entry(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await post_entries(
        session_factory,
        contract_id,
        [("TOP_UP", "100.10", at(2024, 3, 1, 10, 0, 0, 123456))],
        description="Пополнение картой",
        reference="pay-1",
    )

    page = await ledger_page(reader, contract_id=contract_id, first=5, after=None, **page_kw())

    (row,) = page.items
    assert row.kind == "TOP_UP" and row.amount == Decimal("100.10")
    assert row.balance_after == Decimal("100.10") and row.reference == "pay-1"
    assert row.description == "Пополнение картой" and row.actor == "test"
    assert row.created_at == at(2024, 3, 1, 10, 0, 0, 123456)
    assert page.has_next_page is False and page.has_previous_page is False


async def test_the_kinds_filter(session_factory: Any, settings: Any, reader: RequestReader) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    ids = await post_entries(
        session_factory,
        contract_id,
        [
            ("TOP_UP", "100.00", at(2024, 3, 1)),
            ("CHARGE", "-3.00", at(2024, 3, 2)),
            ("ADJUSTMENT", "-2.00", at(2024, 3, 3)),
            ("CHARGE", "-3.00", at(2024, 3, 4)),
            ("TOP_UP", "50.00", at(2024, 3, 5)),
        ],
    )

    # when
    pages = await all_pages(
        reader, contract_id, 1, **page_kw(kinds=["TOP_UP", "ADJUSTMENT", "TOP_UP"])
    )
    charges = await ledger_page(
        reader, contract_id=contract_id, first=10, after=None, **page_kw(kinds=["CHARGE"])
    )
    everything = await ledger_page(
        reader, contract_id=contract_id, first=10, after=None, **page_kw(kinds=[])
    )

    # then
    assert [r.id for p in pages for r in p.items] == [ids[4], ids[2], ids[0]]
    assert [r.id for r in charges.items] == [ids[3], ids[1]]
    assert len(everything.items) == 5
    with pytest.raises(DomainError) as caught:
        await ledger_page(
            reader, contract_id=contract_id, first=10, after=None, **page_kw(kinds=["GIFT"])
        )
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, "kinds")


async def test_the_period_filter_is_half_open(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    ids = await post_entries(
        session_factory,
        contract_id,
        [
            ("TOP_UP", "100.00", at(2024, 2, 29, 23, 59, 59)),
            ("CHARGE", "-1.00", at(2024, 3, 1)),
            ("CHARGE", "-1.00", at(2024, 3, 15, 12)),
            ("CHARGE", "-1.00", at(2024, 4, 1)),
        ],
    )

    # when
    march = await all_pages(
        reader, contract_id, 1, **page_kw(since=at(2024, 3, 1), until=at(2024, 4, 1))
    )
    since_only = await ledger_page(
        reader, contract_id=contract_id, first=10, after=None, **page_kw(since=at(2024, 3, 2))
    )
    until_only = await ledger_page(
        reader, contract_id=contract_id, first=10, after=None, **page_kw(until=at(2024, 3, 1))
    )

    # then
    assert [r.id for p in march for r in p.items] == [ids[2], ids[1]]
    assert [r.id for r in since_only.items] == [ids[3], ids[2]]
    assert [r.id for r in until_only.items] == [ids[0]]


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (at(2024, 3, 2), at(2024, 3, 1), "from"),
        (at(2024, 3, 1), at(2024, 3, 1), "from"),
        (datetime(2024, 3, 1), None, "from"),
        (None, datetime(2024, 3, 1), "to"),
    ],
)
async def test_a_bad_period_is_invalid(
    session_factory: Any,
    settings: Any,
    reader: RequestReader,
    since: datetime | None,
    until: datetime | None,
    field: str,
) -> None:
    made = await make_subscriber(session_factory, settings)
    with pytest.raises(DomainError) as caught:
        await ledger_page(
            reader,
            contract_id=made.contract_ids[0],
            first=10,
            after=None,
            **page_kw(since=since, until=until),
        )
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, field)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        encode_cursor("2024-03-01T10:00:00+00:00"),  # one part
        encode_cursor("2024-03-01T10:00:00+00:00", 1, 2),  # three parts
        encode_cursor("yesterday", 5),
        encode_cursor("2024-03-01T10:00:00", 5),  # no zone
        encode_cursor("2024-03-01T10:00:00+00:00", "x5"),
        encode_cursor("2024-03-01T10:00:00+00:00", "-5"),
        encode_cursor("2024-03-01T10:00:00+00:00", "9" * 19),
        "A" * 300,
    ],
)
async def test_a_bad_cursor_is_invalid(
    session_factory: Any, settings: Any, reader: RequestReader, cursor: str
) -> None:
    made = await make_subscriber(session_factory, settings)
    with pytest.raises(DomainError) as caught:
        await ledger_page(
            reader, contract_id=made.contract_ids[0], first=10, after=cursor, **page_kw()
        )
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, "after")


async def test_first_is_at_most_100(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    # given: 101 entries
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    base = at(2024, 3, 1)
    await post_entries(
        session_factory,
        contract_id,
        [("TOP_UP", "1.00", base + timedelta(minutes=n)) for n in range(101)],
    )

    # when / then
    for first in (101, -1):
        with pytest.raises(DomainError) as caught:
            await ledger_page(reader, contract_id=contract_id, first=first, after=None, **page_kw())
        assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, "first")
    hundred = await ledger_page(reader, contract_id=contract_id, first=100, after=None, **page_kw())
    assert len(hundred.items) == 100 and hundred.has_next_page is True
    default = await ledger_page(
        reader, contract_id=contract_id, first=None, after=None, **page_kw()
    )
    assert len(default.items) == 20
    none = await ledger_page(reader, contract_id=contract_id, first=0, after=None, **page_kw())
    assert none.items == [] and none.has_next_page is True


# -- expense_summary ------------------------------------------------------------------------


async def test_the_summary_by_kind_and_by_month(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    # given: entries on both sides of the turn of January, and some outside the period
    made = await make_subscriber(session_factory, settings)
    other = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await post_entries(
        session_factory,
        contract_id,
        [
            ("TOP_UP", "999.00", at(2023, 12, 31, 23, 59, 59)),  # before the period
            ("TOP_UP", "1000.00", at(2024, 1, 10, 9)),
            ("CHARGE", "-16.13", at(2024, 1, 30)),
            ("CHARGE", "-16.13", at(2024, 1, 31, 23, 59, 59)),
            ("ADJUSTMENT", "-0.10", at(2024, 1, 31, 12)),
            ("CHARGE", "-17.24", at(2024, 2, 1)),
            ("CHARGE", "-17.24", at(2024, 2, 2)),
            ("PROMISED_PAYMENT", "300.00", at(2024, 2, 3)),
            ("PROMISED_PAYMENT_FEE", "-10.00", at(2024, 2, 3)),
            ("ADJUSTMENT", "0.30", at(2024, 2, 4)),
            ("TOP_UP", "50.00", at(2024, 3, 1)),  # after the period
        ],
    )
    await post_entries(
        session_factory, other.contract_ids[0], [("TOP_UP", "5.00", at(2024, 1, 15))]
    )

    # when
    summary = await expense_summary(
        reader, settings, contract_id=contract_id, since=date(2024, 1, 1), until=date(2024, 2, 29)
    )

    # then
    assert summary.by_category == [
        CategoryTotal("TOP_UP", Decimal("1000.00")),
        CategoryTotal("CHARGE", Decimal("-66.74")),
        CategoryTotal("PROMISED_PAYMENT", Decimal("300.00")),
        CategoryTotal("PROMISED_PAYMENT_FEE", Decimal("-10.00")),
        CategoryTotal("ADJUSTMENT", Decimal("0.20")),
    ]
    assert summary.by_month == [
        MonthTotal("2024-01", Decimal("32.36"), Decimal("1000.00")),
        MonthTotal("2024-02", Decimal("44.48"), Decimal("300.30")),
    ]
    assert summary.total_charged == Decimal("76.84")
    assert summary.total_credited == Decimal("1300.30")
    assert all(total.total.as_tuple().exponent == -2 for total in summary.by_category)
    await assert_ledger_balanced(session_factory)


async def test_the_summary_has_every_month_and_days_are_inclusive(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    # given: entries on the first and the last day of a period of three months
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    await post_entries(
        session_factory,
        contract_id,
        [
            ("TOP_UP", "10.00", at(2024, 1, 15)),
            ("CHARGE", "-1.00", at(2024, 3, 15, 23, 59, 59)),
            ("CHARGE", "-2.00", at(2024, 3, 16)),  # the day after
        ],
    )

    # when
    summary = await expense_summary(
        reader, settings, contract_id=contract_id, since=date(2024, 1, 15), until=date(2024, 3, 15)
    )
    empty = await expense_summary(
        reader, settings, contract_id=contract_id, since=date(2023, 12, 1), until=date(2023, 12, 1)
    )

    # then
    zero = Decimal("0.00")
    assert summary.by_month == [
        MonthTotal("2024-01", zero, Decimal("10.00")),
        MonthTotal("2024-02", zero, zero),
        MonthTotal("2024-03", Decimal("1.00"), zero),
    ]
    assert empty.by_category == [] and empty.by_month == [MonthTotal("2023-12", zero, zero)]
    assert (empty.total_charged, empty.total_credited) == (zero, zero)


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        (date(2024, 3, 2), date(2024, 3, 1), "from"),
        (date(2023, 1, 1), date(2024, 1, 2), "to"),  # 367 days
        (date(2024, 1, 1), date(2025, 1, 1), "to"),  # 367 days, over a leap year
    ],
)
async def test_a_bad_summary_period_is_invalid(
    session_factory: Any, settings: Any, reader: RequestReader, since: date, until: date, field: str
) -> None:
    made = await make_subscriber(session_factory, settings)
    with pytest.raises(DomainError) as caught:
        await expense_summary(
            reader, settings, contract_id=made.contract_ids[0], since=since, until=until
        )
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID, field)


async def test_a_period_of_366_days_is_allowed(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    made = await make_subscriber(session_factory, settings)
    summary = await expense_summary(
        reader,
        settings,
        contract_id=made.contract_ids[0],
        since=date(2024, 1, 1),
        until=date(2024, 12, 31),
    )
    assert len(summary.by_month) == 12


async def test_statement_rows_oldest_first_and_capped(
    session_factory: Any, settings: Any, reader: RequestReader
) -> None:
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    ids = await post_entries(
        session_factory,
        contract_id,
        [
            ("TOP_UP", "10.00", at(2024, 1, 2)),
            ("CHARGE", "-1.00", at(2024, 1, 1)),
            ("CHARGE", "-1.00", at(2024, 1, 1)),
            ("CHARGE", "-1.00", at(2024, 1, 4)),
        ],
    )
    rows = await statement_rows(
        reader, contract_id=contract_id, since=date(2024, 1, 1), until=date(2024, 1, 3)
    )
    assert [r.id for r in rows] == [ids[1], ids[2], ids[0]]
    two = await statement_rows(
        reader, contract_id=contract_id, since=date(2024, 1, 1), until=date(2024, 1, 3), limit=2
    )
    assert [r.id for r in two] == [ids[1], ids[2]]


# -- GET /statements/<number>.csv ----------------------------------------------------------


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the statement route (mounted here until create_app mounts it)."""
    if not any(getattr(r, "path", None) == "/statements/{number}.csv" for r in app.routes):
        app.router.routes.extend(statement_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def parse_csv(response: httpx.Response) -> list[list[str]]:
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline=""), delimiter=";"))


async def test_the_owner_downloads_the_statement(
    session_factory: Any, settings: Any, http: httpx.AsyncClient
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    number, contract_id = made.contract_numbers[0], made.contract_ids[0]
    await post_entries(
        session_factory,
        contract_id,
        [("TOP_UP", "1500.00", at(2024, 5, 1, 8, 30, 15, 999))],
        description="Пополнение; картой «Мир»",
        reference="pay-77",
    )
    await post_entries(
        session_factory,
        contract_id,
        [
            ("CHARGE", "-16.13", at(2024, 5, 2)),
            ("CHARGE", "-16.13", at(2024, 6, 1)),  # after the period
        ],
    )
    headers = await sign_in(http, made.login or "")

    # when
    response = await http.get(
        f"/statements/{number}.csv",
        params={"from": "2024-05-01", "to": "2024-05-31"},
        headers=headers,
    )

    # then
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="statement-{number}-2024-05-01-2024-05-31.csv"'
    )
    assert response.headers["cache-control"] == "no-store"
    assert "x-statement-truncated" not in response.headers
    assert response.content.startswith("\ufeff".encode())
    assert b"\r\n" in response.content
    assert parse_csv(response) == [
        list(HEADER),
        [
            "2024-05-01T08:30:15+00:00",
            "TOP_UP",
            "Пополнение; картой «Мир»",
            "1500,00",
            "1500,00",
            "pay-77",
        ],
        ["2024-05-02T00:00:00+00:00", "CHARGE", "", "-16,13", "1483,87", ""],
    ]
    await assert_ledger_balanced(session_factory)


async def test_the_session_cookie_works_as_well(
    session_factory: Any, settings: Any, http: httpx.AsyncClient
) -> None:
    made = await make_subscriber(session_factory, settings)
    token = (await sign_in(http, made.login or ""))["Authorization"].split(" ", 1)[1]
    response = await http.get(
        f"/statements/{made.contract_numbers[0]}.csv",
        params={"from": "2024-05-01", "to": "2024-05-31"},
        headers={"Cookie": f"{COOKIE_NAME}={token}"},
    )
    assert response.status_code == 200, response.text
    assert parse_csv(response) == [list(HEADER)]


async def test_the_default_period_is_the_last_30_days(
    session_factory: Any, settings: Any, http: httpx.AsyncClient
) -> None:
    # given
    made = await make_subscriber(session_factory, settings)
    now = datetime.now(UTC)
    await post_entries(
        session_factory,
        made.contract_ids[0],
        [("TOP_UP", "100.00", now - timedelta(days=40)), ("CHARGE", "-5.00", now)],
    )
    headers = await sign_in(http, made.login or "")

    # when
    response = await http.get(f"/statements/{made.contract_numbers[0]}.csv", headers=headers)

    # then
    today = now.date()
    assert response.status_code == 200, response.text
    start = today - timedelta(days=29)
    assert f"-{start}-{today}.csv" in response.headers["content-disposition"]
    rows = parse_csv(response)
    assert len(rows) == 2 and rows[1][1:4] == ["CHARGE", "", "-5,00"]


async def test_staff_download_any_statement(
    session_factory: Any, settings: Any, http: httpx.AsyncClient
) -> None:
    made = await make_subscriber(session_factory, settings)
    await post_entries(session_factory, made.contract_ids[0], [("TOP_UP", "1.00", at(2024, 5, 1))])
    _, username, password = await make_staff(session_factory, settings)
    headers = await sign_in(http, username, password)
    response = await http.get(
        f"/statements/{made.contract_numbers[0]}.csv",
        params={"from": "2024-05-01", "to": "2024-05-01"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert len(parse_csv(response)) == 2


async def test_another_subscribers_statement_is_not_found(
    session_factory: Any, settings: Any, http: httpx.AsyncClient
) -> None:
    # given
    owner = await make_subscriber(session_factory, settings)
    intruder = await make_subscriber(session_factory, settings)
    await post_entries(session_factory, owner.contract_ids[0], [("TOP_UP", "1.00", at(2024, 5, 1))])
    headers = await sign_in(http, intruder.login or "")
    params = {"from": "2024-05-01", "to": "2024-05-31"}

    # when
    theirs = await http.get(
        f"/statements/{owner.contract_numbers[0]}.csv", params=params, headers=headers
    )
    missing = await http.get("/statements/000000000000.csv", params=params, headers=headers)
    too_long = await http.get(f"/statements/{'7' * 40}.csv", params=params, headers=headers)

    # then: one answer for "not yours" and "does not exist"
    assert theirs.status_code == missing.status_code == too_long.status_code == 404
    assert theirs.content == missing.content == too_long.content
    assert "1,00" not in theirs.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": f"{COOKIE_NAME}=not-a-token"},
    ],
)
async def test_signed_out_is_401(
    session_factory: Any, settings: Any, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    made = await make_subscriber(session_factory, settings)
    response = await http.get(f"/statements/{made.contract_numbers[0]}.csv", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2024-05-01"},
        {"to": "2024-05-01"},
        {"from": "", "to": ""},
        {"from": "2024-05-32", "to": "2024-06-01"},
        {"from": "01.05.2024", "to": "31.05.2024"},
        {"from": "20240501", "to": "20240531"},
        {"from": "2024-05-01T00:00:00", "to": "2024-05-31"},
        {"from": "2024-06-01", "to": "2024-05-01"},
        {"from": "2024-01-01", "to": "2025-01-01"},
    ],
)
async def test_bad_dates_are_400(
    session_factory: Any, settings: Any, http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    made = await make_subscriber(session_factory, settings)
    headers = await sign_in(http, made.login or "")
    response = await http.get(
        f"/statements/{made.contract_numbers[0]}.csv", params=params, headers=headers
    )
    assert response.status_code == 400, response.text


async def test_cells_that_look_like_formulas_are_escaped(
    session_factory: Any, settings: Any, http: httpx.AsyncClient
) -> None:
    # given: descriptions and references that a spreadsheet would run
    made = await make_subscriber(session_factory, settings)
    contract_id = made.contract_ids[0]
    dangerous = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
    async with session_factory() as session:
        await begin_write(session)
        for n, text in enumerate(dangerous):
            await ledger.post(
                session,
                contract_id=contract_id,
                kind="ADJUSTMENT",
                amount=Decimal("-1.00"),
                actor="test",
                description=text,
                reference=text[:20],
                at=at(2024, 5, 1, n),
            )
        await session.commit()
    headers = await sign_in(http, made.login or "")

    # when
    response = await http.get(
        f"/statements/{made.contract_numbers[0]}.csv",
        params={"from": "2024-05-01", "to": "2024-05-01"},
        headers=headers,
    )

    # then: text cells get a leading quote; the (negative) amounts stay numbers
    assert response.status_code == 200
    rows = parse_csv(response)[1:]
    assert [row[2] for row in rows] == ["'" + text for text in dangerous]
    assert [row[5] for row in rows] == ["'" + text[:20] for text in dangerous]
    assert [row[3] for row in rows] == ["-1,00"] * len(dangerous)
    async with session_factory() as session:
        stored = (await session.execute(sa.select(col(LedgerEntry.description)))).scalars().all()
    assert sorted(stored) == sorted(dangerous)  # escaped in the file only
    await assert_ledger_balanced(session_factory)
