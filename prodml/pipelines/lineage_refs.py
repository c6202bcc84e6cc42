"""What a lineage ``ref`` names: the node keys a walk starts from.

One ref may name several records of one thing: a source path is every version of that file
the store read (Source artifacts by URI, dataset versions by source), a dataset digest is the
dataset version and the pipeline artifacts that recorded it.

Forms, tried in this order:

- ``artifact:12``, ``execution:5``, ``endpoint:loan``, ``run:<id>``, ``dataset:<digest>``,
  ``prediction:<id>``, ``pipeline_run:<id>``, ``labeler:<name>``, ``source:<uri>``: explicit;
- a model reference: ``models:/loan/3``, ``loan/3``, ``loan@champion``, ``loan@latest``;
- 32 hex characters: a prediction, a tracked run or a pipeline run id (a unique prefix of
  8 or more characters is enough for runs and pipeline runs);
- 64 hex characters: a dataset digest or a pipeline artifact's digest;
- anything else: a source URI or path (relative paths are made absolute).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy import Connection, or_, select

from prodml.errors import NotFoundError
from prodml.store import tables as t

EXPLICIT = ("artifact", "execution", "endpoint", "run", "dataset", "prediction",
            "pipeline_run", "labeler", "source")
HEX = re.compile(r"^[0-9a-f]+\Z")
MODEL_REF = re.compile(r"^(?:models:/)?[^/@\s]+(?:/[0-9]+|@[^/@\s]+)\Z")


class UnknownRefError(NotFoundError):
    """No record in the store matches a lineage ref (the CLI exits 2)."""

    exit_code = 2

    def __init__(self, ref: str, hint: str = "") -> None:
        super().__init__("lineage ref", ref, hint or (
            "not a prediction id, model reference (loan/3, loan@champion), run id, dataset "
            "digest, artifact:ID, pipeline run id or source path known to the store"))


def resolve(conn: Connection, ref: str) -> tuple[str, ...]:
    """The node keys ``ref`` names, or :class:`UnknownRefError`."""
    text = ref.strip() if isinstance(ref, str) else ""
    if not text:
        raise UnknownRefError(str(ref), "must be a non-empty string")
    kind, _, rest = text.partition(":")
    if kind in EXPLICIT and rest:
        found = _explicit(conn, kind, rest)
    elif MODEL_REF.match(text) and (found := _model(conn, text)):
        pass
    else:
        found = _by_id(conn, text.lower()) if HEX.match(text.lower()) else ()
        found = found or _source(conn, text)
    if not found:
        raise UnknownRefError(text, _pruned(conn, text))
    return found


def _pruned(conn: Connection, ref: str) -> str:
    """Why a prediction id is not in the log when retention pruned it; "" otherwise."""
    from prodml.serving.retention import pruned_note

    key = ref.lower().removeprefix("prediction:")
    note = pruned_note(conn, key) if len(key) == 32 and HEX.match(key) else None
    return f"no prediction {key} in the log: {note}" if note else ""


def _explicit(conn: Connection, kind: str, key: str) -> tuple[str, ...]:
    checks = {
        "artifact": lambda: key.isdigit() and conn.execute(
            select(t.lineage_artifacts.c.id).where(t.lineage_artifacts.c.id == int(key))).first(),
        "execution": lambda: key.isdigit() and conn.execute(
            select(t.executions.c.id).where(t.executions.c.id == int(key))).first(),
        "endpoint": lambda: conn.execute(
            select(t.endpoints.c.name).where(t.endpoints.c.name == key)).first(),
        "labeler": lambda: conn.execute(
            select(t.annotations.c.labeler).where(t.annotations.c.labeler == key).limit(1)
        ).first(),
    }
    if kind in checks:
        return (f"{kind}:{key}",) if checks[kind]() else ()
    if kind == "source":
        return _source(conn, key)
    found = _by_id(conn, key.lower())
    return tuple(k for k in found if k.startswith(f"{kind}:"))


def _model(conn: Connection, ref: str) -> tuple[str, ...]:
    from prodml.tracking.registry import _resolve

    try:
        name, version = _resolve(conn, ref)
    except NotFoundError:
        return ()
    return (f"model_version:{name}/{version}",)


def _by_id(conn: Connection, key: str) -> tuple[str, ...]:
    found: list[str] = []
    if len(key) == 64:
        if conn.execute(select(t.datasets.c.id).where(t.datasets.c.digest == key)).first():
            found.append(f"dataset:{key}")
        found += [f"artifact:{i}" for i in conn.execute(
            select(t.lineage_artifacts.c.id).where(t.lineage_artifacts.c.digest == key)
            .order_by(t.lineage_artifacts.c.id)).scalars()]
        return tuple(found)
    if len(key) == 32 and conn.execute(select(t.predictions.c.id)
                                       .where(t.predictions.c.id == key)).first():
        return (f"prediction:{key}",)
    if len(key) < 8 or len(key) > 32:
        return ()
    for kind, column, extra in (("run", t.runs.c.id, None),
                                ("pipeline_run", t.pipeline_contexts.c.id,
                                 t.pipeline_contexts.c.type == "pipeline_run")):
        query = select(column).where(column.like(key + "%")).limit(2)
        if extra is not None:
            query = query.where(extra)
        ids = conn.execute(query).scalars().all()
        if len(ids) > 1:
            raise UnknownRefError(key, f"ambiguous prefix: more than one {kind} starts so")
        found += [f"{kind}:{i}" for i in ids]
    return tuple(found)


def source_forms(uri: str) -> list[str]:
    """The spellings a source may be stored under: as given, absolute, ``file://``."""
    forms = [uri]
    plain = uri.removeprefix("file://")
    if "://" not in plain and "\n" not in plain and len(plain) < 1024:
        absolute = os.path.abspath(Path(plain).expanduser())
        forms += [plain, absolute, f"file://{absolute}"]
    return list(dict.fromkeys(forms))


def _source(conn: Connection, uri: str) -> tuple[str, ...]:
    forms = source_forms(uri)
    hit = conn.execute(select(t.lineage_artifacts.c.uri).where(
        t.lineage_artifacts.c.uri.in_(forms)).limit(1)).scalar()
    if hit is None:
        hit = conn.execute(select(t.datasets.c.source).where(
            or_(t.datasets.c.source.in_(forms))).limit(1)).scalar()
    return (f"source:{canonical_source(hit)}",) if hit is not None else ()


def canonical_source(uri: str) -> str:
    """One spelling per source: ``file://`` dropped from local paths."""
    return uri[len("file://"):] if uri.startswith("file:///") else uri
