"""What a contract has connected today (read side): TV packages, and later the rest."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from kabinet.db import ReadQuery, one_of
from models import ContractTvPackage, TvPackage
from resolvers.catalog import PACKAGE_COLUMNS

_links = ContractTvPackage.__table__  # type: ignore[attr-defined]
_packages = TvPackage.__table__  # type: ignore[attr-defined]

_PACKAGES_OF_CONTRACTS = ReadQuery(
    sa.select(_links.c.contract_id, _links.c.free_until, *PACKAGE_COLUMNS)
    .join(_packages, _packages.c.id == _links.c.package_id)
    .where(one_of(_links.c.contract_id, "ids"), _links.c.ended_on.is_(None))
    .order_by(_links.c.contract_id, _packages.c.monthly_fee, _packages.c.id)
)


async def tv_packages_of_contracts(
    reader: Any, contract_ids: Sequence[int]
) -> dict[int, list[Any]]:
    """The packages connected now (archived ones too: they stay on the contracts that have
    them), one statement for all the contracts asked for."""
    found: dict[int, list[Any]] = defaultdict(list)
    for row in await reader.fetch(_PACKAGES_OF_CONTRACTS, ids=list(contract_ids)):
        found[row.contract_id].append(row)
    return found
