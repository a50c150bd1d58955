"""GET / and its assets: public when API keys are set, self-only CSP, nothing from elsewhere."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.web.page import ASSETS_DIR

KEY = "page-test-key"


@pytest.fixture
def keyed_client(settings: Settings) -> Iterator[TestClient]:
    """The app with an API key required, as a locked-down deployment runs it."""
    with TestClient(create_app(settings.model_copy(update={"api_keys": {KEY}}))) as client:
        yield client


def test_page_is_public_and_the_api_still_needs_the_key(keyed_client: TestClient) -> None:
    page = keyed_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/web/main.js">' in page.text
    assert keyed_client.get("/models").status_code == 401
    assert keyed_client.get("/models", headers={"X-API-Key": KEY}).status_code == 200


def test_page_allows_only_its_own_origin(keyed_client: TestClient) -> None:
    headers = keyed_client.get("/").headers
    policy = dict(
        part.strip().split(" ", 1) for part in headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["img-src"] == "'self' blob:"  # the picked photos, from the page's memory
    assert policy["object-src"] == policy["base-uri"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert headers["x-content-type-options"] == "nosniff"


def test_every_asset_is_served_from_here(keyed_client: TestClient) -> None:
    page = keyed_client.get("/").text
    assets = set(re.findall(r'(?:src|href)="([^"]+)"', page)) - {"/docs"}
    scripts = sorted(ASSETS_DIR.glob("*.js"))
    for script in scripts:  # modules import one another by relative path only
        imports = re.findall(r'from "([^"]+)"', script.read_text())
        assert all(path.startswith("./") for path in imports), script.name
        assets |= {f"/web/{path.removeprefix('./')}" for path in imports}
    assert {f"/web/{script.name}" for script in scripts} <= assets
    for path in sorted(assets):
        assert path.startswith("/web/"), path
        answer = keyed_client.get(path)
        assert answer.status_code == 200, path
    main = keyed_client.get("/web/main.js")
    assert "javascript" in main.headers["content-type"]
    # An upgraded service's scripts are fetched at once (revalidated by ETag, not guessed fresh).
    assert main.headers["cache-control"] == "no-cache"
    unchanged = keyed_client.get("/web/main.js", headers={"If-None-Match": main.headers["etag"]})
    assert unchanged.status_code == 304


def test_unknown_query_parameters_are_still_refused(keyed_client: TestClient) -> None:
    answer = keyed_client.get("/", params={"modle": "x"})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"]["unknown"] == ["modle"]
