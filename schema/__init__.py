"""The GraphQL face of Kabinet: builds `schema` from the types, queries and mutations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.config import StrawberryConfig

from kabinet.settings import Settings
from schema.errors import ApiError
from schema.limits import SecretMutationsOnceRule
from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_MAP
from schema.types.catalog import BonusReward, Channel, ServiceOption, Tariff, TvPackage

MASKED_MESSAGE = "Unexpected error."


def should_mask_error(error: GraphQLError) -> bool:
    """Mask everything that is not a GraphQL error we raised on purpose (or a parse or
    validation error, which carry no original error)."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class KabinetSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Errors are logged (and masked) once, by the HTTP endpoint that answers them."""


def build_schema(settings: Settings) -> strawberry.Schema:
    # The rule classes are made once: the validation cache is keyed by the rules tuple, so
    # rules made per request (as QueryDepthLimiter does) would miss it every time.
    rules = [
        depth_validator(settings.max_query_depth, None, None),
        alias_validator(settings.max_aliases),
        SecretMutationsOnceRule,
    ]
    # Factories: Strawberry makes fresh extension instances for each request.
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=1024),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=1024),
    ]
    return KabinetSchema(
        query=Query,
        mutation=Mutation,
        types=[Tariff, Channel, TvPackage, ServiceOption, BonusReward],
        extensions=extensions,
        config=StrawberryConfig(
            disable_field_suggestions=True,
            scalar_map=SCALAR_MAP,
        ),
    )


def printed_schema() -> str:
    return build_schema(Settings()).as_str() + "\n"


__all__: list[Any] = ["ApiError", "build_schema", "printed_schema", "should_mask_error"]
