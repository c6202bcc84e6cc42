"""Evaluations and blessings kept with model versions (``pm.models.attach_evaluation``...).

An evaluation is stored as its ``to_dict()`` and read back as the same typed result; the
blessing from a gate goes beside it, so a deployment can require a blessed version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from prodml.errors import InvalidInputError, ProdmlError
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t


@dataclass(frozen=True)
class StoredEvaluation:
    id: int
    ref: str
    name: str
    dataset_digest: str | None
    created_at: int
    result: Any  # EvaluationResult
    blessing: Any  # Blessing | None

    @property
    def blessed(self) -> bool | None:
        return None if self.blessing is None else self.blessing.blessed

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ref": self.ref, "name": self.name,
                "dataset_digest": self.dataset_digest, "created_at": self.created_at,
                "blessed": self.blessed, "result": self.result.to_dict(),
                "blessing": self.blessing.to_dict() if self.blessing else None}


class NotBlessedError(ProdmlError):
    """A version without a passing gate was asked to serve where a blessing is required.

    The server answers it 409 (the request conflicts with the endpoint's policy)."""

    http_status = 409


def get(ref: str, *, store: Store) -> Any:
    # Imported here: registry re-exports this module's functions, so a top-level import
    # would be circular whichever module is imported first.
    from prodml.tracking.registry import get as get_version
    return get_version(ref, store=store)


def _version_id(conn: Any, ref: str, store: Store) -> tuple[int, str]:
    version = get(ref, store=store)
    version_id = conn.execute(select(t.model_versions.c.id).where(
        t.model_versions.c.model_name == version.name,
        t.model_versions.c.version == version.version)).scalar_one()
    return version_id, version.ref


def attach_evaluation(ref: str, result: Any, blessing: Any = None, *, name: str = "evaluation",
                      dataset_digest: str | None = None, store: Store | None = None) -> int:
    """Keep ``result`` (and the gate's ``blessing``) with the version ``ref``; returns its id."""
    store = store or get_store()
    if not hasattr(result, "to_dict") or not hasattr(result, "overall"):
        raise InvalidInputError("result", type(result).__name__, "must be an EvaluationResult")
    with store.write() as conn:
        version_id, _ = _version_id(conn, ref, store)
        return int(conn.execute(t.evaluations.insert().values(
            version_id=version_id, name=name, dataset_digest=dataset_digest,
            result=result.to_dict(), gate=blessing.gate if blessing is not None else None,
            blessed=blessing.blessed if blessing is not None else None,
            blessing=blessing.to_dict() if blessing is not None else None,
            created_at=now_ms())).inserted_primary_key[0])


def evaluations(ref: str, *, store: Store | None = None) -> list[StoredEvaluation]:
    """Every evaluation kept with a version, oldest first."""
    from prodml.evaluation.evaluate import EvaluationResult
    from prodml.evaluation.gates import Blessing

    store = store or get_store()
    with store.read() as conn:
        version_id, full_ref = _version_id(conn, ref, store)
        rows = conn.execute(select(t.evaluations).where(t.evaluations.c.version_id == version_id)
                            .order_by(t.evaluations.c.id)).mappings().all()
    return [StoredEvaluation(r["id"], full_ref, r["name"], r["dataset_digest"], r["created_at"],
                             EvaluationResult.from_dict(r["result"]),
                             Blessing.from_dict(r["blessing"]) if r["blessing"] else None)
            for r in rows]


def blessing(ref: str, *, store: Store | None = None) -> Any:
    """The latest gate verdict kept with a version, or ``None`` if it was never gated."""
    gated = [e for e in evaluations(ref, store=store) if e.blessing is not None]
    return gated[-1].blessing if gated else None


def require_blessed(ref: str, *, store: Store | None = None) -> None:
    """Raise :class:`NotBlessedError` unless the version's latest gate blessed it."""
    verdict = blessing(ref, store=store)
    if verdict is None or not verdict.blessed:
        why = "it was never gated" if verdict is None else (
            f"gate {verdict.gate!r} failed: " + "; ".join(
                f"{r.condition}{f' [{r.slice}]' if r.slice else ''}" for r in verdict.failures))
        raise NotBlessedError(f"model version {get(ref, store=store).ref} is not blessed: {why}",
                              field="model", value=ref, rule="a blessed version is required")
