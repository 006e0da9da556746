"""Custom scalars: money is a Decimal serialised as a string with two places ("1234.50")."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NewType

import strawberry
from graphql import GraphQLError

Money = NewType("Money", Decimal)
MAX_MONEY_LENGTH = 20


def serialize_money(value: Decimal) -> str:
    return f"{value:.2f}"


def parse_money(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise GraphQLError('Money is a decimal string such as "1234.50".')
    text = str(value).strip()
    if len(text) > MAX_MONEY_LENGTH:
        raise GraphQLError("Money value is too long.")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise GraphQLError('Money is a decimal string such as "1234.50".') from None
    if not amount.is_finite():
        raise GraphQLError("Money must be a finite number.")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise GraphQLError("Money has at most two decimal places.")
    return amount.quantize(Decimal("0.01"))


SCALAR_MAP = {
    Money: strawberry.scalar(
        name="Money",
        description='An amount of money in roubles as a decimal string: "1234.50".',
        serialize=serialize_money,
        parse_value=parse_money,
    )
}
