"""``pm.labels``: annotations kept in the store, and the labels tools that read them.

Annotations are append-only. ``import_annotations`` adds a file's or a frame's labels in one
transaction (all or none); a correction is a new annotation with its own labeler and time,
and the statistics count each labeler's latest label per item. An annotation can name the
dataset version (its digest, as ``run.log_dataset`` records it) and row it labels, so the
labels behind any model can be traced to who gave them: :func:`for_model`.

>>> import prodml as pm
>>> done = pm.labels.import_annotations({"item": [1, 1, 2, 2], "labeler": ["ann", "bob"] * 2,
...                                      "label": ["ok", "ok", "ok", "defect"]})
>>> done.rows, pm.labels.annotations(labeler="bob")["label"].to_list()
(4, ['ok', 'defect'])
>>> round(pm.labels.agreement(pm.labels.annotations()).observed, 2)
0.5
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from sqlalchemy import Text, cast, select

from prodml.data.frames import digest_file, digest_table, to_arrow
from prodml.data.labels import (AgreementReport, Annotations, AugmentationCheck, Consensus,
                                Disputes, LabelIssues, agreement, as_annotations,
                                augmentation_check, consensus, disputes, human_level, issues,
                                normalise)
from prodml.errors import InvalidInputError, NotFoundError
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t

__all__ = ["AgreementReport", "Annotations", "AugmentationCheck", "Consensus", "Disputes",
           "ImportResult", "LabelIssues", "ProvenanceRecord", "agreement", "annotations",
           "as_annotations", "augmentation_check", "consensus", "crowdlab", "disputes",
           "for_model", "human_level", "import_annotations", "issues", "load", "provenance",
           "record_provenance"]

DIGEST = re.compile(r"^[0-9a-f]{64}\Z")
CHUNK = 10_000


@dataclass(frozen=True)
class ImportResult:
    """What one import added."""

    rows: int
    items: int
    labelers: int
    source: str
    dataset_digest: str | None
    created_at: int  # the import's time (epoch ms), the same on every row it added

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def dataset_digest(dataset: Any) -> str:
    """The digest a dataset version has in the store: a digest given as is, a file's bytes,
    a frame's Arrow content (as ``run.log_dataset`` computes it)."""
    if isinstance(dataset, str) and DIGEST.match(dataset):
        return dataset
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if not path.is_file():
            raise InvalidInputError("dataset", str(dataset), "must be a dataset digest (64 hex "
                                    "characters), a data file or a frame")
        return digest_file(path.absolute())
    return digest_table(to_arrow(dataset))


def import_annotations(data: Any, *, item: str = "item", labeler: str = "labeler",
                       label: str = "label", time: str | None = "time",
                       instruction: str | None = "instruction",
                       metadata: Sequence[str] | None = None, dataset: Any = None,
                       row: str | None = None, source: str | None = None,
                       store: Store | None = None) -> ImportResult:
    """Add annotations (a CSV, Parquet or JSON-lines file, or a frame) to the store.

    Columns are named by the keyword arguments; every other column is the item's metadata
    unless ``metadata`` lists them. ``dataset`` (a digest, a data file or a frame) says which
    dataset version the items are rows of, and ``row`` which column holds the row number
    (default: the item id itself, when it is an integer). Without a ``time`` column the
    import's time is each annotation's time.
    """
    store = store or get_store()
    if source is None:
        source = str(Path(data).absolute()) if isinstance(data, (str, os.PathLike)) else \
            f"{type(data).__module__.split('.')[0]}.{type(data).__name__} in memory"
    raw = pl.from_arrow(to_arrow(data))
    assert isinstance(raw, pl.DataFrame)
    if row is not None and row not in raw.columns:
        raise InvalidInputError("row", row, "no such column")
    if metadata is None:
        taken = {item, labeler, label, time, instruction, row}
        metadata = [c for c in raw.columns if c not in taken]
    frame = normalise(raw.with_columns(pl.col(row).alias("__row")) if row else raw, item=item,
                      labeler=labeler, label=label, time=time, instruction=instruction,
                      metadata=[*metadata, *(["__row"] if row else [])])
    if frame.height == 0:
        raise InvalidInputError("annotations", source, "holds no labels")
    digest = None if dataset is None else dataset_digest(dataset)
    rows_id = _row_ids(frame, digest, row)
    created = now_ms()
    labels = [orjson.dumps(v).decode() for v in frame.get_column("label").to_list()]
    meta_columns = [c for c in frame.columns if c not in ("item", "labeler", "label", "time",
                                                          "instruction", "__row")]
    metas = _json_ready(frame.select(meta_columns)).to_dicts() if meta_columns else None
    times = frame.get_column("time").fill_null(created).to_list()
    records = [{"item": str(i), "labeler": who, "label": lab, "time": when, "instruction": ins,
                "dataset_digest": digest, "row_id": r, "meta": m, "source": source,
                "created_at": created}
               for i, who, lab, when, ins, r, m in zip(
                   frame.get_column("item").to_list(), frame.get_column("labeler").to_list(),
                   labels, times, frame.get_column("instruction").to_list(), rows_id,
                   metas if metas is not None else [None] * frame.height)]
    with store.write() as conn:  # one transaction: all of the file or none of it
        for start in range(0, len(records), CHUNK):
            conn.execute(t.annotations.insert(), records[start:start + CHUNK])
    return ImportResult(len(records), frame.get_column("item").n_unique(),
                        frame.get_column("labeler").n_unique(), source, digest, created)


