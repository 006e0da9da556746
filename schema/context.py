"""The typed per-request context: request, settings, database access, loaders, principal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from strawberry.types import Info as StrawberryInfo

from auth.sessions import Principal
from core.db import RequestReader
from core.settings import Settings
from resolvers.loaders import Loaders


@dataclass(slots=True)
class Context:
    request: Request | None
    settings: Settings
    # The request's one connection and unit of work: every read and write of the request
    # goes through it (no engine or session factory here, so no field can take a second).
    reader: RequestReader
    loaders: Loaders
    principal: Principal | None = None
    # The request presented a Bearer token or session cookie that names no live session:
    # fields for the caller answer UNAUTHENTICATED (auth/permissions.LiveSessionIfAny).
    session_ended: bool = False
    client_address: str = "unknown"
    user_agent: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_cookies: list[dict[str, Any]] = field(default_factory=list)
    clear_cookies: list[str] = field(default_factory=list)


Info = StrawberryInfo[Context, None]


def asks_for(info: Info, name: str) -> bool:
    """Whether the field being resolved selects subfield `name` directly (fragments are not
    looked into): lets a field start the loads its children will make, so that they travel
    in the same statement. Only ever a hint: a miss costs a statement, never an answer."""
    for node in info._raw_info.field_nodes:
        selection_set = node.selection_set
        if selection_set is None:
            continue
        for selection in selection_set.selections:
            field_name = getattr(selection, "name", None)
            if field_name is not None and field_name.value == name:
                return True
    return False
