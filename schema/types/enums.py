"""Descriptions of enum values, kept beside the enum they describe.

`strawberry.enum_value` would make each member's Python value an `EnumValueDefinition` in
mypy's eyes (`LegalStatus.INDIVIDUAL.value` is then no `str`), and the domain's own enums
(core.errors.ErrorCode) know no Strawberry at all. So members stay plain strings, and
`values_described` writes the descriptions into the enum's Strawberry definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import TypeVar

E = TypeVar("E", bound=type[Enum])


def values_described(descriptions: Mapping[str, str]) -> Callable[[E], E]:
    """Describe every value, by name, of an enum already made a Strawberry enum (put it
    above `@strawberry.enum`); a value left out, or a name that is no value, is an error."""

    def describe(enum: E) -> E:
        values = enum.__strawberry_definition__.values  # type: ignore[attr-defined]
        names = {value.name for value in values}
        if names != set(descriptions):
            raise ValueError(f"{enum.__name__}: describe exactly {sorted(names)}")
        for value in values:
            value.description = descriptions[value.name]
        return enum

    return describe