def _row_ids(frame: pl.DataFrame, digest: str | None, row: str | None) -> list[int | None]:
    if digest is None and row is None:
        return [None] * frame.height
    column = frame.get_column("__row" if row else "item")
    if not column.dtype.is_integer():
        raise InvalidInputError("row", row or "item", "row numbers must be integers: name the "
                                "column that holds them with row=")
    return column.to_list()


def _json_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Metadata values JSON can hold: dates and other types become text."""
    plain = [c for c, dtype in frame.schema.items()
             if not (dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Null))]
    return frame.with_columns(pl.col(plain).cast(pl.String)) if plain else frame


def annotations(*, item: Any = None, labeler: Any = None, instruction: Any = None,
                dataset: Any = None, rows: Any = None, since: int | None = None,
                until: int | None = None, store: Store | None = None) -> pl.DataFrame:
    """Annotations from the store, oldest first: ``id, item, labeler, label, time,
    instruction, dataset_digest, row_id, source, created_at`` then the metadata columns.

    Filters combine with AND; ``item``, ``labeler``, ``instruction`` and ``rows`` take one
    value or a list; ``since``/``until`` bound ``time`` (epoch ms, inclusive).
    """
    store = store or get_store()
    a = t.annotations
    query = select(a.c.id, a.c.item, a.c.labeler, a.c.label, a.c.time, a.c.instruction,
                   a.c.dataset_digest, a.c.row_id, a.c.source, a.c.created_at,
                   cast(a.c.meta, Text)).order_by(a.c.id)
    for column, wanted in ((a.c.item, item), (a.c.labeler, labeler),
                           (a.c.instruction, instruction), (a.c.row_id, rows)):
        if wanted is not None:
            values = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
            query = query.where(column.in_([str(v) if column is not a.c.row_id else int(v)
                                            for v in values]))
    if dataset is not None:
        query = query.where(a.c.dataset_digest == dataset_digest(dataset))
    if since is not None:
        query = query.where(a.c.time >= since)
    if until is not None:
        query = query.where(a.c.time <= until)
    with store.read() as conn:
        found = conn.execute(query).all()
    names = ["id", "item", "labeler", "label", "time", "instruction", "dataset_digest",
             "row_id", "source", "created_at"]
    columns = list(zip(*found)) if found else [[] for _ in range(len(names) + 1)]
    labels = orjson.loads("[" + ",".join(columns[3]) + "]") if found else []
    schema = {"id": pl.Int64, "item": pl.String, "labeler": pl.String, "time": pl.Int64,
              "instruction": pl.String, "dataset_digest": pl.String, "row_id": pl.Int64,
              "source": pl.String, "created_at": pl.Int64}
    frame = pl.DataFrame({n: pl.Series(n, columns[i], dtype=schema.get(n))
                          if n != "label" else _label_series(labels)
                          for i, n in enumerate(names)})
    metas = [m for m in columns[10]] if found else []
    if any(m not in (None, "null", "{}") for m in metas):
        text = "\n".join(m if m not in (None, "null") else "{}" for m in metas)
        frame = pl.concat([frame, pl.read_ndjson(io.StringIO(text), infer_schema_length=None)],
                          how="horizontal")
    return frame


def _label_series(values: list[Any]) -> pl.Series:
    if not values:
        return pl.Series("label", [], dtype=pl.String)
    try:
        return pl.Series("label", values)
    except (TypeError, pl.exceptions.PolarsError):  # text and numbers mixed: all text
        return pl.Series("label", [None if v is None else str(v) for v in values])


def load(*, store: Store | None = None, classes: Any = None, **filters: Any) -> Annotations:
    """The annotations selected by ``filters`` (see :func:`annotations`), encoded for the
    statistics; the stored bookkeeping columns are left out of the metadata."""
    frame = annotations(store=store, **filters)
    meta = [c for c in frame.columns if c not in _STORED]
    return as_annotations(frame, metadata=meta, classes=classes)


_STORED = ("id", "item", "labeler", "label", "time", "instruction", "dataset_digest", "row_id",
           "source", "created_at")


def crowdlab(annotations: Any, pred_probs: Any, **options: Any) -> Consensus:
    """CROWDLAB consensus (``consensus(..., method="crowdlab")``)."""
    return consensus(annotations, method="crowdlab", pred_probs=pred_probs, **options)


def for_model(ref: str, *, context: str = "train", store: Store | None = None
              ) -> pl.DataFrame:
    """The annotations of the rows of the datasets a model version's run used (``context``:
    ``train`` by default): who labelled what the model learned from."""
    from prodml.tracking.registry import get as get_version

    store = store or get_store()
    version = get_version(ref, store=store)
    if version.run_id is None:
        raise NotFoundError("run of model version", ref, "it was registered without a run")
    with store.read() as conn:
        digests = conn.execute(select(t.datasets.c.digest).join(
            t.run_inputs, t.run_inputs.c.dataset_id == t.datasets.c.id).where(
            t.run_inputs.c.run_id == version.run_id, t.run_inputs.c.context == context)
        ).scalars().all()
    frames = [annotations(dataset=d, store=store) for d in digests]
    return pl.concat(frames, how="diagonal_relaxed") if frames else annotations(
        dataset="0" * 64, store=store)


# -- per-row provenance of a dataset version ----------------------------------------------------
@dataclass(frozen=True)
class ProvenanceRecord:
    """The provenance columns kept for a dataset version, and their digest."""

    dataset_digest: str
    columns: tuple[str, ...]
    digest: str
    artifact_sha256: str
    num_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "columns": list(self.columns)}


def record_provenance(data: Any, columns: Sequence[str], *, store: Store | None = None
                      ) -> ProvenanceRecord:
    """Keep ``columns`` of ``data`` (source, time, device, line, labeler...) for its dataset
    version: stored once per version as a Parquet artifact, with their digest."""
    import pyarrow.parquet as pq

    store = store or get_store()
    table = to_arrow(data)
    names = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in names if c not in table.column_names]
    if missing or not names:
        raise InvalidInputError("columns", missing or names, "must be columns of the data")
    digest = dataset_digest(data)
    kept = table.select(names)
    buffer = io.BytesIO()
    pq.write_table(kept, buffer)
    blob = store.artifacts.put_bytes(buffer.getvalue())
    record = ProvenanceRecord(digest, tuple(names), digest_table(kept), blob.sha256,
                              table.num_rows)
    with store.write() as conn:
        store.record_artifact(conn, blob, "application/vnd.apache.parquet")
        conn.execute(store.insert(t.dataset_provenance).values(
            dataset_digest=digest, columns=names, digest=record.digest,
            artifact_sha256=blob.sha256, num_rows=table.num_rows, created_at=now_ms()
        ).on_conflict_do_nothing(index_elements=["dataset_digest"]))
        row = conn.execute(select(t.dataset_provenance).where(
            t.dataset_provenance.c.dataset_digest == digest)).mappings().one()
    return ProvenanceRecord(row["dataset_digest"], tuple(row["columns"]), row["digest"],
                            row["artifact_sha256"], row["num_rows"])


def provenance(dataset: Any, *, store: Store | None = None) -> pl.DataFrame:
    """The provenance columns kept for a dataset version, one row per dataset row."""
    store = store or get_store()
    digest = dataset_digest(dataset)
    with store.read() as conn:
        sha = conn.execute(select(t.dataset_provenance.c.artifact_sha256).where(
            t.dataset_provenance.c.dataset_digest == digest)).scalar()
    if sha is None:
        raise NotFoundError("provenance of dataset", digest[:12], "record_provenance keeps it")
    return pl.read_parquet(io.BytesIO(store.artifacts.get_bytes(sha)))
