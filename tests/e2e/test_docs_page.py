"""The API's /docs page in a real browser (the system's Chromium, driven by Playwright):
it renders every operation, "Try it out" on GET /resources/{id} returns the resource, and
nothing is loaded from another origin or refused by the page's CSP.

Screenshots go to ``$PHOENIX_ARTIFACTS`` (default: the test's temp dir), never the repo.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.http_api import api_settings, insert_resource, reader_url, served_api
from tests.support.net import free_port
from tests.support.services import unavailable

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
OPERATION = "#operations-resources-get_resource_api_v1_resources__resource_id__get"


def _chromium() -> str:
    path = os.environ.get("PHOENIX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        unavailable("Chromium", f"{path} is not an executable (make deps installs the Debian "
                    "package 'chromium'; elsewhere set PHOENIX_CHROMIUM)")
    return path


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    root = Path(os.environ.get("PHOENIX_ARTIFACTS") or tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def api_with_a_resource(pg_server: str, database_url: str) -> Iterator[tuple[str, uuid.UUID]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rid = insert_resource(conn, name="docs-page-db", config={"size": "m"})
        insert_resource(conn, name="another")
    with served_api(api_settings(database_url, reader_url(pg_server, database_url),
                                 http_port=free_port())) as url:
        yield url, rid


def test_docs_page_renders_offline_and_try_it_out_returns_the_resource(
        api_with_a_resource: tuple[str, uuid.UUID], artifacts: Path, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        unavailable("Playwright", f"{e} (it is in the dev extra)")
    base, rid = api_with_a_resource
    chromium = _chromium()
    foreign: list[str] = []
    failed: list[str] = []

    def only_this_origin(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 1600})
        try:
            page = context.new_page()
            page.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation',"
                " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
            page.route("**/*", only_this_origin)
            page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))

            page.goto(f"{base}/docs", wait_until="networkidle")
            page.wait_for_selector(OPERATION)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert {"/api/v1/resources/{resource_id}", "/api/v1/resources",
                    "/api/v1/commands/{command_id}", "/healthz", "/readyz"} <= {
                p.replace("\u200b", "").strip() for p in paths}
            page.screenshot(path=str(artifacts / "docs-page.png"), full_page=True)

            operation = page.locator(OPERATION)
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            operation.locator("input[placeholder='resource_id']").fill(str(rid))
            operation.locator("button.execute").click()
            status = operation.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for()
            assert status.inner_text().strip() == "200"
            body = operation.locator(".live-responses-table tbody .response-col_description pre")
            answer = body.first.inner_text()
            assert str(rid) in answer
            assert "docs-page-db" in answer
            page.screenshot(path=str(artifacts / "docs-try-it-out.png"), full_page=True)

            violations = page.evaluate("window.__csp")
        finally:
            context.close()
    assert foreign == [], "the page tried to load something from another origin"
    assert failed == []
    assert violations == [], "the page's CSP refused something it needs"
    assert (artifacts / "docs-try-it-out.png").stat().st_size > 10_000
