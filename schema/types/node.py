"""The `Node` interface of global object identification (`node(id)`); the IDs themselves are
core.ids."""

from __future__ import annotations

import strawberry


@strawberry.interface(description="An object with a global ID, fetchable by `node(id)`.")
class Node:
    id: strawberry.ID
