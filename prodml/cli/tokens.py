"""``prodml tokens create|list|revoke``: identities for people and services.

Whoever can write the store manages its tokens: the CLI talks to the store directly, as
every other ``prodml`` command does, so it needs no token of its own.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from prodml.cli.output import console, print_json, when

app = typer.Typer(no_args_is_help=True,
                  help="Tokens: who may read, label, deploy or administer through the server.")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _by() -> str:
    from prodml.tracking.environment import user

    return user() or "cli"


@app.command("create")
def create_command(
        name: Annotated[str, typer.Option("--name", help="Who holds it: a person or a service.")],
        role: Annotated[str, typer.Option(
            "--role", help="viewer, labeler, deployer or admin.")] = "viewer",
        as_json: JsonFlag = False) -> None:
    """Make a token; it is printed this once (the store keeps only its digest)."""
    from prodml.access import create_token

    made = create_token(name, role, created_by=_by())
    if as_json:
        print_json(made.to_dict())
        return
    console.print(f"token for {made.record.name} ({made.record.role}), shown once:",
                  highlight=False)
    print(made.token)


@app.command("list")
def list_command(
        all_: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
        as_json: JsonFlag = False) -> None:
    """Tokens (never their secrets): name, role, who made them, when."""
    from prodml.access import list_tokens

    records = list_tokens(include_revoked=all_)
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    table = Table("id", "name", "role", "starts with", "created", "by", "revoked")
    for r in records:
        table.add_row(r.id[:12], r.name, r.role, r.prefix + "…", when(r.created_at),
                      r.created_by, when(r.revoked_at) if r.revoked_at else "")
    console.print(table)


@app.command("revoke")
def revoke_command(
        token: Annotated[str, typer.Argument(help="A token's name or id.")],
        as_json: JsonFlag = False) -> None:
    """Revoke the active tokens with this name or id; servers refuse them within seconds."""
    from prodml.access import revoke_token

    records = revoke_token(token, by=_by())
    if as_json:
        print_json([r.to_dict() for r in records])
        return
    for r in records:
        console.print(f"revoked {r.name} ({r.role}, {r.id[:12]})", highlight=False)
