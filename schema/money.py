"""Money mutations: top-ups, promised payments, staff balance adjustments."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import IsSignedIn, IsStaff
from resolvers import adjustments
from schema.context import Info
from schema.errors import UserError
from schema.mutation_support import attempt
from schema.scalars import Money
from schema.types.account import Contract


@strawberry.input
class AdjustBalanceInput:
    contract_number: str
    amount: Money = strawberry.field(description="Signed: negative to debit.")
    reason: str = strawberry.field(description="Why: kept in the ledger and the audit log.")


@strawberry.type
class AdjustBalancePayload:
    errors: list[UserError]
    contract: Contract | None = None


@strawberry.type
class MoneyMutation:
    @strawberry.mutation(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: correct a balance with a reason (a ledger entry; audited).",
    )
    async def adjust_balance(self, info: Info, input: AdjustBalanceInput) -> AdjustBalancePayload:
        context = info.context
        principal = context.principal
        assert principal is not None

        async def adjust(session: AsyncSession) -> Any:
            return await adjustments.adjust_balance(
                session,
                staff_id=principal.id,
                contract_number=input.contract_number,
                amount=input.amount,
                reason=input.reason,
                client_address=context.client_address,
            )

        adjusted, errors = await attempt(info, adjust)
        if adjusted is None:
            return AdjustBalancePayload(errors=errors)
        row = await context.loaders.contract_by_id.load(adjusted.contract_id)
        return AdjustBalancePayload(errors=[], contract=Contract.from_row(row))
