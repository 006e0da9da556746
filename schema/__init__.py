"""The GraphQL face of Kabinet: builds `schema` from the types, queries and mutations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    OperationType,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql import (
    execute as graphql_execute,
)
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from core.settings import Settings
from schema.compiled import SqlAnswers
from schema.errors import ApiError
from schema.executor import executor_for, lean_resolvers
from schema.limits import SecretMutationsOnceRule
from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_MAP
from schema.types.catalog import BonusReward, Channel, ServiceOption, Tariff, TvPackage

MASKED_MESSAGE = "Unexpected error."
_SHORT_WAY_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


def should_mask_error(error: GraphQLError) -> bool:
    """Mask everything that is not a GraphQL error we raised on purpose (or a parse or
    validation error, which carry no original error)."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class KabinetSchema(strawberry.Schema):
    """Strawberry's schema with a short way through for documents seen before.

    A document that parsed and validated once (under the same token limit and the same
    rules, Strawberry's own added) is kept, and the next request with the same text goes
    straight to graphql-core's execution, as Strawberry itself would run it, without the
    per-request work of Strawberry's extension runner. Anything else, errors included,
    takes Strawberry's way, which answers it as before.
    """

    def __init__(
        self,
        *args: Any,
        validation_rules: Sequence[type[ASTValidationRule]] = (),
        max_tokens: int,
        prepared_cache_size: int = 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.execution_context_class = executor_for(self._schema)
        lean_resolvers(
            self._schema,
            info_class=self.config.info_class,
            exception_handlers=bool(self.schema_converter._exception_handler_specs),
        )
        self._max_tokens = max_tokens
        self._rules = (
            *specified_rules,
            *validation_rules,
            MaybeNullValidationRule,
            OneOfInputValidationRule,
        )
        self._prepare = lru_cache(maxsize=prepared_cache_size)(self._prepare_document)
        # Documents answered from one SQL statement on PostgreSQL (schema/compiled.py).
        self.sql_answers = SqlAnswers(self._schema, self._prepare, prepared_cache_size)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Errors are logged (and masked) once, by the HTTP endpoint that answers them."""

    def _prepare_document(self, query: str, operation_name: str | None) -> DocumentNode | None:
        """The document, when it parses and validates and names one query or mutation to
        run; None sends the request Strawberry's way."""
        try:
            document = parse(query, max_tokens=self._max_tokens)
        except GraphQLError:
            return None
        operation = get_operation_ast(document, operation_name)
        if operation is None or operation.operation not in _SHORT_WAY_OPERATIONS:
            return None
        if validate(self._schema, document, self._rules):
            return None
        return document

    async def execute(  # type: ignore[override]  # short way answers graphql-core's ExecutionResult
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        document = None
        if query and root_value is None and not kwargs:
            document = self._prepare(query, operation_name)
        if document is None:
            return await super().execute(
                query,
                variable_values=variable_values,
                context_value=context_value,
                root_value=root_value,
                operation_name=operation_name,
                **kwargs,
            )
        result = graphql_execute(
            self._schema,
            document,
            variable_values=variable_values,
            context_value=context_value,
            operation_name=operation_name,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # strawberry's own check, typed -> bool not TypeGuard
            **execution_context_class_kwargs(self.execution_context_class),
        )
        if isawaitable(result):
            result = await result
        return result


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
        validation_rules=rules,
        max_tokens=settings.max_tokens,
        config=StrawberryConfig(
            disable_field_suggestions=True,
            scalar_map=SCALAR_MAP,
        ),
    )


def printed_schema() -> str:
    return build_schema(Settings()).as_str() + "\n"


__all__: list[Any] = ["ApiError", "build_schema", "printed_schema", "should_mask_error"]
