"""``/docs``: Swagger UI over ``/openapi.json``, from files this server has, never a CDN.

Swagger UI's script and stylesheet come from the ``fastapi-offline`` package (which ships
them, Swagger UI 5, Apache-2.0, in an MIT package; ``swagger-ui-bundle`` ships Swagger UI 4,
which cannot show the OpenAPI 3.1 FastAPI writes), served at ``/docs/static/``. The start-up
script is ours and served too, so the page needs no inline script and runs under a
Content-Security-Policy that lets it load and call this server only, as the dashboard does.
The page still works where the machine has no way out, and a page cannot be made to run
someone else's script through it.

``/redoc`` is off: Redoc's bundle loads its logo from a CDN on every page. Swagger UI's
"Authorize" button takes a bearer token (``prodml tokens create``) for the routes that need one.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from prodml.errors import NotFoundError

ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
          "swagger-ui.css": "text/css; charset=utf-8",
          "favicon.png": "image/png"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' "
                               "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
# Swagger UI's options as FastAPI sets them, less the online validator's badge.
START = """\
const holder = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: holder.dataset.openapi, dom_id: "#swagger-ui", layout: "BaseLayout",
  deepLinking: true, showExtensions: true, showCommonExtensions: true, validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""
PAGE = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} API</title>
<link rel="icon" href="{static}/favicon.png">
<link rel="stylesheet" href="{static}/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script src="{static}/start.js"></script></body></html>
"""


def assets_folder() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def include_api_docs(app: FastAPI, path: str = "/docs") -> None:
    """Serve Swagger UI at ``path`` (the app is made with ``docs_url=None``)."""
    folder = assets_folder()

    @app.get(path, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = PAGE.format(title=escape(app.title), static=escape(f"{root}{path}/static"),
                           openapi=escape(f"{root}{app.openapi_url}"))
        return HTMLResponse(page, headers=HEADERS)

    @app.get(f"{path}/static/start.js", include_in_schema=False)
    async def start() -> Response:
        return Response(START, media_type="text/javascript; charset=utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})

    @app.get(f"{path}/static/{{name}}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise NotFoundError("file", name, "Swagger UI's files: " + ", ".join(ASSETS))
        return FileResponse(folder / name, media_type=ASSETS[name],
                            headers={"Cache-Control": "max-age=86400",
                                     "X-Content-Type-Options": "nosniff"})
