"""Query limits of SPEC §5 that graphql-core and Strawberry do not give ready-made."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    parse,
)
from graphql.language import Visitor, visit

# Mutations that guess a secret: one per document, so that one request cannot carry
# a hundred password guesses past the per-request rate limits.
SECRET_GUESSING_MUTATIONS = frozenset(
    {"login", "register", "resetPassword", "refreshSession", "changePassword"}
)


def _root_fields(
    selection_set: SelectionSetNode, fragments: dict[str, Any], seen: set[str]
) -> list[FieldNode]:
    fields: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            fields.extend(_root_fields(selection.selection_set, fragments, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                seen.add(name)
                fields.extend(_root_fields(fragment.selection_set, fragments, seen))
    return fields


class SecretMutationsOnceRule(ValidationRule):
    """At most one secret-guessing mutation field in the whole document."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.count = 0

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        if node.operation != OperationType.MUTATION:
            return
        fragments = {
            definition.name.value: definition
            for definition in self.context.document.definitions
            if hasattr(definition, "type_condition")
        }
        for field in _root_fields(node.selection_set, fragments, set()):
            if field.name.value in SECRET_GUESSING_MUTATIONS:
                self.count += 1
                if self.count == 2:
                    self.report_error(
                        GraphQLError(
                            "Only one sign-in, registration, password change, reset or refresh"
                            " per request.",
                            field,
                            extensions={"code": "LIMIT_EXCEEDED"},
                        )
                    )


class _IntrospectionFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def enter_field(self, node: FieldNode, *_: Any) -> Any:
        if node.name.value in ("__schema", "__type"):
            self.found = True
            return Visitor.BREAK
        return None


@lru_cache(maxsize=512)
def _document_uses_introspection(query: str) -> bool:
    try:
        document: DocumentNode = parse(query, max_tokens=10_000)
    except GraphQLError:
        return False  # the real parse reports it
    finder = _IntrospectionFinder()
    visit(document, finder)
    return finder.found


def uses_introspection(query: str) -> bool:
    """Whether a document asks for `__schema` or `__type` (`__typename` is always allowed)."""
    if "__schema" not in query and "__type" not in query.replace("__typename", ""):
        return False
    return _document_uses_introspection(query)


@lru_cache(maxsize=512)
def root_fields(query: str, operation_name: str | None) -> frozenset[str] | None:
    """The root field names of the operation a request runs (None when the document does not
    parse or names no single operation; execution then reports the problem)."""
    try:
        document = parse(query, max_tokens=10_000)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if hasattr(definition, "type_condition")
    }
    return frozenset(
        field.name.value for field in _root_fields(operations[0].selection_set, fragments, set())
    )
