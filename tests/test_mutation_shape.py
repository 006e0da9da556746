"""Every mutation has one shape (issue 14 item 4): its input and payload are classes written
out in schema/ (none built with `type()` at run time), the payload says `errors` first, and
the catalogue's fifteen mutations are the three verbs of each entity of one table."""

from __future__ import annotations

import sys
from typing import Any

from resolvers.catalog_admin import ENTITIES
from schema import build_schema
from tests.conftest import fast_settings


def _mutation_fields() -> list[Any]:
    schema = build_schema(fast_settings("sqlite+aiosqlite:///:memory:"))
    definition = schema.get_type_by_name("Mutation")
    assert definition is not None
    return list(definition.fields)  # type: ignore[union-attr]  # Mutation is an object type


def _written_out(cls: type) -> bool:
    """The class is what its module's name for it says (a class made by `type()` in a
    helper has a module and a name that do not lead back to it)."""
    found: Any = sys.modules[cls.__module__]
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def test_every_input_and_payload_is_a_class_written_out() -> None:
    # given every mutation of the schema
    classes = []
    for field in _mutation_fields():
        classes.append(field.type)
        classes += [argument.type for argument in field.arguments]

    # then each input and payload class is found under its own name in its module
    assert [cls.__name__ for cls in classes if not _written_out(cls)] == []
    assert len(classes) >= 2 * 40


def test_every_payload_says_errors_first() -> None:
    for field in _mutation_fields():
        first = field.type.__strawberry_definition__.fields[0]
        assert first.python_name == "errors", field.type.__name__


def test_the_catalogue_mutations_are_three_verbs_of_each_entity_of_the_table() -> None:
    # given the mutations by their GraphQL names
    schema = build_schema(fast_settings("sqlite+aiosqlite:///:memory:"))
    names = [schema.config.name_converter.get_graphql_name(field) for field in _mutation_fields()]

    # then each entity of the table has its create, update and archive, in the table's order
    catalogue = [
        entity.action(verb) for entity in ENTITIES for verb in ("create", "update", "archive")
    ]
    assert len(catalogue) == 15
    assert [name for name in names if name in catalogue] == catalogue
