"""``prodml models list|show|search|alias|tag|load-check``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from prodml.cli.output import console, print_json, short, when
from prodml.errors import InvalidInputError
from prodml.tracking import registry
from prodml.tracking.registry import ModelVersion

app = typer.Typer(help="The model registry: versions, aliases, tags.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _versions_table(versions: list[ModelVersion], title: str) -> Table:
    table = Table(title=title, header_style="bold")
    for column in ("ref", "aliases", "flavor", "format", "class", "run", "created", "tags"):
        table.add_column(column)
    for v in versions:
        table.add_row(v.ref, ", ".join(v.aliases), v.flavor, v.serialization,
                      (v.model_class or "").rsplit(".", 1)[-1], short(v.run_id or "-"),
                      when(v.created_at), ", ".join(f"{k}={val}" for k, val in v.tags.items()))
    return table


@app.command("list")
def list_models(as_json: JsonFlag = False) -> None:
    """Registered models with their latest version and aliases."""
    models = registry.list_models()
    if as_json:
        print_json([m.to_dict() for m in models])
        return
    if not models:
        console.print("no registered models")
        return
    table = Table(title="registered models", header_style="bold")
    for column in ("name", "versions", "latest", "aliases", "created"):
        table.add_column(column)
    for m in models:
        table.add_row(m.name, str(m.versions), str(m.latest_version),
                      ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())),
                      when(m.created_at))
    console.print(table)


@app.command()
def show(ref: Annotated[str, typer.Argument(
             help="NAME (all versions), NAME/VERSION or NAME@ALIAS.")],
         as_json: JsonFlag = False) -> None:
    """One version in full, or every version of a model."""
    if "/" not in ref.removeprefix("models:/") and "@" not in ref:
        versions = registry.search(ref)
        if not versions:
            registry.get(f"{ref}@latest")  # raises the clear not-found error
        if as_json:
            print_json([v.to_dict() for v in versions])
        else:
            console.print(_versions_table(versions, f"versions of {ref}"))
        return
    v = registry.get(ref)
    if as_json:
        print_json(v.to_dict())
        return
    console.print(_versions_table([v], v.ref))
    console.print(f"artifact  {v.artifact_uri} ({v.size} bytes, sha256 {v.artifact_sha256})")
    if v.signature:
        console.print("signature " + ", ".join(f"{c.name}:{c.type}" for c in v.signature.inputs))
    for d in v.datasets:
        console.print(f"dataset   {d.context}: {d.name} ({d.num_rows} rows, {d.digest[:12]})")


@app.command()
def search(name: Annotated[str | None, typer.Option(help="Only this model.")] = None,
           tag: Annotated[list[str] | None, typer.Option(
               help="KEY=VALUE the version must carry (repeatable).")] = None,
           as_json: JsonFlag = False) -> None:
    """Versions carrying all the given tags."""
    versions = registry.search(name, _pairs(tag or []))
    if as_json:
        print_json([v.to_dict() for v in versions])
    else:
        console.print(_versions_table(versions, f"{len(versions)} matching versions"))


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError("tag", item, "must be KEY=VALUE")
        pairs[key] = value
    return pairs


@app.command()
def alias(name: Annotated[str, typer.Argument(help="Model name.")],
          alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
          version: Annotated[str | None, typer.Argument(
              help="Version number (or another alias) to point at.")] = None,
          delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
          as_json: JsonFlag = False) -> None:
    """Point an alias at a version (atomically), or delete it."""
    if delete:
        registry.delete_alias(name, alias_name)
        result: dict[str, object] = {"model": name, "alias": alias_name, "deleted": True}
    else:
        if version is None:
            raise InvalidInputError("version", None, "give the version the alias should point "
                                    "at, or --delete")
        v = registry.set_alias(name, alias_name, version)
        result = {"model": name, "alias": alias_name, "version": v.version}
    if as_json:
        print_json(result)
    elif delete:
        console.print(f"deleted {name}@{alias_name}")
    else:
        console.print(f"{name}@{alias_name} → version {result['version']}")


@app.command()
def tag(ref: Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS.")],
        pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE pairs.")],
        as_json: JsonFlag = False) -> None:
    """Set tags on a version."""
    values = _pairs(pairs)
    v = registry.get(ref)
    for key, value in values.items():
        v = registry.set_tag(v.ref, key, value)
    if as_json:
        print_json(v.to_dict())
    else:
        console.print(f"{v.ref} tags: " + ", ".join(f"{k}={val}" for k, val in v.tags.items()))


@app.command("load-check")
def load_check(ref: Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS.")],
               as_json: JsonFlag = False) -> None:
    """Load a version (bytes verified against the registry's SHA-256) and report what came back."""
    check = registry.load_check(ref)
    if as_json:
        print_json(check.to_dict())
        return
    console.print(f"[green]ok[/] {check.ref}: sha256 {check.sha256[:16]}… verified, "
                  f"{check.flavor}/{check.serialization} → {check.loaded_class} "
                  f"(predict: {'yes' if check.has_predict else 'no'}, predict_proba: "
                  f"{'yes' if check.has_predict_proba else 'no'})")
