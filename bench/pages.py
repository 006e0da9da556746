"""The GraphQL documents the bench loads: the overview, and the pages a front end sends
besides it (issue 14). tests/test_pages.py counts their SQL statements."""

from __future__ import annotations

OVERVIEW_QUERY = (
    "{ me { displayName contracts { number status"
    " balance { amount daysLeft openPromisedPayment { amount dueAt } }"
    " tariff { name monthlyFee speedMbps } tvPackages { name monthlyFee }"
    " payments(first: 10) { edges { node { amount status createdAt } } } }"
    " bonusAccount { points } } }"
)
# The pages a front end sends besides the overview (issue 14): each is measured on the same
# server as the overview, in the same run, and its server CPU per request compared with the
# overview's (target ≤ 1.5×). Every page asks for the signed-in subscriber's own contracts.
PAGES: dict[str, tuple[str, str]] = {
    "overview": ("the bench's overview", OVERVIEW_QUERY),
    "apollo": (
        "overview as Apollo Client sends it",
        "query AccountOverview { me { __typename id displayName"
        " contracts { __typename id ...ContractCard }"
        " bonusAccount { __typename points } } }"
        " fragment ContractCard on Contract { number status"
        " balance { __typename amount daysLeft openPromisedPayment { __typename id amount dueAt } }"
        " tariff { __typename id name monthlyFee speedMbps }"
        " tvPackages { __typename id name monthlyFee }"
        " payments(first: 10) { __typename edges { __typename cursor"
        " node { __typename id amount status createdAt } } } }",
    ),
    "home": (
        "home screen: overview + promisedPaymentOffer + expiringSoon",
        "{ me { displayName contracts { number status"
        " balance { amount availableAmount daysLeft openPromisedPayment { amount dueAt } }"
        " promisedPaymentOffer { available maxAmount termDays reasons }"
        " tariff { name monthlyFee speedMbps } tvPackages { name monthlyFee }"
        " payments(first: 10) { edges { node { amount status createdAt } } } }"
        " bonusAccount { points expiringSoon { points expiresAt } } } }",
    ),
    "balance": (
        "balance page: balance, monthlyCharges, ledger(first: 20)",
        "{ me { contracts { number balance { amount availableAmount daysLeft }"
        " monthlyCharges { total items { kind name quantity monthlyFee } }"
        " ledger(first: 20) { edges { cursor node { id kind amount balanceAfter description"
        " createdAt } } pageInfo { hasNextPage endCursor } } } } }",
    ),
    "expenses": (
        "expenses: expenseSummary over a year",
        '{ me { contracts { number expenseSummary(from: "2025-12-01", to: "2026-11-30") {'
        " totalCharged totalCredited byCategory { kind total }"
        " byMonth { month charged credited } } } } }",
    ),
    "tv": (
        "TV page: packages, Personal TV, Multiroom, line-up",
        "{ me { contracts { number tvPackages { id name monthlyFee }"
        " personalTvChannels { channel { number name } monthlyFee }"
        " multiroomDevices { id serial monthlyFee }"
        " channels { number name genre hd mustCarry } } } }",
    ),
    "catalogue": (
        "public catalogue: tariffs of a region, packages with channels, options",
        '{ tariffs(region: "MOW") { id name monthlyFee speedMbps unlimited }'
        " tvPackages { id name monthlyFee channels { number name hd } }"
        " serviceOptions { id name monthlyFee description } }",
    ),
    "sessions": ("mySessions", "{ mySessions { id createdAt lastUsedAt userAgent current } }"),
}
