"""/explorer in a real headless Chromium against a real uvicorn server.

Needs Debian's `chromium` package (/usr/bin/chromium) and the vendored assets
(`make explorer`). Without Chromium the tests skip locally; with CI set they
fail instead, so CI cannot go green without running them.

Everything runs against the real app over the migrated test database (both backends):
the catalogue query and the in-page sign-in in development, and the production gate (the
sign-in page, then GraphiQL once a staff member has signed in). Set
EXPLORER_SCREENSHOT_DIR to keep screenshots of the pages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from core.settings import Settings
from kabinet.app import create_app
from kabinet.web import explorer as explorer_module
from tests.conftest import production_settings
from tests.factories import make_staff, make_subscriber
from tests.live import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUERY = "{ regions { code name } }"
STAFF_QUERY = "{ auditLog { edges { node { action } } } }"
WRONG_LOGIN = "The login or password is wrong."


def _skip_or_fail(message: str) -> None:
    """Skip on a workstation; in CI (CI set) a missing prerequisite is a failure."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


if not CHROMIUM.exists():
    _skip_or_fail(
        f"{CHROMIUM} not found: install Debian's chromium package "
        "(apt-get install -y chromium) to run the explorer browser test"
    )
if not explorer_module._vendor_installed():
    _skip_or_fail("explorer/node_modules is missing: run `make explorer`")
try:
    from playwright import sync_api
except ImportError:  # pragma: no cover
    _skip_or_fail("playwright is not installed: pip install -e '.[dev]'")


# --------------------------------------------------------------------------- apps + servers


@pytest.fixture
def explorer_app(settings: Settings) -> Starlette:
    """The real Kabinet app (development) over the migrated test database."""
    return create_app(settings)


@pytest.fixture
def live_url(explorer_app: Starlette, engine: Any) -> Iterator[str]:
    # `engine` empties the tables before the app is served.
    with serve_in_thread(explorer_app, lifespan="off") as url:
        yield url


@pytest.fixture
def prod_settings(migrated_url: str) -> Settings:
    return production_settings(migrated_url)


@pytest.fixture
def prod_url(prod_settings: Settings, engine: Any) -> Iterator[str]:
    """The real app in production mode: /explorer is for signed-in staff only."""
    with serve_in_thread(create_app(prod_settings), lifespan="off") as url:
        yield url


@pytest.fixture
async def staff_account(session_factory: Any, settings: Settings) -> tuple[str, str]:
    _, username, password = await make_staff(session_factory, settings, role="OPERATOR")
    return username, password


@pytest.fixture
async def prod_accounts(
    session_factory: Any, prod_settings: Settings
) -> dict[str, tuple[str, str]]:
    _, username, password = await make_staff(session_factory, prod_settings, role="OPERATOR")
    subscriber = await make_subscriber(session_factory, prod_settings, login="sidorov")
    return {"staff": (username, password), "subscriber": ("sidorov", subscriber.password)}


# --------------------------------------------------------------------------- browser


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium through Playwright's sync API, which runs an event loop of its own on this
    thread: tests must list it AFTER every async fixture (database, accounts), so that
    those are set up before it starts and torn down after it stops."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


class _PageWatch:
    """Records what would betray a CDN dependency or a CSP problem."""

    def __init__(self, page: Any, origin: str) -> None:
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda req: self.requests.append(req.url))
        page.on(
            "response",
            lambda resp: (
                self.errors.append(f"HTTP {resp.status}: {resp.url}")
                if resp.status >= 400
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )

    def check(self) -> None:
        foreign = [
            url
            for url in self.requests
            if not (url.startswith(self.origin + "/") or url.startswith("data:"))
        ]
        assert foreign == [], f"requests to other origins: {foreign}"
        assert self.errors == [], "\n".join(self.errors)


def _open_explorer(browser: Any, base_url: str) -> tuple[Any, _PageWatch]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    watch = _PageWatch(page, base_url)
    resp = page.goto(f"{base_url}/explorer")
    assert resp is not None and resp.status == 200
    page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=30_000)
    return page, watch


