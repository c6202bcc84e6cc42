"""The app factory uvicorn imports in each worker (``prodml serve`` passes options as env).

Run it without the CLI as ``uvicorn --factory prodml.serving.asgi:app_factory``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI


def app_factory() -> FastAPI:
    from prodml.serving.app import create_app

    names = [n for n in os.environ.get("PRODML_SERVE_ENDPOINTS", "").split(",") if n]
    return create_app(endpoints=names or None)
