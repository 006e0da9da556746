"""graphql-core's execution with a short path for plain leaf fields.

Most fields of an answer are plain: an attribute of the object already built (a name, an
amount, a status) with no resolver, no arguments, no permission check, and a scalar or
enum type. graphql-core treats each like any other field: it builds a ResolveInfo, looks
at the arguments, calls Strawberry's default resolver, then walks the type to complete the
value. Here such a field is read and serialised directly, with the same type's own
`coerce_output_value` graphql-core would call. Anything unusual (a null, a missing
attribute, a value the type refuses) goes the ordinary way, which raises the error it
always raised.
"""

from __future__ import annotations

import inspect
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

# (leaf type, attribute) of each plain field, by object type name and field name.
PlainFields = dict[str, dict[str, tuple[Any, str]]]


def plain_fields(schema: GraphQLSchema) -> PlainFields:
    found: PlainFields = {}
    for type_name, graphql_type in schema.type_map.items():
        if not isinstance(graphql_type, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for field_name, field in graphql_type.fields.items():
            definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if definition is None or field.args or field.resolve is None:
                continue
            # Strawberry's own marker of a field with no resolver and no extension.
            if not getattr(field.resolve, "_is_default", False):
                continue
            leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
                found.setdefault(type_name, {})[field_name] = (leaf, definition.python_name)
    return found


_MISSING = object()


def executor_for(schema: GraphQLSchema) -> type[StrawberryGraphQLCoreExecutionContext]:
    plain = plain_fields(schema)

    class KabinetExecutionContext(StrawberryGraphQLCoreExecutionContext):
        def execute_field(
            self,
            parent_type: GraphQLObjectType,
            source: Any,
            field_details_list: Any,
            path: Any,
            position_context: Any,
        ) -> Any:
            of_type = plain.get(parent_type.name)
            if of_type is not None and not self.middleware_manager:
                node = field_details_list[0].node
                found = of_type.get(node.name.value)
                if found is not None and not node.arguments:
                    leaf, attribute = found
                    value = getattr(source, attribute, _MISSING)
                    if value is not None and value is not _MISSING:
                        try:
                            coerced = leaf.coerce_output_value(value)
                        except Exception:  # the ordinary way reports it
                            coerced = None
                        if coerced is not None and coerced is not Undefined:
                            return coerced
            return super().execute_field(
                parent_type, source, field_details_list, path, position_context
            )

    return KabinetExecutionContext


def lean_resolvers(schema: GraphQLSchema, *, info_class: Any, exception_handlers: bool) -> int:
    """Calls our resolvers without Strawberry's per-call wrapping where it has nothing to do.

    A field with a resolver of its own goes, on every call, through Strawberry's argument
    conversion, its field-extension chain and an `await_maybe` wrapper. For a resolver that
    takes no argument but `self` and `info`, with no extension (no permission class) and no
    exception handler, all of that is the identity: here such a field calls the resolver
    directly with the same `self` (the parent object) and the same Info Strawberry would
    build. Returns how many fields were changed.
    """
    if exception_handlers:
        return 0
    changed = 0
    for type_name, graphql_type in schema.type_map.items():
        if not isinstance(graphql_type, GraphQLObjectType) or type_name.startswith("__"):
            continue
        for field in graphql_type.fields.values():
            definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            resolver = getattr(definition, "base_resolver", None)
            if resolver is None or definition.extensions or field.args:
                continue
            names = tuple(inspect.signature(resolver.wrapped_func).parameters)
            if names not in (("self",), ("self", "info")):
                continue
            field.resolve = _direct(resolver.wrapped_func, definition, info_class, len(names) == 2)
            changed += 1
    return changed


def _direct(function: Any, definition: Any, info_class: Any, wants_info: bool) -> Any:
    if wants_info:

        def resolve_with_info(source: Any, info: Any) -> Any:
            return function(source, info_class(_raw_info=info, _field=definition))

        return resolve_with_info

    def resolve(source: Any, info: Any) -> Any:
        return function(source)

    return resolve
