"""Who is calling an HTTP endpoint: one rule for /graphql, receipts, statements and the
explorer — `Authorization: Bearer <token>`, else the `__Host-` session cookie."""

from __future__ import annotations

from starlette.requests import Request

from auth.sessions import COOKIE_NAME, Principal, authenticate
from core.db import RequestReader


def request_token(request: Request, *, bearer: bool = True) -> str | None:
    """The access token a request carries; an Authorization header of another scheme counts
    as none (it is not silently replaced by the cookie). `bearer=False`: the cookie only
    (page loads never carry a bearer token)."""
    authorization = request.headers.get("authorization") if bearer else None
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
    else:
        token = request.cookies.get(COOKIE_NAME, "")
    return token.strip() or None


def ended_credential(request: Request, principal: Principal | None) -> str | None:
    """What a request presented that names no live session, when its caller is `principal`:
    "bearer", "cookie" (the answer clears it) or None (a live session, or nothing presented).
    SPEC §4: such a request hears UNAUTHENTICATED on the fields that are for the caller."""
    if principal is not None or request_token(request) is None:
        return None
    return "bearer" if "authorization" in request.headers else "cookie"


async def request_principal(
    request: Request, reader: RequestReader, *, bearer: bool = True
) -> Principal | None:
    token = request_token(request, bearer=bearer)
    return None if token is None else await authenticate(reader, token)
