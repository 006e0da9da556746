"""The /explorer page and its assets are self-contained and safely served, and in
production only signed-in staff get GraphiQL.

Most tests run against a Starlette app made of ``explorer_routes()`` only; the gate
tests run against the real app (``client``: development; ``prod_client``: production)
on both databases. Needs the vendored assets (``make explorer``); without them the page
must answer 503.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from html import escape, unescape
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from auth.sessions import COOKIE_NAME
from core.settings import Settings
from kabinet.app import create_app
from kabinet.web import explorer as explorer_module
from kabinet.web.explorer import CONTENT_SECURITY_POLICY, explorer_routes
from tests.conftest import gql_raw, production_settings
from tests.factories import DEFAULT_PASSWORD, make_staff, make_subscriber, sign_in

BASE_URL = "http://kabinet.test"

# Skipped on a workstation that has not run `make explorer`; in CI (CI set) a
# missing install is a failure, not a skip.
needs_assets = pytest.mark.skipif(
    not explorer_module._vendor_installed() and not os.environ.get("CI"),
    reason="explorer/node_modules is missing: run `make explorer`",
)


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for attr, value in attrs:
            if attr in ("src", "href") and value:
                self.links.append(value)


def _assert_self_contained(html: str) -> None:
    external = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>]*", html)
    assert external == [], f"external URLs in /explorer: {external}"
    assert not re.search(r"https?://", html), "absolute URL in /explorer"
    # strict CSP forbids inline script: every <script> must load a same-origin file
    for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I):
        attrs, body = match.groups()
        assert "src=" in attrs and body.strip() == "", "inline <script> in /explorer"


@pytest.fixture
async def explorer_client() -> AsyncIterator[httpx.AsyncClient]:
    """The explorer routes alone (development mode: no database behind them)."""
    app = Starlette(routes=explorer_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


@needs_assets
async def test_page_is_html_with_csp(explorer_client: httpx.AsyncClient) -> None:
    resp = await explorer_client.get("/explorer")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert "<title>Kabinet explorer</title>" in resp.text


@needs_assets
async def test_page_references_no_external_host(explorer_client: httpx.AsyncClient) -> None:
    _assert_self_contained((await explorer_client.get("/explorer")).text)


@needs_assets
async def test_every_referenced_asset_is_served(explorer_client: httpx.AsyncClient) -> None:
    html = (await explorer_client.get("/explorer")).text
    collector = _LinkCollector()
    collector.feed(html)
    links = collector.links
    assert any(link.endswith(".css") for link in links)
    assert sum(link.endswith(".js") for link in links) >= 4
    for link in links:
        assert link.startswith("/explorer/assets/"), link
        resp = await explorer_client.get(link)
        assert resp.status_code == 200, link
        assert resp.content, f"empty body for {link}"
        assert resp.headers["cache-control"] == "public, max-age=86400"
        expected = {".css": "text/css", ".svg": "image/svg+xml"}.get(
            link[link.rfind(".") :], "text/javascript"
        )
        assert resp.headers["content-type"].startswith(expected), link


@needs_assets
async def test_asset_gzip_and_identity_bodies_match(explorer_client: httpx.AsyncClient) -> None:
    plain = await explorer_client.get(
        "/explorer/assets/graphiql.min.js", headers={"Accept-Encoding": "identity"}
    )
    zipped = await explorer_client.get(
        "/explorer/assets/graphiql.min.js", headers={"Accept-Encoding": "gzip"}
    )
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decodes gzip transparently
    assert b"window.GraphiQL" in plain.content


async def test_boot_script_is_served(explorer_client: httpx.AsyncClient) -> None:
    resp = await explorer_client.get("/explorer/assets/explorer.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/javascript")
    assert b"GraphiQL.createFetcher" in resp.content
    assert b"login(input: $input)" in resp.content
    for field in (b"accessToken", b"refreshToken", b"expiresAt", b"mustChangePassword"):
        assert field in resp.content
    assert b"credentials: 'same-origin'" in resp.content
    assert b"Signed in as " in resp.content


@pytest.mark.parametrize(
    "path",
    [
        "/explorer/assets/unknown.js",
        "/explorer/assets/graphiql.js",
        "/explorer/assets/package.json",
        "/explorer/assets/",
        "/explorer/assets/..%2F..%2Fpyproject.toml",
        "/explorer/assets/%2E%2E%2F%2E%2E%2Fpyproject.toml",
        "/explorer/assets/../../pyproject.toml",
        "/explorer/assets/..%2Fexplorer.py",
    ],
)
async def test_unknown_or_traversal_asset_is_404(
    explorer_client: httpx.AsyncClient, path: str
) -> None:
    resp = await explorer_client.get(path)
    assert resp.status_code == 404
    assert b"[build-system]" not in resp.content


async def test_disabled_mounts_nothing() -> None:
    assert explorer_routes(enabled=False) == []


async def test_missing_node_modules_answers_503(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    missing = tmp_path / "node_modules"
    patched = {
        name: (
            explorer_module.Asset(missing / name, spec.media_type, True) if spec.vendored else spec
        )
        for name, spec in explorer_module.ASSETS.items()
    }
    monkeypatch.setattr(explorer_module, "ASSETS", patched)
    app = Starlette(routes=explorer_routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as c:
        page = await c.get("/explorer")
        asset = await c.get("/explorer/assets/graphiql.min.js")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/plain")
    assert "make explorer" in page.text
    assert "Traceback" not in page.text
    assert asset.status_code == 503


# --------------------------------------------------------------------------- the gate
# The real app: /explorer decides from the session cookie. The cookie is Secure, so httpx
# (over http://) does not send it back by itself: the tests pass it by hand.

LOGIN = """
mutation($input: LoginInput!) {
  login(input: $input) {
    accessToken refreshToken expiresAt mustChangePassword errors { code message }
  }
}
"""


def _production_settings(migrated_url: str) -> Settings:
    return production_settings(migrated_url)


@pytest.fixture
def prod_settings(migrated_url: str) -> Settings:
    return _production_settings(migrated_url)


@pytest.fixture
async def prod_app(prod_settings: Settings, engine: Any) -> AsyncIterator[Any]:
    """The real app in production mode (`engine` empties the tables first)."""
    application = create_app(prod_settings)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
async def prod_client(prod_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=prod_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _sign_in_cookie(client: httpx.AsyncClient, identifier: str, password: str) -> str:
    """Signs in with the real `login` mutation; returns a `cookie` header value."""
    response = await gql_raw(
        client, LOGIN, {"input": {"identifier": identifier, "password": password}}
    )
    assert response.status_code == 200, response.text
    payload = response.json()["data"]["login"]
    assert payload["errors"] == [] and payload["accessToken"], payload
    set_cookie = response.headers["set-cookie"]
    attributes = {part.strip().lower() for part in set_cookie.split(";")}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= attributes, set_cookie
    name, _, value = set_cookie.split(";", 1)[0].partition("=")
    assert name == COOKIE_NAME and value == payload["accessToken"]
    return f"{COOKIE_NAME}={value}"


def _is_sign_in_page(resp: httpx.Response) -> bool:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert resp.headers["cache-control"] == "no-store"
    html = resp.text
    _assert_self_contained(html)
    signin = '<form id="kabinet-auth"' in html and "graphiql.min.js" not in html
    if signin:
        assert 'id="kabinet-identifier"' in html and 'id="kabinet-password"' in html
        assert '<script src="/explorer/assets/explorer.js"></script>' in html
        for vendored in ("react.production.min.js", "react-dom.production.min.js", "graphiql"):
            assert vendored not in html
        assert 'id="graphiql"' not in html
    return signin


def _is_graphiql_page(resp: httpx.Response) -> bool:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    html = resp.text
    return (
        '<script src="/explorer/assets/graphiql.min.js"></script>' in html
        and 'id="graphiql"' in html
        and '<form id="kabinet-auth"' in html
    )


@needs_assets
async def test_production_anonymous_gets_the_sign_in_page(
    prod_client: httpx.AsyncClient,
) -> None:
    for headers in ({}, {"cookie": f"{COOKIE_NAME}=not-a-session"}):
        resp = await prod_client.get("/explorer", headers=headers)
        assert _is_sign_in_page(resp), resp.text
        assert "Staff only" in resp.text
        assert 'data-identity=""' in resp.text
        assert "signed in as" not in resp.text.lower()
    # The bundles stay public (open-source code, no data); introspection does not.
    assert (await prod_client.get("/explorer/assets/graphiql.min.js")).status_code == 200
    body = (await gql_raw(prod_client, "{ __schema { queryType { name } } }")).json()
    assert "data" not in body  # a request error (SPEC §4)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@needs_assets
async def test_production_subscriber_gets_the_sign_in_page_with_staff_only_note(
    prod_client: httpx.AsyncClient, session_factory: Any, prod_settings: Settings
) -> None:
    subscriber = await make_subscriber(session_factory, prod_settings, login="ivanov")
    cookie = await _sign_in_cookie(prod_client, "ivanov", subscriber.password)

    resp = await prod_client.get("/explorer", headers={"cookie": cookie})

    assert _is_sign_in_page(resp), resp.text
    assert 'id="kabinet-note"' in resp.text
    assert "Staff only." in resp.text
    assert "You are signed in as <strong>ivanov</strong>" in resp.text
    assert 'data-identity="ivanov"' in resp.text
    body = (
        await gql_raw(
            prod_client, "{ __schema { queryType { name } } }", headers={"cookie": cookie}
        )
    ).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@needs_assets
async def test_production_staff_gets_graphiql_until_signed_out(
    prod_client: httpx.AsyncClient, session_factory: Any, prod_settings: Settings
) -> None:
    # A name that must be escaped where the page shows it.
    _, username, password = await make_staff(
        session_factory, prod_settings, username='ops<b>&"x"', role="OPERATOR"
    )
    cookie = await _sign_in_cookie(prod_client, username, password)

    resp = await prod_client.get("/explorer", headers={"cookie": cookie})

    assert _is_graphiql_page(resp), resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert 'data-identity="ops&lt;b&gt;&amp;&quot;x&quot;"' in resp.text
    assert "<b>&" not in resp.text
    _assert_self_contained(resp.text)
    body = (
        await gql_raw(
            prod_client, "{ __schema { queryType { name } } }", headers={"cookie": cookie}
        )
    ).json()
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"

    # The page is the cookie's, not a bearer token's: a page load never carries one.
    bearer = {"Authorization": f"Bearer {cookie.partition('=')[2]}"}
    assert _is_sign_in_page(await prod_client.get("/explorer", headers=bearer))

    # Signed out: the session is revoked, the same cookie opens nothing any more.
    logout = await gql_raw(prod_client, "mutation { logout { ok } }", headers={"cookie": cookie})
    assert logout.json()["data"]["logout"]["ok"] is True
    assert _is_sign_in_page(await prod_client.get("/explorer", headers={"cookie": cookie}))


@needs_assets
async def test_production_wrong_password_sets_no_cookie(
    prod_client: httpx.AsyncClient, session_factory: Any, prod_settings: Settings
) -> None:
    _, username, _ = await make_staff(session_factory, prod_settings)
    response = await gql_raw(
        prod_client, LOGIN, {"input": {"identifier": username, "password": "wrong " * 3}}
    )
    payload = response.json()["data"]["login"]
    assert payload["accessToken"] is None
    assert payload["errors"][0]["code"] == "INVALID_CREDENTIALS"
    assert payload["errors"][0]["message"]
    assert "set-cookie" not in response.headers


@needs_assets
async def test_development_gives_graphiql_to_anyone(
    client: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    anonymous = await client.get("/explorer")
    assert _is_graphiql_page(anonymous), anonymous.text
    assert 'data-identity=""' in anonymous.text

    subscriber = await make_subscriber(session_factory, settings, login="petrov")
    cookie = await _sign_in_cookie(client, "petrov", subscriber.password)
    signed_in = await client.get("/explorer", headers={"cookie": cookie})
    assert _is_graphiql_page(signed_in), signed_in.text
    assert 'data-identity="petrov"' in signed_in.text

    _, username, _ = await make_staff(session_factory, settings)
    cookie = await _sign_in_cookie(client, username, DEFAULT_PASSWORD)
    staff = await client.get("/explorer", headers={"cookie": cookie})
    assert _is_graphiql_page(staff), staff.text
    assert f'data-identity="{username}"' in staff.text


@needs_assets
async def test_explorer_page_returns_its_read_connection(
    prod_app: Any, prod_client: httpx.AsyncClient, session_factory: Any, prod_settings: Settings
) -> None:
    """Page loads with a cookie do not keep pooled connections (the reader is closed)."""
    _, username, password = await make_staff(session_factory, prod_settings)
    cookie = await _sign_in_cookie(prod_client, username, password)
    for _ in range(prod_settings.database_pool_size + 15):
        resp = await prod_client.get("/explorer", headers={"cookie": cookie})
        assert _is_graphiql_page(resp)
    assert prod_app.state.engine.pool.checkedout() == 0


def test_names_are_escaped_and_never_read_as_placeholders() -> None:
    not_staff = object()  # any principal that is not None
    for name in ("__NOTE__", "__IDENTITY__", '"><script src="/x.js"></script>'):
        escaped = escape(name, quote=True)
        page = explorer_module._sign_in_page(not_staff, name)  # type: ignore[arg-type]
        assert page.count('<p id="kabinet-note"') == 1
        assert f'data-identity="{escaped}"' in page
        assert f"You are signed in as <strong>{escaped}</strong>" in page
        assert '<script src="/x.js">' not in page
        graphiql = explorer_module._graphiql_page(name)
        assert f'data-identity="{escaped}"' in graphiql
        assert '<script src="/x.js">' not in graphiql


# --------------------------------------------------------------------------- the example
# GraphiQL opens on a commented example in Russian for support operators (issue 15, item 6).

_TEMPLATE = re.compile(r'<template id="kabinet-example">(.*?)</template>', re.S)
_EXAMPLE_OPERATIONS = ("FindSubscriber", "ReadContract", "SupportRequests", "AuditLog")


def _served_example(page: str) -> str:
    found = _TEMPLATE.findall(page)
    assert len(found) == 1, "no (or more than one) example template in /explorer"
    return unescape(found[0])


@needs_assets
async def test_graphiql_opens_on_the_russian_example(explorer_client: httpx.AsyncClient) -> None:
    page = (await explorer_client.get("/explorer")).text

    example = _served_example(page)
    assert example == explorer_module.EXAMPLE_QUERY  # the whole file, unchanged by escaping
    # how to sign in (with the form this page has), then what an operator does most
    assert "Войдите" in example and "Identifier, Password" in example
    assert 'id="kabinet-identifier"' in page and 'id="kabinet-signin"' in page
    for text in (
        "Найти абонента",
        'subscribers(search: "Иванов", first: 10)',
        "Договор по номеру",
        'contract(number: "770000000101")',
        "ledger(first: 10)",
        "supportRequests(first: 20)",
        "auditLog(first: 20)",
    ):
        assert text in example, text
    assert all(f"query {name} " in example for name in _EXAMPLE_OPERATIONS)
    # the comments are in Russian (field and type names aside)
    comments = "\n".join(line for line in example.splitlines() if line.lstrip().startswith("#"))
    assert comments.count("\n") > 20
    cyrillic, latin = len(re.findall("[А-Яа-яЁё]", comments)), len(re.findall("[A-Za-z]", comments))
    assert cyrillic > 2 * latin, comments
    # shown by GraphiQL as its defaultQuery; inert markup, not an inline script
    boot = (await explorer_client.get("/explorer/assets/explorer.js")).text
    assert "getElementById('kabinet-example')" in boot and "defaultQuery: exampleQuery" in boot
    _assert_self_contained(page)


def _example_for(operation: str) -> dict[str, Any]:
    return {"query": explorer_module.EXAMPLE_QUERY, "operationName": operation}


def _error_paths(body: dict[str, Any]) -> list[Any]:
    return [part for error in body["errors"] for part in error["path"]]


async def test_the_example_runs_for_staff_as_its_comments_say(
    client: httpx.AsyncClient, session_factory: Any, settings: Settings
) -> None:
    """Every operation of the example, sent as GraphiQL sends it (the whole editor and an
    operationName), passes validation and the limits and answers a signed-in operator;
    signed out it is UNAUTHENTICATED and for a subscriber FORBIDDEN, as the comment says."""
    subscriber = await make_subscriber(session_factory, settings, login="ivanov")
    _, username, password = await make_staff(session_factory, settings)
    staff = await sign_in(client, username, password)
    own = await sign_in(client, "ivanov", subscriber.password)

    for operation in _EXAMPLE_OPERATIONS:
        response = await client.post("/graphql", json=_example_for(operation), headers=staff)
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, (operation, body)
    for operation, field in (
        ("FindSubscriber", "subscribers"),
        ("SupportRequests", "supportRequests"),
        ("AuditLog", "auditLog"),
    ):
        for headers, code in (({}, "UNAUTHENTICATED"), (own, "FORBIDDEN")):
            body = (
                await client.post("/graphql", json=_example_for(operation), headers=headers)
            ).json()
            assert [e["extensions"]["code"] for e in body["errors"]] == [code], body
            assert _error_paths(body) == [field]

    # the example's contract, swapped for one that exists, reads as the comment says
    number = subscriber.contract_numbers[0]
    query = explorer_module.EXAMPLE_QUERY.replace('"770000000101"', f'"{number}"')
    body = (
        await client.post(
            "/graphql", json={"query": query, "operationName": "ReadContract"}, headers=staff
        )
    ).json()
    assert "errors" not in body, body
    contract = body["data"]["contract"]
    assert contract["number"] == number and contract["balance"]["amount"] == "0.00"
    assert isinstance(contract["ledger"]["edges"], list)
