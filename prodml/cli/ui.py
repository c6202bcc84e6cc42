"""``prodml ui``: the dashboard, served by the same app as ``prodml serve``.

The dashboard's rollback button and review forms call the server's own API, so the UI is
not a separate app: ``prodml ui`` is ``prodml serve`` on one worker, pointed at ``/ui``
(the endpoints' models load too, and requests to them are answered and logged as usual).
"""

from __future__ import annotations

from typing import Annotated

import typer

from prodml.cli.output import console


def ui_command(
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535)] = 8000) -> None:
    """Serve the dashboard (and the endpoints, as prodml serve does) at /ui."""
    from prodml.cli.deployments import serve_command

    console.print(f"dashboard at http://{host}:{port}/ui", highlight=False)
    serve_command(host=host, port=port)