def _run_query(page: Any, query: str) -> dict[str, Any]:
    # Empty the result pane first, so that the wait below sees this query's answer.
    page.evaluate(
        """(q) => {
            document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(q);
            const pane = document.querySelector('.graphiql-response .CodeMirror');
            if (pane) pane.CodeMirror.setValue('');
        }""",
        query,
    )
    # GraphiQL reads the operations of the editor a moment after a change; until then it
    # still sees those of the example it opened on (several), and its execute button is
    # a menu to choose one from, not a button that runs the query.
    page.wait_for_function(
        """(q) => {
            const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
            const button = document.querySelector('.graphiql-execute-button');
            return cm.getValue() === q && (cm.operations || []).length === 1
                && button !== null && !button.hasAttribute('aria-haspopup');
        }""",
        arg=query,
        timeout=30_000,
    )
    page.click(".graphiql-execute-button")
    handle = page.wait_for_function(
        """() => {
            const el = document.querySelector('.graphiql-response .CodeMirror');
            const text = el && el.CodeMirror.getValue();
            if (!text) return null;
            try { return JSON.parse(text); } catch (e) { return null; }
        }""",
        timeout=30_000,
    )
    return handle.json_value()


def _editor_text(page: Any) -> str:
    text: str = page.evaluate(
        "() => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
    )
    return text


def _sign_in(page: Any, identifier: str, password: str) -> None:
    page.fill("#kabinet-identifier", identifier)
    page.fill("#kabinet-password", password)
    page.click("#kabinet-signin")


def _wait_for_error(page: Any) -> str:
    page.wait_for_function(
        "() => document.querySelector('#kabinet-auth-error').textContent.length > 0"
    )
    return page.inner_text("#kabinet-auth-error")


def _screenshot(page: Any, name: str) -> None:
    directory = os.environ.get("EXPLORER_SCREENSHOT_DIR")
    if directory:
        page.screenshot(path=str(Path(directory) / name))


def test_explorer_runs_a_query_in_chromium(live_url: str, browser: Any) -> None:
    page, watch = _open_explorer(browser, live_url)
    assert page.title() == "Kabinet explorer"

    result = _run_query(page, QUERY)

    assert "errors" not in result, json.dumps(result)
    regions = result["data"]["regions"]
    assert regions, "no regions in the response"
    assert all(set(r) == {"code", "name"} for r in regions)
    # the result pane (what a person sees) shows them
    pane = page.inner_text(".graphiql-response")
    assert regions[0]["code"] in pane
    _screenshot(page, "explorer-development.png")
    watch.check()


def test_explorer_opens_on_the_russian_example(
    live_url: str, staff_account: tuple[str, str], browser: Any
) -> None:
    """GraphiQL opens on the operators' example, and it works as its comments say: sign in
    with the form, put the cursor inside a query, Ctrl+Enter runs that one."""
    page, watch = _open_explorer(browser, live_url)
    assert _editor_text(page) == explorer_module.EXAMPLE_QUERY
    assert "Welcome to GraphiQL" not in page.inner_text("#graphiql")
    _screenshot(page, "explorer-example.png")

    username, password = staff_account
    _sign_in(page, username, password)
    page.wait_for_selector("#kabinet-signout", state="visible")
    page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    assert _editor_text(page) == explorer_module.EXAMPLE_QUERY  # signing in keeps it

    for operation, field in (("FindSubscriber", "subscribers"), ("AuditLog", "auditLog")):
        line = next(
            number
            for number, text in enumerate(explorer_module.EXAMPLE_QUERY.splitlines())
            if text.startswith(f"query {operation} ")
        )
        page.evaluate(
            """([line]) => {
                const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;
                const pane = document.querySelector('.graphiql-response .CodeMirror');
                if (pane) pane.CodeMirror.setValue('');
                cm.focus();
                cm.setCursor({line: line + 2, ch: 4});
            }""",
            [line],
        )
        page.keyboard.press("Control+Enter")
        handle = page.wait_for_function(
            """() => {
                const el = document.querySelector('.graphiql-response .CodeMirror');
                const text = el && el.CodeMirror.getValue();
                if (!text) return null;
                try { return JSON.parse(text); } catch (e) { return null; }
            }""",
            timeout=30_000,
        )
        result = handle.json_value()
        assert "errors" not in result, json.dumps(result)
        assert isinstance(result["data"][field]["edges"], list), result
        assert list(result["data"]) == [field]  # that operation only
    watch.check()


