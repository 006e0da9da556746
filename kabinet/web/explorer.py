"""Staff GraphQL explorer served at ``/explorer``.

Everything the page needs is served by this service itself — no CDN — so the
explorer works on a host without internet access:

* ``GET /explorer`` — the HTML page (strict Content-Security-Policy, no inline
  script). In production (``staff_only``) only a caller whose session cookie
  belongs to a staff member gets GraphiQL; anyone else gets a small sign-in
  page whose form posts the ``login`` mutation and reloads. (Introspection is
  refused to non-staff by ``/graphql`` itself.) In development the GraphiQL
  page is open to anyone, with the same sign-in form above it;
* ``GET /explorer/assets/{name}`` — a fixed whitelist of files: the GraphiQL and
  React browser (UMD) builds from ``<repo>/explorer/node_modules`` (installed by
  ``make explorer``, pinned in ``explorer/package-lock.json``) and the boot
  script ``kabinet/web/static/explorer.js``.

GraphiQL opens on ``kabinet/web/static/explorer-example.graphql`` instead of its
generic English welcome: a commented example in Russian, the operators' language
(how to sign in, find a subscriber, read a contract, support requests, the audit
log). The page carries it in a ``<template>`` (inert: no inline script, so the CSP
stays strict) and ``explorer.js`` hands it to GraphiQL as ``defaultQuery``.

Each asset is read from disk once, on first request, and kept in memory (with
a gzip-compressed copy for clients that accept it).
"""

from __future__ import annotations

import gzip
import html
import re
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from auth.sessions import Principal, authenticate
from core.db import RequestReader
from kabinet.web.auth import request_token
from models import Credential, StaffUser
from models.base import table_of

__all__ = [
    "ASSETS",
    "CONTENT_SECURITY_POLICY",
    "EXAMPLE_QUERY",
    "NODE_MODULES",
    "PAGE_HTML",
    "SIGN_IN_HTML",
    "explorer_routes",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / "explorer" / "node_modules"
STATIC_DIR = Path(__file__).resolve().parent / "static"

# What GraphiQL shows when it opens (and in every new tab), for support operators.
EXAMPLE_QUERY = (STATIC_DIR / "explorer-example.graphql").read_text(encoding="utf-8")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:"
)
ASSET_CACHE_CONTROL = "public, max-age=86400"
NOT_INSTALLED_MESSAGE = (
    "The Kabinet explorer is not installed on this server: its browser assets "
    "(explorer/node_modules) are missing.\n"
    "Run `make explorer` in the repository, then reload this page.\n"
)

_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"


_FAVICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="6" fill="#1f4e8c"/>'
    b'<text x="16" y="23" font-family="sans-serif" font-size="20" font-weight="bold" '
    b'text-anchor="middle" fill="#fff">K</text></svg>'
)


@dataclass(frozen=True)
class Asset:
    path: Path | None
    media_type: str
    vendored: bool  # True: comes from explorer/node_modules (needs `make explorer`)
    data: bytes | None = None  # built-in content, when there is no file


# The ONLY files /explorer/assets/ will ever serve. Names are looked up in this
# mapping; nothing from the request is ever joined onto a filesystem path.
ASSETS: dict[str, Asset] = {
    "react.production.min.js": Asset(
        NODE_MODULES / "react" / "umd" / "react.production.min.js", _JS, True
    ),
    "react-dom.production.min.js": Asset(
        NODE_MODULES / "react-dom" / "umd" / "react-dom.production.min.js", _JS, True
    ),
    "graphiql.min.js": Asset(NODE_MODULES / "graphiql" / "graphiql.min.js", _JS, True),
    "graphiql.min.css": Asset(NODE_MODULES / "graphiql" / "graphiql.min.css", _CSS, True),
    "explorer.js": Asset(STATIC_DIR / "explorer.js", _JS, False),
    # Without an icon link the browser asks for /favicon.ico and logs a 404.
    "favicon.svg": Asset(None, "image/svg+xml", False, data=_FAVICON_SVG),
}

# Order matters: React, then ReactDOM, then GraphiQL (reads window.React /
# window.ReactDOM), then our boot code.
_SCRIPTS = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "explorer.js",
)

# Shared by both pages: the sign-in bar / card. IDs are what explorer.js looks for.
_BASE_STYLE = """
    html, body { height: 100%; margin: 0; }
    body { display: flex; flex-direction: column; font-family: system-ui, sans-serif; }
    #kabinet-auth input { padding: 0.25rem 0.5rem; font: inherit; }
    #kabinet-auth button { padding: 0.25rem 0.75rem; font: inherit; cursor: pointer; }
    #kabinet-auth [hidden] { display: none; }
    #kabinet-auth-status { color: #2f6b2f; }
    #kabinet-auth-error { color: #b00020; }"""

