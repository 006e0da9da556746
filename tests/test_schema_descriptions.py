"""Every element of the GraphQL schema has a description (SPEC §4; issue 15).

The same idea as graphql-schema-linter's `*-have-descriptions` rules (types, fields, input
fields, arguments, enum values), as a walk over the built schema, so no npm tool is needed:
every object, input, enum, interface, union and custom scalar type, every field and its
arguments, every input field and every enum value must carry a non-empty description.
Introspection types (`__*`) and the built-in scalars and directives are GraphQL's own and
are left out. The failure lists every element without one, by its schema coordinate.
"""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    specified_directives,
    specified_scalar_types,
)
from graphql import build_schema as schema_of_sdl

from core.settings import Settings
from schema import build_schema

BUILT_IN_SCALARS = frozenset(specified_scalar_types)
BUILT_IN_DIRECTIVES = frozenset(directive.name for directive in specified_directives)


def _blank(description: str | None) -> bool:
    return description is None or not description.strip()


def undescribed(schema: GraphQLSchema) -> list[str]:
    """The schema coordinates (`Type`, `Type.field`, `Type.field(arg:)`, `Enum.VALUE`,
    `@directive(arg:)`) of every element without a description, sorted."""
    missing: list[str] = []
    for name, named in schema.type_map.items():
        if name.startswith("__") or name in BUILT_IN_SCALARS:
            continue
        if _blank(named.description):
            missing.append(name)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in named.fields.items():
                if _blank(field.description):
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in field.args.items():
                    if _blank(arg.description):
                        missing.append(f"{name}.{field_name}({arg_name}:)")
        elif isinstance(named, GraphQLInputObjectType):
            for field_name, input_field in named.fields.items():
                if _blank(input_field.description):
                    missing.append(f"{name}.{field_name}")
        elif isinstance(named, GraphQLEnumType):
            for value_name, enum_value in named.values.items():
                if _blank(enum_value.description):
                    missing.append(f"{name}.{value_name}")
        else:
            assert isinstance(named, GraphQLScalarType | GraphQLUnionType), named
    for directive in schema.directives:
        if directive.name in BUILT_IN_DIRECTIVES:
            continue
        if _blank(directive.description):
            missing.append(f"@{directive.name}")
        for arg_name, arg in directive.args.items():
            if _blank(arg.description):
                missing.append(f"@{directive.name}({arg_name}:)")
    return sorted(missing)


def test_every_schema_element_has_a_description() -> None:
    schema = build_schema(Settings())._schema
    missing = undescribed(schema)
    print(f"schema elements without a description: {len(missing)}")
    assert not missing, f"{len(missing)} schema elements have no description:\n" + "\n".join(
        missing
    )


def test_date_and_time_scalars_say_their_format_and_point_to_its_specification() -> None:
    schema = build_schema(Settings())._schema
    date, date_time = schema.type_map["Date"], schema.type_map["DateTime"]
    assert isinstance(date, GraphQLScalarType) and isinstance(date_time, GraphQLScalarType)
    # Strawberry's defaults ("Date (isoformat)") replaced by ours, with the specification.
    assert "isoformat" not in (date.description or "")
    assert "isoformat" not in (date_time.description or "")
    assert date.specified_by_url and "rfc3339" in date.specified_by_url.lower()
    assert date_time.specified_by_url and "rfc3339" in date_time.specified_by_url.lower()


def test_the_walk_finds_what_is_missing() -> None:
    # given a tiny schema with one element of each kind left undescribed
    sdl = schema_of_sdl(
        '''
        """Root."""
        type Query {
          """Described."""
          a(x: Int, """Described.""" y: Int): E
          b: Int
        }
        enum E { """Described.""" ONE TWO }
        input I { """Described.""" p: Int q: Int }
        scalar S
        '''
    )
    # when it is walked, then every one is named, and nothing described is
    assert undescribed(sdl) == ["E", "E.TWO", "I", "I.q", "Query.a(x:)", "Query.b", "S"]
