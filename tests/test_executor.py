"""The short ways through execution (schema/__init__.py KabinetSchema, schema/executor.py)
answer exactly what Strawberry's own way answers: data, errors, messages and paths."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry

from schema import KabinetSchema
from schema.executor import lean_resolvers, plain_fields
from schema.scalars import SCALAR_MAP, Money


@strawberry.enum
class Colour(Enum):
    RED = "RED"
    GREEN = "GREEN"


@strawberry.type
class Item:
    name: str
    note: str | None
    colour: Colour
    price: Money
    secret: strawberry.Private[str]

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()

    @strawberry.field
    async def tagged(self, info: strawberry.Info) -> str:
        return f"{info.context['tag']}:{self.name}:{info.path.key}"

    @strawberry.field
    def repeat(self, times: int = 2) -> str:
        return self.name * times

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("resolver failed")


def _items() -> list[Item]:
    return [
        Item(name="a", note=None, colour=Colour.RED, price=Money(Decimal("1.5")), secret="x"),
        # a null where the schema promises a string: the ordinary error, from either way
        Item(name=None, note="n", colour=Colour.GREEN, price=Money(Decimal(2)), secret="y"),  # type: ignore[arg-type]
    ]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return list(_items())

    @strawberry.field
    def wrong_colour(self) -> Colour | None:
        return "PURPLE"  # type: ignore[return-value]


QUERIES = [
    "{ items { name note colour price shout tagged repeat(times: 3) } }",
    "{ items { name } }",
    "{ items { broken } }",
    "{ items { ... on Item { name colour } } wrongColour }",
    "query($t: Int!) { items { repeat(times: $t) note } }",
]


def _schemas() -> tuple[strawberry.Schema, KabinetSchema]:
    config = strawberry.schema.config.StrawberryConfig(scalar_map=SCALAR_MAP)
    plain = strawberry.Schema(query=Query, config=config)
    short = KabinetSchema(query=Query, config=config, max_tokens=1000)
    return plain, short


def _shape(result: Any) -> tuple[Any, Any]:
    errors = sorted((error.message, tuple(error.path or ())) for error in result.errors or [])
    return result.data, errors


async def test_the_short_ways_answer_what_strawberry_answers() -> None:
    plain, short = _schemas()
    for query in QUERIES:
        variables = {"t": 2} if "$t" in query else None
        for _ in range(2):  # the second time comes from the prepared-document cache
            expected = await plain.execute(query, variables, context_value={"tag": "T"})
            got = await short.execute(query, variables, context_value={"tag": "T"})
            assert _shape(got) == _shape(expected), query
    # and the fast paths were taken
    assert short.documents.cache.hits >= len(QUERIES)


async def test_fast_paths_cover_plain_and_argument_free_fields_only() -> None:
    _, short = _schemas()
    plain = plain_fields(short._schema)["Item"]
    assert set(plain) == {"name", "note", "colour", "price"}
    item = short._schema.type_map["Item"]
    assert getattr(item.fields["shout"].resolve, "__name__", "") == "resolve"
    assert getattr(item.fields["tagged"].resolve, "__name__", "") == "resolve_with_info"
    # a field with arguments keeps Strawberry's resolver (argument conversion)
    assert getattr(item.fields["repeat"].resolve, "__name__", "") not in {
        "resolve",
        "resolve_with_info",
    }
    # nothing is changed when exception handlers are configured
    assert lean_resolvers(short._schema, info_class=strawberry.Info, exception_handlers=True) == 0


async def test_errors_and_invalid_documents_take_strawberrys_way() -> None:
    plain, short = _schemas()
    for query in ["{ items { nope } }", "{ items { name ", "subscription { items { name } }"]:
        expected = await plain.execute(query)
        got = await short.execute(query)
        assert _shape(got) == _shape(expected)
        assert got.errors
