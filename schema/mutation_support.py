"""What every mutation field uses: `attempt` runs a verb, payloads with nothing but `ok`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorCode
from core.ids import from_global_id, parse_pk
from resolvers import accounts
from schema.context import Info
from schema.errors import UserError

T = TypeVar("T")


async def attempt(
    info: Info, verb: Callable[[AsyncSession], Awaitable[T]]
) -> tuple[T | None, list[UserError]]:
    """Run a verb in the request's unit of work (a session on the request's one connection,
    see RequestReader.write); an expected failure becomes `errors`."""
    try:
        async with info.context.reader.write() as session:
            result = await verb(session)
    except DomainError as error:
        return None, [UserError.from_domain(error)]
    return result, []


async def own_contract(info: Info, number: str) -> Any:
    """The caller's contract numbered `number` (resolvers.accounts.own_contract, the rule),
    through the request's loader."""
    context = info.context
    return await accounts.own_contract(
        context.loaders.contract_by_number.load, context.principal, number
    )


@strawberry.type
class OkPayload:
    """A payload with nothing to say but `ok`: each mutation subclasses it under its own name
    (the base itself is in no field, so it is not in the schema)."""

    errors: list[UserError]
    ok: bool = False


def pk_of(global_id: str, type_name: str, field: str) -> int:
    """The primary key in a global ID of `type_name`; NOT_FOUND for anything else."""
    decoded = from_global_id(global_id)
    pk = None if decoded is None or decoded[0] != type_name else parse_pk(decoded[1])
    if pk is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No such {type_name}.", field=field)
    return pk
