"""The GraphQL face of Kabinet: builds `schema` from the types, queries and mutations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from inspect import isawaitable
from typing import Any

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    specified_rules,
)
from graphql import (
    execute as graphql_execute,
)
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    SchemaExtension,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema._graphql_core import execution_context_class_kwargs
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from core.settings import Settings
from schema.documents import DOCUMENT_CACHE_BYTES, DocumentPreparer, Prepared, operation_error
from schema.errors import ApiError
from schema.executor import executor_for, lean_resolvers
from schema.limits import SecretMutationsOnceRule
from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_MAP
from schema.sql_answers import SqlAnswers
from schema.types.catalog import BonusReward, Channel, ServiceOption, Tariff, TvPackage

MASKED_MESSAGE = "Unexpected error."
_SHORT_WAY_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


def should_mask_error(error: GraphQLError) -> bool:
    """Mask everything that is not a GraphQL error we raised on purpose (or a parse or
    validation error, which carry no original error)."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class KabinetSchema(strawberry.Schema):
    """Strawberry's schema with each document parsed and validated once (SPEC §5).

    `prepare` parses a document under the token limit, bounds its cost, validates it with
    the limit rules and then the standard ones, and keeps the outcome by its text in a cache
    bounded in bytes (schema/documents.py); a request then goes straight to graphql-core's
    execution, as Strawberry itself would run it, without the per-request work of
    Strawberry's extension runner. A request error (parse, validation, limit, operation
    selection, variable values) is answered from here with its `extensions.code` and no
    `data`, never by a second validation.
    """

    def __init__(
        self,
        *args: Any,
        validation_rules: Sequence[type[ASTValidationRule]] = (),
        max_tokens: int,
        cache_bytes: int = DOCUMENT_CACHE_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.execution_context_class = executor_for(self._schema)
        lean_resolvers(
            self._schema,
            info_class=self.config.info_class,
            exception_handlers=bool(self.schema_converter._exception_handler_specs),
        )
        self.documents = DocumentPreparer(
            self._schema,
            max_tokens=max_tokens,
            limit_rules=validation_rules,
            rules=(*specified_rules, MaybeNullValidationRule, OneOfInputValidationRule),
            hide_suggestions=self.config.disable_field_suggestions,
            max_bytes=cache_bytes,
        )
        # Documents answered from one SQL statement on PostgreSQL (schema/sql_answers.py).
        self.sql_answers = SqlAnswers(self._schema, self._prepare, cache_bytes)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Errors are logged (and masked) once, by the HTTP endpoint that answers them."""

    def prepare(self, query: str) -> Prepared:
        return self.documents.prepare(query)

    def _prepare(self, query: str, operation_name: str | None) -> DocumentNode | None:
        """The document, when it parsed and validated and names one query or mutation."""
        prepared = self.documents.prepare(query)
        operation = prepared.operation(operation_name)
        if operation is None or operation.operation not in _SHORT_WAY_OPERATIONS:
            return None
        return prepared.document

    async def execute(  # type: ignore[override]  # short way answers graphql-core's ExecutionResult
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if not query or root_value is not None or kwargs:
            return await super().execute(
                query,
                variable_values=variable_values,
                context_value=context_value,
                root_value=root_value,
                operation_name=operation_name,
                **kwargs,
            )
        prepared = self.documents.prepare(query)
        if prepared.errors:
            return ExecutionResult(data=None, errors=list(prepared.errors))
        refused = operation_error(prepared, operation_name)
        if refused is not None:
            return ExecutionResult(data=None, errors=[refused])
        operation = prepared.operation(operation_name)
        assert operation is not None and prepared.document is not None
        if operation.operation not in _SHORT_WAY_OPERATIONS:
            return await super().execute(
                query,
                variable_values=variable_values,
                context_value=context_value,
                operation_name=operation_name,
            )
        result = graphql_execute(
            self._schema,
            prepared.document,
            variable_values=variable_values,
            context_value=context_value,
            operation_name=operation_name,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]  # strawberry's own check, typed -> bool not TypeGuard
            hide_suggestions=self.config.disable_field_suggestions,
            **execution_context_class_kwargs(self.execution_context_class),
        )
        if isawaitable(result):
            result = await result
        if result.data is None and result.errors:
            # Variable values the operation could not take: nothing ran (GraphQL over HTTP).
            for error in result.errors:
                if error.path is None and not (error.extensions or {}).get("code"):
                    error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
        return result


def build_schema(settings: Settings) -> KabinetSchema:
    # The rule classes are made once: the validation cache is keyed by the rules tuple, so
    # rules made per request (as QueryDepthLimiter does) would miss it every time.
    rules = [
        depth_validator(settings.max_query_depth, None, None),
        alias_validator(settings.max_aliases),
        SecretMutationsOnceRule,
    ]
    # Factories: Strawberry makes fresh extension instances for each request.
    # (Strawberry's own way only runs what KabinetSchema.execute does not take; it caches
    # nothing, so every cache of documents is the one bounded in bytes.)
    extensions: list[Callable[[], SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: AddValidationRules(rules),
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
