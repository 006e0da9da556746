"""Custom scalars: money is a Decimal serialised as a string with two places ("1234.50");
days and times are Strawberry's Date and DateTime, described as Kabinet writes them.

As input Money has one form only (SPEC §4): a JSON string of ASCII digits, an optional
leading `-`, and at most two decimals after a point. Numbers, exponents, underscores,
spaces and non-ASCII digits (which Python's Decimal would all take) are refused, each with
a message that says what to send.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime
from decimal import Decimal
from typing import NewType

import strawberry
from graphql import GraphQLError
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

Money = NewType("Money", Decimal)
MAX_MONEY_LENGTH = 20
MONEY_FORM = re.compile(r"-?[0-9]+(?:\.[0-9]{1,2})?", re.ASCII)
MONEY_DESCRIPTION = (
    'An amount of money in roubles as a decimal string, "1234.50". As input: a JSON string'
    ' of ASCII digits with an optional leading "-" and at most two decimals after a point'
    ' ("1234.50", "15", "-3.5"); numbers, exponents, underscores, spaces and non-ASCII'
    " digits are refused."
)
RFC_3339 = "https://datatracker.ietf.org/doc/html/rfc3339#section-5.6"
DATE_DESCRIPTION = (
    'A calendar day, "YYYY-MM-DD" (RFC 3339 full-date, e.g. "2025-03-31"). Kabinet counts'
    " days in UTC: the billing day, period bounds and free-until days are UTC days."
)
DATE_TIME_DESCRIPTION = (
    'An instant, RFC 3339 / ISO 8601 with its offset. Kabinet writes it in UTC, "+00:00",'
    ' with microseconds when there are any: "2025-03-31T09:15:00+00:00",'
    ' "2025-03-31T09:15:00.250000+00:00". As input give the offset too ("Z" or "+03:00");'
    " a time without one is refused where it is an argument (`Contract.ledger`)."
)
_FORM = 'Send money as a string of digits such as "1234.50"'


def serialize_money(value: Decimal) -> str:
    return f"{value:.2f}"


def _refusal(value: str) -> str:
    """Why a string is not Money, in the client's terms."""
    if value != value.strip():
        return f"{_FORM}, without spaces."
    if any(ch.isdigit() and not ch.isascii() for ch in value):
        return f"{_FORM}: only the ASCII digits 0-9."
    if "_" in value:
        return f"{_FORM}, without underscores."
    if "e" in value.lower():
        return f"{_FORM}, without an exponent."
    if re.fullmatch(r"-?[0-9]+\.[0-9]{3,}", value, re.ASCII):
        return "Money has at most two decimal places."
    return f"{_FORM}."


def parse_money(value: object) -> Decimal:
    if not isinstance(value, str):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        raise GraphQLError(f"{_FORM}, not a JSON number." if number else f"{_FORM}.")
    if len(value) > MAX_MONEY_LENGTH:
        raise GraphQLError("Money value is too long.")
    if MONEY_FORM.fullmatch(value) is None:
        raise GraphQLError(_refusal(value))
    return Decimal(value).quantize(Decimal("0.01"))


SCALAR_MAP: dict[object, ScalarDefinition] = {
    Money: strawberry.scalar(
        name="Money",
        description=MONEY_DESCRIPTION,
        serialize=serialize_money,
        parse_value=parse_money,
    ),
    # Strawberry's own Date and DateTime (same parsing and serialising), with our
    # descriptions instead of "Date (isoformat)" and the specification they follow.
    date: dataclasses.replace(
        DateDefinition, description=DATE_DESCRIPTION, specified_by_url=RFC_3339
    ),
    datetime: dataclasses.replace(
        DateTimeDefinition, description=DATE_TIME_DESCRIPTION, specified_by_url=RFC_3339
    ),
}