# The auth form. __IDENTITY__ is the HTML-escaped name of whoever the session cookie
# belongs to (empty when nobody is signed in); explorer.js shows it as "Signed in as …".
_AUTH_FORM = """<form id="kabinet-auth" autocomplete="on" data-identity="__IDENTITY__">
    __HEADING__
    <span id="kabinet-auth-fields">
      <label>Identifier
        <input id="kabinet-identifier" name="identifier" autocomplete="username" required>
      </label>
      <label>Password
        <input id="kabinet-password" name="password" type="password"
               autocomplete="current-password" required>
      </label>
      <button id="kabinet-signin" type="submit">Sign in</button>
    </span>
    <span id="kabinet-auth-status" role="status"></span>
    <button id="kabinet-signout" type="button" hidden>Sign out</button>
    <span id="kabinet-auth-error" role="alert"></span>
  </form>"""

PAGE_HTML = (
    """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>Kabinet explorer</title>
  <link rel="icon" type="image/svg+xml" href="/explorer/assets/favicon.svg">
  <link rel="stylesheet" href="/explorer/assets/graphiql.min.css">
  <style>__BASE_STYLE__
    #kabinet-auth {
      display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem;
      padding: 0.5rem 1rem; border-bottom: 1px solid #d0d4dc; background: #f6f7f9;
      font-size: 14px;
    }
    #kabinet-auth strong { margin-right: 1rem; }
    #graphiql { flex: 1 1 auto; min-height: 0; }
    #graphiql > .kabinet-loading { padding: 1rem; color: #666; }
  </style>
</head>
<body>
  __AUTH_FORM__
  <div id="graphiql"><div class="kabinet-loading">Loading the explorer…</div></div>
  <template id="kabinet-example">__EXAMPLE__</template>
__SCRIPTS__
</body>
</html>
""".replace("__BASE_STYLE__", _BASE_STYLE)
    .replace(
        "__AUTH_FORM__", _AUTH_FORM.replace("__HEADING__", "<strong>Kabinet explorer</strong>")
    )
    .replace(
        "__SCRIPTS__",
        "\n".join(f'  <script src="/explorer/assets/{name}"></script>' for name in _SCRIPTS),
    )
    # last, so that nothing in the example is taken for a placeholder of this chain
    .replace("__EXAMPLE__", html.escape(EXAMPLE_QUERY, quote=False))
)

