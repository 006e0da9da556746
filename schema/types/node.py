"""The `Node` interface of global object identification (`node(id)`); the IDs themselves are
core.ids."""

from __future__ import annotations

import strawberry

ID_DESCRIPTION = (
    "The object's global ID: opaque, stable, unique across every type (clients cache by it). "
    "Give it back as it is where an ID is asked for; do not parse it."
)


@strawberry.interface(
    description="An object with a global ID (Relay). `node(id)` fetches contracts, payments, "
    "subscribers and catalogue items by it."
)
class Node:
    id: strawberry.ID = strawberry.field(description=ID_DESCRIPTION)
