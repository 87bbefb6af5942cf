"""The API's documentation page (``/docs``), complete without the internet.

Guarantees:

* Swagger UI's script, stylesheet and icon come from the ``fastapi-offline`` package (Swagger
  UI 5, which renders OpenAPI 3.1) and are served by the API itself under ``/docs/assets/``:
  the page loads nothing from another origin.
* No inline script or style: the page is static HTML plus ``/docs/init.js``, so the Edge can
  send ``DOCS_CSP`` with ``script-src 'self'`` and ``style-src 'self'`` (``edge``).
* "Try it out" calls the API on the page's own origin (``connect-src 'self'``).

``tests/e2e/test_docs_page.py`` loads the page in headless Chromium and checks all of it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
INIT_PATH = "/docs/init.js"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")
"""What the page uses from the package's static directory."""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>phoenix-resources API</title>
<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon.png">
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{INIT_PATH}"></script>
</body>
</html>
"""

INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def assets_dir() -> Path:
    """The directory holding :data:`ASSETS` (inside the installed ``fastapi_offline``)."""
    return Path(str(resources.files("fastapi_offline").joinpath("static")))


def add_docs_routes(app: FastAPI) -> None:
    """Serve the page, its init script and its assets; none of them is in the OpenAPI
    document. Create the app with ``docs_url=None`` so FastAPI's CDN page is not added."""

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get(INIT_PATH, include_in_schema=False)
    async def docs_init() -> Response:
        return Response(INIT, media_type="text/javascript")

    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