# Production, for anyone but signed-in staff: no GraphiQL, no React, only the form.
# explorer.js sees there is no #graphiql and, on a successful sign-in, reloads /explorer.
SIGN_IN_HTML = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>Sign in · Kabinet explorer</title>
  <link rel="icon" type="image/svg+xml" href="/explorer/assets/favicon.svg">
  <style>__BASE_STYLE__
    body { align-items: center; justify-content: center; background: #f6f7f9; color: #1d2330; }
    main {
      width: min(24rem, calc(100% - 2rem)); padding: 1.5rem 1.75rem; background: #fff;
      border: 1px solid #d0d4dc; border-radius: 8px; box-shadow: 0 2px 8px rgb(0 0 0 / 6%);
    }
    h1 { margin: 0 0 0.5rem; font-size: 1.25rem; }
    p { margin: 0 0 1rem; font-size: 14px; line-height: 1.4; }
    #kabinet-note { padding: 0.5rem 0.75rem; border-radius: 4px; background: #fff4e5;
                    color: #7a4100; }
    #kabinet-auth { display: flex; flex-direction: column; gap: 0.75rem; font-size: 14px; }
    #kabinet-auth-fields { display: flex; flex-direction: column; gap: 0.75rem; }
    #kabinet-auth label { display: flex; flex-direction: column; gap: 0.25rem; }
    #kabinet-auth button { align-self: flex-start; }
    #kabinet-auth-error:empty, #kabinet-auth-status:empty { display: none; }
  </style>
</head>
<body>
  <main>
    <h1>Kabinet explorer</h1>
    __NOTE__
    __AUTH_FORM__
  </main>
  <script src="/explorer/assets/explorer.js"></script>
</body>
</html>
""".replace("__BASE_STYLE__", _BASE_STYLE).replace(
    "__AUTH_FORM__", _AUTH_FORM.replace("__HEADING__\n    ", "")
)

_NOTE_ANONYMOUS = "<p>Staff only. Sign in with your staff account to open the explorer.</p>"
_NOTE_NOT_STAFF = (
    '<p id="kabinet-note" role="alert"><strong>Staff only.</strong> '
    "You are signed in as {identity}, which is not a staff account. "
    "Sign in with a staff account, or sign out.</p>"
)

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _vendor_installed() -> bool:
    return all(
        asset.path is not None and asset.path.is_file()
        for asset in ASSETS.values()
        if asset.vendored
    )


def _load(asset: Asset) -> tuple[bytes, bytes]:
    if asset.data is not None:
        raw = asset.data
    elif asset.path is not None:
        raw = asset.path.read_bytes()
    else:  # pragma: no cover - every Asset has one or the other
        raise FileNotFoundError("asset has neither a path nor data")
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)


_staff = table_of(StaffUser)
_credentials = table_of(Credential)


async def _signed_in(request: Request) -> tuple[Principal | None, str]:
    """Who the session cookie belongs to, and a name to show for them.

    Only the cookie counts: a page load never carries an ``Authorization`` header.
    Without a cookie the database is not touched at all.
    """
    token = request_token(request, bearer=False)
    if token is None:
        return None, ""
    reader = RequestReader(request.app.state.engine)
    try:
        principal = await authenticate(reader, token)
        if principal is None:
            return None, ""
        if principal.is_staff:
            statement = sa.select(_staff.c.username).where(_staff.c.id == principal.id)
        else:
            statement = sa.select(_credentials.c.login).where(
                _credentials.c.subscriber_id == principal.id
            )
        rows = await reader.rows(statement)
    finally:
        await reader.close()
    name = rows[0][0] if rows and rows[0][0] else ("staff" if principal.is_staff else "subscriber")
    return principal, str(name)


_PLACEHOLDER = re.compile(r"__(IDENTITY|NOTE)__")


def _fill(template: str, **values: str) -> str:
    """One pass over the template: what is put in is never searched for placeholders."""
    return _PLACEHOLDER.sub(lambda match: values[match.group(1).lower()], template)


def _graphiql_page(identity: str) -> str:
    return _fill(PAGE_HTML, identity=html.escape(identity, quote=True))


def _sign_in_page(principal: Principal | None, identity: str) -> str:
    escaped = html.escape(identity, quote=True)
    note = (
        _NOTE_ANONYMOUS
        if principal is None
        else _NOTE_NOT_STAFF.format(identity=f"<strong>{escaped}</strong>")
    )
    return _fill(SIGN_IN_HTML, identity=escaped, note=note)


def explorer_routes(*, enabled: bool = True, staff_only: bool = False) -> list[Route]:
    """Routes for the staff GraphQL explorer; an empty list when disabled.

    With ``staff_only`` (production) ``GET /explorer`` gives GraphiQL only to a caller
    whose session cookie is a staff member's, and the sign-in page to anyone else; the
    assets stay public (open-source code, no data). The app must have
    ``app.state.engine`` (``create_app`` sets it).
    """
    if not enabled:
        return []

    # name -> (raw bytes, gzip bytes); filled lazily, one disk read per asset.
    cache: dict[str, tuple[bytes, bytes]] = {}

    async def page(request: Request) -> Response:
        if not _vendor_installed():
            return PlainTextResponse(
                NOT_INSTALLED_MESSAGE, status_code=503, headers={"Cache-Control": "no-store"}
            )
        principal, identity = await _signed_in(request)
        if staff_only and (principal is None or not principal.is_staff):
            return HTMLResponse(_sign_in_page(principal, identity), headers=_PAGE_HEADERS)
        return HTMLResponse(_graphiql_page(identity), headers=_PAGE_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        spec = ASSETS.get(name)
        if spec is None:
            return PlainTextResponse("Not Found\n", status_code=404)
        entry = cache.get(name)
        if entry is None:
            try:
                entry = await anyio.to_thread.run_sync(_load, spec)
            except OSError:
                if spec.vendored:
                    return PlainTextResponse(
                        NOT_INSTALLED_MESSAGE,
                        status_code=503,
                        headers={"Cache-Control": "no-store"},
                    )
                return PlainTextResponse("Not Found\n", status_code=404)
            cache[name] = entry
        raw, compressed = entry
        headers = {
            "Cache-Control": ASSET_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
            "Vary": "Accept-Encoding",
        }
        if "gzip" in request.headers.get("accept-encoding", "").lower():
            headers["Content-Encoding"] = "gzip"
            return Response(compressed, media_type=spec.media_type, headers=headers)
        return Response(raw, media_type=spec.media_type, headers=headers)

    return [
        Route("/explorer", page, methods=["GET"], name="explorer"),
        Route("/explorer/assets/{name}", asset, methods=["GET"], name="explorer_asset"),
    ]
