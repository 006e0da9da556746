"""Documents parsed and validated once (SPEC §5), kept in a cache bounded in bytes.

A request's document is parsed under the token limit, its cost bounded (schema/limits.py),
checked against the limit rules (depth, aliases, one secret-guessing mutation) and then the
standard rules, once; the outcome, the document or its request errors, is kept by its text.
Every request error carries `extensions.code` (SPEC §4 "GraphQL over HTTP"):
`GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED`, `LIMIT_EXCEEDED`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    get_operation_ast,
    parse,
    validate,
)

from schema.limits import cost_error, uses_introspection

# What one parsed document holds per token (its Token, its share of the nodes and their
# Locations), measured with tracemalloc on 1,800-2,000-token documents: 380-615 bytes.
BYTES_PER_TOKEN = 640
# Each cache of documents (and of the plans compiled from them) holds at most this much.
DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024
DOCUMENT_CACHE_ENTRIES = 1024

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedCache(Generic[K, V]):
    """Least recently used entries go first, once the entries' weights (bytes, estimated)
    pass `max_bytes` or their number passes `max_entries`."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, weight: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if weight > self.max_bytes:
            return  # never kept: it would push everything else out
        self._entries[key] = (value, weight)
        self.bytes += weight
        while self.bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def get_or_make(self, key: K, make: Callable[[], tuple[V, int]]) -> V:
        """The value kept for `key` (None included), else `make()`'s, kept."""
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return found[0]
        self.misses += 1
        value, weight = make()
        self.put(key, value, weight)
        return value


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else 4 * len(text)


def _token_count(document: DocumentNode) -> int:
    count = 0
    token = document.loc.start_token if document.loc else None
    while token is not None:
        count += 1
        token = token.next
    return count


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document as parsed and checked once: `document` is None when it did not parse;
    `errors` are its request errors (empty when it may run)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    uses_introspection: bool = False

    def operation(self, operation_name: str | None) -> OperationDefinitionNode | None:
        if self.document is None or self.errors:
            return None
        return get_operation_ast(self.document, operation_name)


def operation_error(prepared: Prepared, operation_name: str | None) -> GraphQLError | None:
    """The request error of an `operationName` that names no operation of the document, or
    of a document with several operations and no `operationName` (GraphQL over HTTP)."""
    if prepared.document is None or prepared.errors:
        return None
    if prepared.operation(operation_name) is not None:
        return None
    if operation_name is not None:
        message = f"Unknown operation named '{operation_name}'."
    else:
        message = "Must provide operation name if query contains multiple operations."
    return GraphQLError(message, extensions={"code": "OPERATION_RESOLUTION_FAILURE"})


def _with_code(error: GraphQLError, code: str) -> GraphQLError:
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": code}
    return error


class DocumentPreparer:
    """Parses, bounds and validates each distinct document text once."""

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        max_tokens: int,
        limit_rules: Sequence[type[ASTValidationRule]],
        rules: Sequence[type[ASTValidationRule]],
        hide_suggestions: bool = True,
        max_bytes: int = DOCUMENT_CACHE_BYTES,
        max_entries: int = DOCUMENT_CACHE_ENTRIES,
    ) -> None:
        self.schema = schema
        self.hide_suggestions = hide_suggestions
        self.max_tokens = max_tokens
        self.limit_rules = tuple(limit_rules)
        self.rules = tuple(rules)
        self.cache: SizedCache[str, Prepared] = SizedCache(max_bytes, max_entries)

    def prepare(self, query: str) -> Prepared:
        return self.cache.get_or_make(query, lambda: self._prepare(query))

    def _prepare(self, query: str) -> tuple[Prepared, int]:
        weight = 2 * _text_bytes(query) + 512  # the key, the source kept by the document
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            code = "GRAPHQL_PARSE_FAILED"
            if "tokens. Parsing aborted" in error.message:
                code = "LIMIT_EXCEEDED"
            return Prepared(None, (_with_code(error, code),)), weight
        introspection = uses_introspection(document)
        too_costly = cost_error(document)
        if too_costly is not None:
            # the document itself is not kept: the error has no location in it
            return Prepared(None, (too_costly,), introspection), weight
        weight += _token_count(document) * BYTES_PER_TOKEN
        errors = validate(
            self.schema, document, self.limit_rules, hide_suggestions=self.hide_suggestions
        )
        if errors:
            coded = tuple(_with_code(error, "LIMIT_EXCEEDED") for error in errors)
            return Prepared(document, coded, introspection), weight
        errors = validate(self.schema, document, self.rules, hide_suggestions=self.hide_suggestions)
        if errors:
            coded = tuple(_with_code(error, "GRAPHQL_VALIDATION_FAILED") for error in errors)
            return Prepared(document, coded, introspection), weight
        return Prepared(document, (), introspection), weight
