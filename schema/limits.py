"""Query limits of SPEC §5 that graphql-core and Strawberry do not give ready-made."""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_operation_ast,
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
            if isinstance(definition, FragmentDefinitionNode)
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


def uses_introspection(document: DocumentNode) -> bool:
    """Whether a document asks for `__schema` or `__type` (`__typename` is always allowed)."""
    finder = _IntrospectionFinder()
    visit(document, finder)
    return finder.found


def root_fields(document: DocumentNode, operation_name: str | None) -> frozenset[str] | None:
    """The root field names of the operation a request runs (None when the document names
    no single operation; execution then reports the problem)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    return frozenset(
        field.name.value for field in _root_fields(operation.selection_set, fragments, set())
    )


# The work a document may cost is bounded before the validation rules see it (SPEC §5).
# graphql-core's OverlappingFieldsCanBeMergedRule compares every pair of fields that share a
# response name in one selection set, and each pair's sub-selections pair by pair: 480 ×
# `regions{code}` in 7 KB held the event loop for over a second. A field's subtree of s
# selections costs at most s(f)·s(g) comparisons against another's, so a selection set
# whose fields of one name have subtrees s1…sk costs at most (s1+…+sk)²/2: the sum of that
# over every selection set, fragments expanded where they are spread (and each fragment
# definition on its own, as the rule checks unused ones too), bounds the rule's work.
MAX_SELECTIONS = 1_000  # field selections after fragment expansion
MAX_MERGE_COST = 5_000  # the bound above: pairs of fields the merge check may compare
_CAP = 10**12  # exponents of fragment expansion stop counting here


class _Cost:
    """Selections and merge cost of selection sets, each fragment counted once (memo)."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.memo: dict[str, tuple[int, int, dict[str, tuple[int, int]]]] = {}

    def fragment(self, name: str) -> tuple[int, int, dict[str, tuple[int, int]]]:
        found = self.memo.get(name)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        self.memo[name] = (0, 0, {})  # unknown or cyclic: the rules report it
        if definition is None:
            return self.memo[name]
        found = self.top(definition.selection_set)
        self.memo[name] = found
        return found

    def top(self, selection_set: SelectionSetNode) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """(selections, cost inside the fields' own subtrees, {response name: (fields,
        selections of their subtrees)}) of the fields this selection set merges at its
        level, fragments and inline fragments included."""
        size = cost = 0
        groups: dict[str, tuple[int, int]] = {}

        def join(name: str, count: int, subtree: int) -> None:
            had = groups.get(name, (0, 0))
            groups[name] = (min(had[0] + count, _CAP), min(had[1] + subtree, _CAP))

        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                subtree, inner = 1, 0
                if selection.selection_set is not None:
                    sub_size, sub_cost = self.selection_set(selection.selection_set)
                    subtree, inner = 1 + sub_size, sub_cost
                name = (selection.alias or selection.name).value
                size, cost = size + subtree, cost + inner
                join(name, 1, subtree)
                continue
            if isinstance(selection, InlineFragmentNode):
                inner_size, inner_cost, inner_groups = self.top(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                inner_size, inner_cost, inner_groups = self.fragment(selection.name.value)
            else:  # pragma: no cover
                continue
            size, cost = size + inner_size, cost + inner_cost
            for name, (count, subtree) in inner_groups.items():
                join(name, count, subtree)
        return min(size, _CAP), min(cost, _CAP), groups

    def selection_set(self, selection_set: SelectionSetNode) -> tuple[int, int]:
        size, cost, groups = self.top(selection_set)
        for count, subtree in groups.values():
            if count > 1:
                cost += subtree * subtree // 2
        return min(size, _CAP), min(cost, _CAP)


def document_cost(document: DocumentNode) -> tuple[int, int]:
    """(field selections after fragment expansion, the merge check's bound) of a document."""
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    counter = _Cost(fragments)
    size = cost = 0
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            more_size, more_cost = counter.selection_set(definition.selection_set)
            cost = min(cost + more_cost, _CAP)
            if isinstance(definition, OperationDefinitionNode):
                size = min(size + more_size, _CAP)
    return size, cost


def cost_error(
    document: DocumentNode,
    max_selections: int = MAX_SELECTIONS,
    max_merge_cost: int = MAX_MERGE_COST,
) -> GraphQLError | None:
    """A LIMIT_EXCEEDED error when the document would cost more than the bounds allow."""
    try:
        size, cost = document_cost(document)
    except RecursionError:  # the parser stops at 200 levels; this is a second guard
        size = cost = _CAP
    if size > max_selections:
        message = (
            f"The document selects {size} fields once its fragments are expanded"
            f" (at most {max_selections})."
        )
    elif cost > max_merge_cost:
        message = (
            "The document repeats the same fields too often (each repetition has to be"
            " compared with every other): select each field once."
        )
    else:
        return None
    return GraphQLError(message, extensions={"code": "LIMIT_EXCEEDED"})
