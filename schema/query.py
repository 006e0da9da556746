"""The root Query: thin fields that call one verb in resolvers/ and map rows to types."""

from __future__ import annotations

from typing import Annotated

import strawberry

from auth.permissions import SESSION_ENDED, IsSignedIn, IsStaff, LiveSessionIfAny
from core.errors import DomainError
from core.ids import from_global_id, parse_pk
from resolvers import accounts, audit, catalog, subscribers, support
from schema.context import Info
from schema.errors import Unauthenticated, bad_input
from schema.events import EventsQuery
from schema.types.account import Contract, SessionInfo, Subscriber
from schema.types.catalog import (
    CATALOG_NODE_TYPES,
    BonusReward,
    Channel,
    Region,
    ServiceOption,
    Tariff,
    TvPackage,
)
from schema.types.money import Payment
from schema.types.node import Node
from schema.types.pagination import AFTER, FIRST, Connection, page_arguments
from schema.types.staff import AuditEntry, SupportRequest, SupportRequestStatus
from schema.types.viewed import root_objects

# Objects reached by node(id) that belong to someone (the catalogue is public).
_PRIVATE_NODES = frozenset({"Contract", "Payment", "Subscriber"})


@strawberry.type(
    description="What a front end reads. The catalogue is public; an account is seen by its "
    "subscriber and by staff only; fields marked Staff are for staff only (a subscriber gets "
    "a GraphQL error FORBIDDEN, a signed-out caller UNAUTHENTICATED)."
)
class Query(EventsQuery):
    @strawberry.field(description="Regions where the operator sells its tariffs, by code.")
    async def regions(self, info: Info) -> list[Region]:
        return await root_objects(info, "regions")  # type: ignore[no-any-return]

    @strawberry.field(description="Tariffs on sale (not archived), by region, then cheapest first.")
    async def tariffs(
        self,
        info: Info,
        region: Annotated[
            str | None,
            strawberry.argument(
                description='Only this region\'s, by `Region.code` (e.g. "MOW"); an unknown '
                "code gives an empty list. Null: every region."
            ),
        ] = None,
    ) -> list[Tariff]:
        return await root_objects(info, "tariffs", region=region)  # type: ignore[no-any-return]

    @strawberry.field(description="TV packages on sale (not archived), cheapest first.")
    async def tv_packages(self, info: Info) -> list[TvPackage]:
        return await root_objects(info, "tvPackages")  # type: ignore[no-any-return]

    @strawberry.field(description="Every channel the operator carries (not archived), by number.")
    async def channels(self, info: Info) -> list[Channel]:
        return await root_objects(info, "channels")  # type: ignore[no-any-return]

    @strawberry.field(description="Service options on sale (not archived), cheapest first.")
    async def service_options(self, info: Info) -> list[ServiceOption]:
        return await root_objects(info, "serviceOptions")  # type: ignore[no-any-return]

    @strawberry.field(
        description="Rewards that bonus points buy (not archived), cheapest in points first."
    )
    async def bonus_rewards(self, info: Info) -> list[BonusReward]:
        rows = await catalog.list_bonus_rewards(info.context.reader)
        return [BonusReward.from_row(row) for row in rows]

    @strawberry.field(
        permission_classes=[LiveSessionIfAny],
        description="The signed-in subscriber; null when signed out or staff. "
        "UNAUTHENTICATED when the request's token or cookie names no live session.",
    )
    async def me(self, info: Info) -> Subscriber | None:
        principal = info.context.principal
        if not accounts.reads_own_account(principal):
            return None
        assert principal is not None
        row = await info.context.loaders.row_of("Subscriber").load(principal.id)
        return None if row is None else Subscriber.of_row(row)

    @strawberry.field(
        permission_classes=[LiveSessionIfAny],
        description="A contract by number; null when you may not see it. "
        "UNAUTHENTICATED when the request's token or cookie names no live session.",
    )
    async def contract(
        self,
        info: Info,
        number: Annotated[
            str, strawberry.argument(description="The contract (personal account) number.")
        ],
    ) -> Contract | None:
        row = await info.context.loaders.contract_by_number.load(number.strip())
        if row is None or not accounts.may_see_contract(info.context.principal, row):
            return None
        return Contract.from_row(row)

    @strawberry.field(
        permission_classes=[IsSignedIn], description="Your live sessions, newest first."
    )
    async def my_sessions(self, info: Info) -> list[SessionInfo]:
        principal = info.context.principal
        assert principal is not None
        return await root_objects(info, "mySessions", key=principal.session_id)  # type: ignore[no-any-return]

    @strawberry.field(
        description="An object by its global ID: a contract, payment or subscriber you may "
        "see, or a catalogue item (tariff, channel, TV package, service option, bonus "
        "reward); null for any other ID. UNAUTHENTICATED for a contract, payment or "
        "subscriber when the request's token or cookie names no live session."
    )
    async def node(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID, strawberry.argument(description="A global ID, as an object's `id`.")
        ],
    ) -> Node | None:
        decoded = from_global_id(id)
        if decoded is None:
            return None
        type_name, raw_pk = decoded
        parsed = parse_pk(raw_pk)
        if parsed is None:
            return None
        pk, loaders, principal = parsed, info.context.loaders, info.context.principal
        if type_name in _PRIVATE_NODES and info.context.session_ended:
            raise Unauthenticated(SESSION_ENDED)
        if type_name == "Contract":
            row = await loaders.row_of("Contract").load(pk)
            ok = row is not None and accounts.may_see_contract(principal, row)
            return Contract.of_row(row) if ok else None
        if type_name == "Payment":
            row = await loaders.payment_by_id.load(pk)
            ok = row is not None and accounts.may_see_contract(principal, row)
            return Payment.from_row(row) if ok else None
        if type_name == "Subscriber":
            if not accounts.may_see_subscriber(principal, pk):
                return None
            row = await loaders.row_of("Subscriber").load(pk)
            return None if row is None else Subscriber.of_row(row)
        node_type = CATALOG_NODE_TYPES.get(type_name)
        if node_type is None:
            return None
        if node_type is BonusReward:  # not read through a declaration
            row = await loaders.catalog_item.load((type_name, pk))
            return None if row is None else BonusReward.from_row(row)
        row = await loaders.row_of(type_name).load(pk)
        return None if row is None else node_type.of_row(row)

    @strawberry.field(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: subscribers by contract number, login, email, phone, name or the "
        "last 4 characters of the document; newest first.",
    )
    async def subscribers(
        self,
        info: Info,
        search: Annotated[
            str | None,
            strawberry.argument(
                description="What to look for, at most 100 characters, matched literally; "
                "null or empty: every subscriber."
            ),
        ] = None,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
    ) -> Connection[Subscriber]:
        limit, after_id = page_arguments(info, first, after)
        try:
            page = await subscribers.search_subscribers(
                info.context.reader, search=search, first=limit, after=after_id
            )
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, Subscriber.from_row)

    @strawberry.field(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: written support requests, newest first (open ones only by default).",
    )
    async def support_requests(
        self,
        info: Info,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
        status: Annotated[
            SupportRequestStatus | None,
            strawberry.argument(description="Only requests in this status; null: all of them."),
        ] = SupportRequestStatus.OPEN,
    ) -> Connection[SupportRequest]:
        limit, after_id = page_arguments(info, first, after)
        try:
            page = await support.list_support_requests(
                info.context.reader,
                status=status.value if status else None,
                first=limit,
                after=after_id,
            )
        except DomainError as error:
            raise bad_input(error) from None
        return Connection.from_page(page, SupportRequest.from_row)

    @strawberry.field(
        permission_classes=[IsSignedIn, IsStaff],
        description="Staff: every staff write, newest first.",
    )
    async def audit_log(
        self,
        info: Info,
        first: Annotated[int | None, FIRST] = None,
        after: Annotated[str | None, AFTER] = None,
        action: Annotated[
            str | None,
            strawberry.argument(
                description="Only entries of this action, a mutation's name (e.g. "
                '"adjustBalance"); null: every action.'
            ),
        ] = None,
    ) -> Connection[AuditEntry]:
        limit, after_id = page_arguments(info, first, after)
        page = await audit.list_audit_log(
            info.context.reader, first=limit, after=after_id, action=action
        )
        return Connection.from_page(page, AuditEntry.from_row)