def test_explorer_sign_in_with_the_real_login(
    live_url: str, staff_account: tuple[str, str], browser: Any
) -> None:
    username, password = staff_account
    page, watch = _open_explorer(browser, live_url)

    # anonymous: a staff-only field is refused
    refused = _run_query(page, STAFF_QUERY)
    assert refused.get("errors") and not (refused.get("data") or {}).get("auditLog"), refused

    # wrong password: the server's message is shown, nobody is signed in
    _sign_in(page, username, "not the password")
    assert _wait_for_error(page) == WRONG_LOGIN
    assert page.inner_text("#kabinet-auth-status") == ""
    assert page.is_hidden("#kabinet-signout")

    # right password: "Signed in as …", and the staff-only query answers
    page.fill("#kabinet-password", password)
    page.click("#kabinet-signin")
    page.wait_for_selector("#kabinet-signout", state="visible")
    assert page.inner_text("#kabinet-auth-error") == ""
    assert page.inner_text("#kabinet-auth-status") == f"Signed in as {username}"
    assert page.is_hidden("#kabinet-identifier")
    page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    result = _run_query(page, STAFF_QUERY)
    assert "errors" not in result, json.dumps(result)
    assert isinstance(result["data"]["auditLog"]["edges"], list)
    assert '"auditLog"' in page.inner_text(".graphiql-response")
    _screenshot(page, "explorer-development-signed-in.png")

    # sign out: the session ends (logout) and the page comes back signed out
    with page.expect_navigation():
        page.click("#kabinet-signout")
    page.wait_for_selector("#kabinet-signin", state="visible")
    page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=30_000)
    assert page.inner_text("#kabinet-auth-status") == ""
    refused = _run_query(page, STAFF_QUERY)
    assert refused.get("errors"), refused
    watch.check()


def test_production_explorer_is_for_signed_in_staff(
    prod_url: str, prod_accounts: dict[str, tuple[str, str]], browser: Any
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    watch = _PageWatch(page, prod_url)
    resp = page.goto(f"{prod_url}/explorer")
    assert resp is not None and resp.status == 200

    # anonymous: the sign-in page, without GraphiQL
    page.wait_for_selector("#kabinet-identifier", state="visible")
    assert page.title() == "Sign in · Kabinet explorer"
    assert page.query_selector("#graphiql") is None
    assert page.evaluate("() => typeof window.GraphiQL") == "undefined"
    _screenshot(page, "explorer-production-sign-in.png")

    # wrong password: the message, and still the sign-in page
    username, password = prod_accounts["staff"]
    _sign_in(page, username, "not the password")
    assert _wait_for_error(page) == WRONG_LOGIN
    assert page.query_selector("#graphiql") is None

    # a subscriber signs in (the cookie is set) but gets the sign-in page again
    with page.expect_navigation():
        _sign_in(page, *prod_accounts["subscriber"])
    page.wait_for_selector("#kabinet-note", state="visible")
    assert "Staff only" in page.inner_text("#kabinet-note")
    assert "sidorov" in page.inner_text("#kabinet-note")
    assert page.query_selector("#graphiql") is None
    _screenshot(page, "explorer-production-not-staff.png")

    # staff signs in: GraphiQL, with the schema (introspection) and staff-only fields
    with page.expect_navigation():
        _sign_in(page, username, password)
    page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=30_000)
    assert page.title() == "Kabinet explorer"
    page.wait_for_selector("#kabinet-signout", state="visible")
    assert page.inner_text("#kabinet-auth-status") == f"Signed in as {username}"
    result = _run_query(page, STAFF_QUERY)
    assert "errors" not in result, json.dumps(result)
    assert '"auditLog"' in page.inner_text(".graphiql-response")
    # GraphiQL got the schema: the documentation explorer lists the query type
    page.click("[aria-label='Show Documentation Explorer']")
    page.wait_for_selector(".graphiql-doc-explorer >> text=Query", timeout=30_000)
    _screenshot(page, "explorer-production-signed-in.png")

    # sign out: back to the sign-in page
    with page.expect_navigation():
        page.click("#kabinet-signout")
    page.wait_for_selector("#kabinet-identifier", state="visible")
    assert page.query_selector("#graphiql") is None
    watch.check()
