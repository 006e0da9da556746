"""The one shape of every mutation field (SPEC §4: `name(input: NameInput!): NamePayload!` with
`errors: [UserError!]!`):

1. `mutation(access=..., description=...)` declares the field with who may call it
   (PUBLIC, SIGNED_IN, SUBSCRIBER or STAFF), checked before the resolver runs;
2. `run(info, Payload, verb, answer)` opens the request's one unit of work
   (`RequestReader.write()`, the single owner of the connection and the transaction), calls
   one verb of resolvers/ in it, and maps the verb's result (`answer`) or its `DomainError`
   (`Payload(errors=[...])`) to the payload. The unit of work commits when the verb returns
   and rolls back when it raises (a `DomainError` with `keep_writes` is committed first);
   the verb itself never commits. A DomainError reporting several problems of the input
   (core.errors.InputProblems) becomes one UserError each.

Payloads are classes written out (no `type()` at run time); those with nothing to say but
`ok` subclass OkPayload, those that answer with the contract ContractPayload."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, Self, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.permission import BasePermission

from auth.permissions import IsSignedIn, IsStaff, IsSubscriber
from auth.sessions import Principal
from core.errors import DomainError, ErrorCode
from core.ids import from_global_id, parse_pk
from resolvers import accounts
from schema.context import Info
from schema.errors import UserError
from schema.types.account import Contract

T = TypeVar("T")
P = TypeVar("P", bound="Payload")

Access = Sequence[type[BasePermission]]

# Who may call a mutation. Signed-in first, so that a caller without a session hears
# UNAUTHENTICATED and a subscriber on a staff field FORBIDDEN (auth/permissions.py).
PUBLIC: Access = ()  # the field must be listed in auth.permissions.PUBLIC_FIELDS
SIGNED_IN: Access = (IsSignedIn,)
SUBSCRIBER: Access = (IsSignedIn, IsSubscriber)
STAFF: Access = (IsSignedIn, IsStaff)

# Descriptions every mutation shares: its `input` argument (`input: Annotated[NameInput,
# INPUT]`), its payload's `errors`, and the contract number most inputs carry.
INPUT = strawberry.argument(
    description="The mutation's arguments, in one object. What it refuses comes back in the "
    "payload's `errors`; only a value of the wrong type (e.g. Money as a JSON number) is a "
    "GraphQL error."
)
ERRORS = "Expected failures; empty when the mutation succeeded."
CONTRACT_NUMBER = (
    "The contract (personal account) number; NOT_FOUND when there is none you may act on."
)


class Payload(Protocol):
    """What `run` builds on a refusal: every payload has `errors` and defaults elsewhere."""

    def __init__(self, *, errors: list[UserError]) -> None: ...


def mutation(*, access: Access, description: str) -> Any:
    """A root mutation field: who may call it, and what it does."""
    return strawberry.mutation(permission_classes=list(access), description=description)


async def run(
    info: Info,
    payload: type[P],
    verb: Callable[[AsyncSession], Awaitable[T]],
    answer: Callable[[T], P | Awaitable[P]],
) -> P:
    """Call `verb` in the request's unit of work (a session on the request's one connection,
    committed when the verb returns, rolled back when it raises: see RequestReader.write);
    its result becomes the payload through `answer` (after the unit of work has ended, so
    that `answer` reads what it committed), and an expected failure becomes
    `payload(errors=[...])`."""
    try:
        async with info.context.reader.write() as session:
            result = await verb(session)
    except DomainError as error:  # every problem it reports, each a UserError
        return payload(errors=UserError.all_of(error))
    answered = answer(result)
    if inspect.isawaitable(answered):
        return await answered
    return answered


def signed_in(info: Info) -> Principal:
    """The signed-in caller (the field's access has checked there is one)."""
    principal = info.context.principal
    assert principal is not None
    return principal


@strawberry.type
class OkPayload:
    """A payload with nothing to say but `ok`: each mutation subclasses it under its own name
    (the base itself is in no field, so it is not in the schema)."""

    errors: list[UserError] = strawberry.field(description=ERRORS)
    ok: bool = strawberry.field(
        default=False, description="true when it was done; false when `errors` says why not."
    )

    @classmethod
    def done(cls, _result: object = None) -> Self:
        return cls(errors=[], ok=True)


@strawberry.type
class ContractPayload:
    """What a service mutation answers: the contract as it is after the change."""

    errors: list[UserError] = strawberry.field(description=ERRORS)
    contract: Contract | None = strawberry.field(
        default=None, description="The contract as it is after the change; null on failure."
    )

    @classmethod
    async def of(cls, info: Info, contract_id: int) -> Self:
        return cls(errors=[], contract=Contract.of_key(contract_id))


async def own_contract(info: Info, number: str) -> Any:
    """The caller's contract numbered `number` (resolvers.accounts.own_contract, the rule),
    through the request's loader."""
    context = info.context
    return await accounts.own_contract(
        context.loaders.contract_by_number.load, context.principal, number
    )


def pk_of(global_id: str, type_name: str, field: str) -> int:
    """The primary key in a global ID of `type_name`; NOT_FOUND for anything else."""
    decoded = from_global_id(global_id)
    pk = None if decoded is None or decoded[0] != type_name else parse_pk(decoded[1])
    if pk is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No such {type_name}.", field=field)
    return pk
