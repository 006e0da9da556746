"""`GET /statements/{number}.csv?from=YYYY-MM-DD&to=YYYY-MM-DD`: a contract's ledger over a
period as a CSV file, for its signed-in owner (or staff), SPEC §3 "Expense control".

| answer | when |
| --- | --- |
| 200 | the file (`Content-Disposition: attachment`) |
| 400 | a date that is not YYYY-MM-DD, only one of the two, `from` after `to`, > 366 days |
| 401 | no live session (`Authorization: Bearer …`, else the session cookie, as /graphql) |
| 404 | no such contract, or not the caller's: one answer, so numbers cannot be probed |

Both dates omitted: the last 30 days (today in UTC included). Days are UTC days.

The file is made for a spreadsheet opened in Russia: UTF-8 with a byte order mark (Excel
then reads Cyrillic right), `;` between cells and a decimal comma in amounts (a Russian
Excel reads "-30,05" as a number and "30.05" as a date), CRLF line ends. Columns:
date and time (ISO 8601, UTC), kind (a ledger kind code), description, amount (signed),
balance after, reference. A text cell starting with = + - @ (or a tab or a carriage return)
gets a leading single quote, so that it is never taken for a formula (CSV injection). At
most `STATEMENT_MAX_ROWS` rows (the oldest of the period); if there were more, the header
`X-Statement-Truncated: true` says so.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from core.db import RequestReader
from core.errors import DomainError
from kabinet.web.auth import request_principal
from resolvers.accounts import contracts_by_number, may_see_contract
from resolvers.expenses import STATEMENT_MAX_ROWS, check_period, statement_rows

DEFAULT_PERIOD_DAYS = 30
DELIMITER = ";"
BOM = "\ufeff"
HEADER = ("Date and time (UTC)", "Kind", "Description", "Amount", "Balance after", "Reference")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class BadPeriod(Exception):
    pass


def _text_cell(value: str | None) -> str:
    text = value or ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _money_cell(value: Decimal) -> str:
    return f"{value:.2f}".replace(".", ",")


def _parse_day(value: str) -> date:
    if not _DATE.match(value):
        raise BadPeriod("Dates are YYYY-MM-DD.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadPeriod("Dates are YYYY-MM-DD.") from None


def requested_period(query: Any, *, today: date | None = None) -> tuple[date, date]:
    """`from` and `to` of the query string, or the last 30 days when both are absent."""
    since, until = query.get("from"), query.get("to")
    if since is None and until is None:
        until = today or datetime.now(UTC).date()
        return until - timedelta(days=DEFAULT_PERIOD_DAYS - 1), until
    if since is None or until is None:
        raise BadPeriod("Give both `from` and `to`, or neither for the last 30 days.")
    period = _parse_day(since), _parse_day(until)
    try:
        check_period(*period)
    except DomainError as error:
        raise BadPeriod(error.message) from None
    return period


def render_csv(rows: list[Any]) -> bytes:
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, delimiter=DELIMITER, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(
            (
                row.created_at.astimezone(UTC).isoformat(timespec="seconds"),
                _text_cell(row.kind),
                _text_cell(row.description),
                _money_cell(row.amount),
                _money_cell(row.balance_after),
                _text_cell(row.reference),
            )
        )
    return buffer.getvalue().encode("utf-8")


def _plain(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(
        message + "\n", status_code=status, headers={**_NO_STORE, **(headers or {})}
    )


async def download_statement(request: Request) -> Response:
    reader = RequestReader(request.app.state.engine)
    try:
        principal = await request_principal(request, reader)
        if principal is None:
            return _plain(401, "Sign in first.", {"WWW-Authenticate": "Bearer"})
        number = request.path_params["number"]
        contract = (await contracts_by_number(reader, [number])).get(number)
        if contract is None or not may_see_contract(principal, contract):
            return _plain(404, "No such contract.")
        try:
            since, until = requested_period(request.query_params)
        except BadPeriod as error:
            return _plain(400, str(error))
        rows = await statement_rows(
            reader,
            contract_id=contract.id,
            since=since,
            until=until,
            limit=STATEMENT_MAX_ROWS + 1,
        )
    finally:
        await reader.close()
    headers = {
        **_NO_STORE,
        "Content-Disposition": (
            f'attachment; filename="statement-{contract.number}-{since}-{until}.csv"'
        ),
    }
    if len(rows) > STATEMENT_MAX_ROWS:
        rows = rows[:STATEMENT_MAX_ROWS]
        headers["X-Statement-Truncated"] = "true"
    return Response(render_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)


def statement_routes() -> list[Route]:
    return [Route("/statements/{number}.csv", download_statement, methods=["GET"])]
