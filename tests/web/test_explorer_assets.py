"""The /explorer page and its assets are self-contained and safely served.

Runs against a Starlette app made of ``explorer_routes()`` only. Needs the
vendored assets (``make explorer``); without them the page must answer 503.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser

import httpx
import pytest
from starlette.applications import Starlette

from kabinet.web import explorer as explorer_module
from kabinet.web.explorer import CONTENT_SECURITY_POLICY, explorer_routes

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


@pytest.fixture
async def client():
    app = Starlette(routes=explorer_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


@needs_assets
async def test_page_is_html_with_csp(client: httpx.AsyncClient) -> None:
    resp = await client.get("/explorer")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert "<title>Kabinet explorer</title>" in resp.text


@needs_assets
async def test_page_references_no_external_host(client: httpx.AsyncClient) -> None:
    html = (await client.get("/explorer")).text
    external = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'<>]*", html)
    assert external == [], f"external URLs in /explorer: {external}"
    assert not re.search(r"https?://", html), "absolute URL in /explorer"
    # strict CSP forbids inline script: every <script> must load a same-origin file
    for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I):
        attrs, body = match.groups()
        assert "src=" in attrs and body.strip() == "", "inline <script> in /explorer"


@needs_assets
async def test_every_referenced_asset_is_served(client: httpx.AsyncClient) -> None:
    html = (await client.get("/explorer")).text
    collector = _LinkCollector()
    collector.feed(html)
    links = collector.links
    assert any(link.endswith(".css") for link in links)
    assert sum(link.endswith(".js") for link in links) >= 4
    for link in links:
        assert link.startswith("/explorer/assets/"), link
        resp = await client.get(link)
        assert resp.status_code == 200, link
        assert resp.content, f"empty body for {link}"
        assert resp.headers["cache-control"] == "public, max-age=86400"
        expected = {".css": "text/css", ".svg": "image/svg+xml"}.get(
            link[link.rfind(".") :], "text/javascript"
        )
        assert resp.headers["content-type"].startswith(expected), link


@needs_assets
async def test_asset_gzip_and_identity_bodies_match(client: httpx.AsyncClient) -> None:
    plain = await client.get(
        "/explorer/assets/graphiql.min.js", headers={"Accept-Encoding": "identity"}
    )
    zipped = await client.get(
        "/explorer/assets/graphiql.min.js", headers={"Accept-Encoding": "gzip"}
    )
    assert plain.status_code == zipped.status_code == 200
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decodes gzip transparently
    assert b"window.GraphiQL" in plain.content


async def test_boot_script_is_served(client: httpx.AsyncClient) -> None:
    resp = await client.get("/explorer/assets/explorer.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/javascript")
    assert b"GraphiQL.createFetcher" in resp.content
    assert b"login(input: $input)" in resp.content


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
async def test_unknown_or_traversal_asset_is_404(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
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
