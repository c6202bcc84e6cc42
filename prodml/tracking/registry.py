"""The model registry behind ``pm.models``: versions, aliases, tags, verified loading.

References: ``"loan/3"`` (version 3), ``"loan@champion"`` (an alias), ``"loan@latest"`` (the
highest version); an ``models:/`` prefix is accepted as MLflow users write it.

>>> from sklearn.linear_model import LogisticRegression
>>> import pandas as pd
>>> X = pd.DataFrame({"age": [20, 60, 25, 70], "salary": [1.0, 5.0, 1.5, 6.0]})
>>> model = LogisticRegression().fit(X, [0, 1, 0, 1])
>>> v = register("demo", model, input_example=X, aliases=["champion"])
>>> v.ref, v.serialization, v.signature.names
('demo/1', 'skops', ['age', 'salary'])
>>> load("demo@champion").predict(X).tolist()
[0, 1, 0, 1]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from prodml.data.profile import Profile, profile
from prodml.data.schema import Schema
from prodml.errors import InvalidInputError, NotFoundError
from prodml.store import Store, get_store, now_ms
from prodml.store import tables as t
from prodml.tracking import flavors
from prodml.tracking.records import DatasetRecord, dataset_record
from prodml.tracking.signature import Signature, as_signature, from_model_and_schema

# Whole-string rules: ``\Z``, not ``$``, which also matches before a final newline and made
# "loan\n" a second, distinct model name.
NAME_RULE = re.compile(r"^[A-Za-z0-9][\w\-.]{0,254}\Z")
REF_RULE = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>[0-9]+)|@(?P<alias>[^/@]+))\Z")
MAX_VERSION_DIGITS = 18  # every version a 64-bit column holds
RESERVED_ALIASES = {"latest"}


@dataclass(frozen=True)
class ModelVersion:
    """One registered version and everything linked to it."""

    name: str
    version: int
    flavor: str
    serialization: str
    model_class: str | None
    artifact_sha256: str
    artifact_uri: str
    size: int
    signature: Signature | None
    run_id: str | None
    description: str | None
    created_at: int
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    datasets: tuple[DatasetRecord, ...] = ()
    flavor_options: dict[str, Any] = field(default_factory=dict)
    profile_sha256: str | None = None  # training-data profile (see training_profile)
    schema: Schema | None = None  # data schema that serving validates requests against

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "ref": self.ref,
                "flavor": self.flavor, "serialization": self.serialization,
                "model_class": self.model_class, "artifact_sha256": self.artifact_sha256,
                "artifact_uri": self.artifact_uri, "size": self.size,
                "signature": self.signature.to_dict() if self.signature else None,
                "run_id": self.run_id, "description": self.description,
                "created_at": self.created_at, "aliases": list(self.aliases),
                "tags": dict(self.tags), "datasets": [d.to_dict() for d in self.datasets],
                "profile_sha256": self.profile_sha256,
                "schema": self.schema.to_dict() if self.schema else None}


def _check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RULE.fullmatch(value):
        raise InvalidInputError(kind, value, "must start with a letter or digit and hold only "
                                "letters, digits, '_', '-' and '.' (at most 255)")
    return value


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """Split a model reference into (name, version, alias).

    >>> parse_ref("loan/3"), parse_ref("models:/loan@champion")
    (('loan', 3, None), ('loan', None, 'champion'))
    """
    match = REF_RULE.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise InvalidInputError("model reference", ref, "must be NAME/VERSION or NAME@ALIAS, "
                                "e.g. loan/3 or loan@champion")
    version = match["version"]
    if version is not None and len(version.lstrip("0")) > MAX_VERSION_DIGITS:
        raise NotFoundError("model version", f"{match['name']}/{version[:20]}...",
                            "no version number has that many digits")
    return match["name"], int(version) if version else None, match["alias"]


def _run_id_of(run: Any) -> str | None:
    if run is None:
        return None
    return run if isinstance(run, str) else run.id


def _train_dataset(store: Store, run_id: str | None) -> tuple[Any, str | None]:
    """Schema and profile digest of the run's ``train`` dataset (``(None, None)`` if none)."""
    if run_id is None:
        return None, None
    with store.read() as conn:
        row = conn.execute(select(t.datasets.c.schema, t.datasets.c.profile_sha256)
                           .join(t.run_inputs, t.run_inputs.c.dataset_id == t.datasets.c.id)
                           .where(t.run_inputs.c.run_id == run_id,
                                  t.run_inputs.c.context == "train")).first()
    return (row[0], row[1]) if row else (None, None)


def register(name: str, model: Any, *, run: Any = None, signature: Any = None,
             input_example: Any = None, flavor: str | None = None,
             serialization: str | None = None, trusted: list[str] | None = None,
             description: str | None = None, tags: dict[str, Any] | None = None,
             aliases: list[str] | None = None, training_data: Any = None,
             schema: Schema | dict[str, Any] | None = None,
             store: Store | None = None) -> ModelVersion:
    """Store ``model`` as the next version of ``name`` and return that version.

    The signature is, in order: ``signature`` as given, inferred from ``input_example``, or
    the model's ``feature_names_in_`` typed by the run's ``train`` dataset. The version
    carries the profile of its training data: ``training_data`` (data or a Profile) when
    given, else the profile of the run's ``train`` dataset. A data ``schema`` (a Schema or
    its dict), when given, is what serving validates requests against (PII marks included);
    without one, requests are checked against the signature.
    """
    store = store or get_store()
    _check_name("model name", name)
    for alias in aliases or []:
        _check_alias(alias)
    run_id = _run_id_of(run)
    if run_id is not None:
        from prodml.tracking.runs import get as get_run
        run_id = get_run(run_id, store=store).id
    train_schema, profile_sha = _train_dataset(store, run_id)
    if signature is not None:
        sig: Signature | None = as_signature(signature)
    elif input_example is not None:
        sig = Signature.from_data(input_example)
    else:
        sig = from_model_and_schema(model, train_schema)
    profile_blob = None
    if training_data is not None:
        given = training_data if isinstance(training_data, Profile) else profile(training_data)
        profile_blob = store.artifacts.put_bytes(given.to_bytes())
        profile_sha = profile_blob.sha256
    schema_dict = (schema if isinstance(schema, Schema) else Schema.from_dict(schema)).to_dict() \
        if schema is not None else None
    packed = flavors.serialize(model, flavor, serialization, trusted)
    blob = store.artifacts.put_bytes(packed.data)
    created = now_ms()
    for _attempt in range(20):  # concurrent registrations race for the next number
        try:
            with store.write() as conn:
                store.record_artifact(conn, blob, f"application/x-prodml-{packed.serialization}")
                if profile_blob is not None:
                    store.record_artifact(conn, profile_blob, "application/x-prodml-profile")
                conn.execute(store.insert(t.registered_models).values(
                    name=name, created_at=created).on_conflict_do_nothing(
                    index_elements=["name"]))
                number = (conn.execute(select(func.max(t.model_versions.c.version))
                                       .where(t.model_versions.c.model_name == name)).scalar()
                          or 0) + 1
                version_id = conn.execute(t.model_versions.insert().values(
                    model_name=name, version=number, flavor=packed.flavor,
                    serialization=packed.serialization, flavor_options=packed.options,
                    model_class=flavors.model_class(model), artifact_sha256=blob.sha256,
                    signature=sig.to_dict() if sig else None, run_id=run_id,
                    description=description, created_at=created, profile_sha256=profile_sha,
                    schema=schema_dict)
                ).inserted_primary_key[0]
                if tags:
                    conn.execute(t.model_version_tags.insert(), [
                        {"version_id": version_id, "key": k, "value": str(v)}
                        for k, v in tags.items()])
                for alias in aliases or []:
                    _upsert_alias(store, conn, name, alias, number)
            return get(f"{name}/{number}", store=store)
        except IntegrityError:
            continue
    raise InvalidInputError("model name", name, "too many concurrent registrations; retry")


def record_learned_signature(ref: str, learned: Signature, *, store: Store | None = None
                             ) -> Signature | None:
    """Record types learned from the first request a served version answered, once: only
    while the stored signature still has ``unknown`` columns (the first server worker to get
    here wins). Returns the signature stored afterwards, which every worker should use."""
    store = store or get_store()
    with store.write() as conn:
        name, version = _resolve(conn, ref)
        where = (t.model_versions.c.model_name == name) & (t.model_versions.c.version == version)
        current = conn.execute(select(t.model_versions.c.signature).where(where)
                               .with_for_update()).scalar()
        stored = Signature.from_dict(current) if current else None
        if stored is None or not stored.unknown or stored.names != learned.names:
            return stored
        conn.execute(t.model_versions.update().where(where).values(signature=learned.to_dict()))
        return learned


def _check_alias(alias: Any) -> str:
    _check_name("alias", alias)
    if alias in RESERVED_ALIASES or alias.isdigit():
        raise InvalidInputError("alias", alias, "is reserved (latest, or a number)")
    return alias


def _upsert_alias(store: Store, conn: Any, name: str, alias: str, version: int) -> None:
    stmt = store.insert(t.model_aliases).values(model_name=name, alias=alias, version=version,
                                                updated_at=now_ms())
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["model_name", "alias"],
        set_={"version": stmt.excluded.version, "updated_at": stmt.excluded.updated_at}))


def _resolve(conn: Any, ref: str) -> tuple[str, int]:
    name, version, alias = parse_ref(ref)
    if conn.execute(select(t.registered_models.c.name)
                    .where(t.registered_models.c.name == name)).first() is None:
        raise NotFoundError("model", name, "register it with pm.models.register")
    if alias == "latest":
        version = conn.execute(select(func.max(t.model_versions.c.version))
                               .where(t.model_versions.c.model_name == name)).scalar()
    elif alias is not None:
        version = conn.execute(select(t.model_aliases.c.version)
                               .where(t.model_aliases.c.model_name == name,
                                      t.model_aliases.c.alias == alias)).scalar()
        if version is None:
            known = conn.execute(select(t.model_aliases.c.alias)
                                 .where(t.model_aliases.c.model_name == name)).scalars().all()
            raise NotFoundError("alias", f"{name}@{alias}", "known aliases: "
                                + (", ".join(sorted(known)) or "none"))
    exists = conn.execute(select(t.model_versions.c.id).where(
        t.model_versions.c.model_name == name, t.model_versions.c.version == version)).first()
    if version is None or exists is None:
        raise NotFoundError("model version", f"{name}/{version}")
    return name, int(version)


def get(ref: str, *, store: Store | None = None) -> ModelVersion:
    """The registry record behind ``ref``."""
    store = store or get_store()
    with store.read() as conn:
        name, version = _resolve(conn, ref)
        return _versions(conn, (t.model_versions.c.model_name == name)
                         & (t.model_versions.c.version == version))[0]


def _versions(conn: Any, where: Any) -> list[ModelVersion]:
    rows = conn.execute(select(t.model_versions, t.artifacts.c.uri, t.artifacts.c.size)
                        .join(t.artifacts, t.artifacts.c.sha256 ==
                              t.model_versions.c.artifact_sha256)
                        .where(where)
                        .order_by(t.model_versions.c.model_name, t.model_versions.c.version)
                        ).mappings().all()
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    names = list({r["model_name"] for r in rows})
    tags: dict[int, dict[str, str]] = {i: {} for i in ids}
    for vid, key, value in conn.execute(select(t.model_version_tags).where(
            t.model_version_tags.c.version_id.in_(ids))):
        tags[vid][key] = value
    aliases: dict[tuple[str, int], list[str]] = {}
    for name, alias, version in conn.execute(
            select(t.model_aliases.c.model_name, t.model_aliases.c.alias,
                   t.model_aliases.c.version).where(t.model_aliases.c.model_name.in_(names))
            .order_by(t.model_aliases.c.alias)):
        aliases.setdefault((name, version), []).append(alias)
    run_ids = [r["run_id"] for r in rows if r["run_id"]]
    datasets: dict[str, list[DatasetRecord]] = {}
    if run_ids:
        for row in conn.execute(select(t.run_inputs.c.run_id, t.run_inputs.c.context, t.datasets)
                                .join(t.datasets, t.datasets.c.id == t.run_inputs.c.dataset_id)
                                .where(t.run_inputs.c.run_id.in_(run_ids))).mappings():
            datasets.setdefault(row["run_id"], []).append(dataset_record(row, row["context"]))
    return [ModelVersion(
        name=r["model_name"], version=r["version"], flavor=r["flavor"],
        serialization=r["serialization"], model_class=r["model_class"],
        artifact_sha256=r["artifact_sha256"], artifact_uri=r["uri"], size=r["size"],
        signature=Signature.from_dict(r["signature"]) if r["signature"] else None,
        run_id=r["run_id"], description=r["description"], created_at=r["created_at"],
        aliases=tuple(aliases.get((r["model_name"], r["version"]), [])), tags=tags[r["id"]],
        datasets=tuple(datasets.get(r["run_id"], [])), flavor_options=r["flavor_options"] or {},
        profile_sha256=r["profile_sha256"],
        schema=Schema.from_dict(r["schema"]) if r["schema"] else None)
        for r in rows]


def training_profile(ref: str, *, store: Store | None = None) -> Profile:
    """The profile of the data a version was trained on (what monitoring compares with)."""
    store = store or get_store()
    version = get(ref, store=store)
    if version.profile_sha256 is None:
        raise NotFoundError("training profile", version.ref, "register with training_data= "
                            "or log the run's train dataset with profile=True")
    return Profile.from_bytes(store.artifacts.get_bytes(version.profile_sha256))


def load(ref: str, *, store: Store | None = None) -> Any:
    """Load the model behind ``ref`` after checking its bytes against the registry's SHA-256."""
    store = store or get_store()
    version = get(ref, store=store)
    data = store.artifacts.get_bytes(version.artifact_sha256)  # raises if the bytes changed
    return flavors.deserialize(data, version.flavor, version.serialization,
                               version.flavor_options)


def set_alias(name: str, alias: str, version: int | str, *, store: Store | None = None
              ) -> ModelVersion:
    """Point ``name@alias`` at ``version``, atomically (one upsert)."""
    store = store or get_store()
    _check_alias(alias)
    target = get(f"{name}/{int(version)}" if str(version).isdigit() else f"{name}@{version}",
                 store=store)
    with store.write() as conn:
        _upsert_alias(store, conn, name, alias, target.version)
    return get(f"{name}@{alias}", store=store)


def delete_alias(name: str, alias: str, *, store: Store | None = None) -> None:
    store = store or get_store()
    get(f"{name}@{alias}", store=store)  # clear error if absent
    with store.write() as conn:
        conn.execute(delete(t.model_aliases).where(t.model_aliases.c.model_name == name,
                                                   t.model_aliases.c.alias == alias))


def set_tag(ref: str, key: str, value: Any, *, store: Store | None = None) -> ModelVersion:
    store = store or get_store()
    from prodml.tracking.runs import _check_key
    _check_key("tag", key)
    version = get(ref, store=store)
    with store.write() as conn:
        version_id = conn.execute(select(t.model_versions.c.id).where(
            t.model_versions.c.model_name == version.name,
            t.model_versions.c.version == version.version)).scalar_one()
        stmt = store.insert(t.model_version_tags).values(version_id=version_id, key=key,
                                                         value=str(value))
        conn.execute(stmt.on_conflict_do_update(index_elements=["version_id", "key"],
                                                set_={"value": stmt.excluded.value}))
    return get(version.ref, store=store)


def search(name: str | None = None, tags: dict[str, Any] | None = None, *,
           store: Store | None = None) -> list[ModelVersion]:
    """Versions of ``name`` (or of every model) carrying all of ``tags``."""
    store = store or get_store()
    where = t.model_versions.c.id.is_not(None)
    if name is not None:
        where &= t.model_versions.c.model_name == name
    for key, value in (tags or {}).items():
        where &= t.model_versions.c.id.in_(select(t.model_version_tags.c.version_id).where(
            t.model_version_tags.c.key == key, t.model_version_tags.c.value == str(value)))
    with store.read() as conn:
        return _versions(conn, where)


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    latest_version: int
    versions: int
    aliases: dict[str, int]
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "latest_version": self.latest_version,
                "versions": self.versions, "aliases": self.aliases,
                "created_at": self.created_at}


def list_models(*, store: Store | None = None) -> list[RegisteredModel]:
    store = store or get_store()
    with store.read() as conn:
        counts = conn.execute(select(t.model_versions.c.model_name,
                                     func.max(t.model_versions.c.version),
                                     func.count()).group_by(t.model_versions.c.model_name)).all()
        aliases: dict[str, dict[str, int]] = {}
        for name, alias, version in conn.execute(select(t.model_aliases.c.model_name,
                                                        t.model_aliases.c.alias,
                                                        t.model_aliases.c.version)):
            aliases.setdefault(name, {})[alias] = version
        created = dict(conn.execute(select(t.registered_models.c.name,
                                           t.registered_models.c.created_at)).all())
    return [RegisteredModel(name, latest, count, aliases.get(name, {}), created[name])
            for name, latest, count in sorted(counts)]


@dataclass(frozen=True)
class LoadCheck:
    """Proof that a version loads: digest verified, class rebuilt, predict present."""

    ref: str
    sha256: str
    flavor: str
    serialization: str
    loaded_class: str
    has_predict: bool
    has_predict_proba: bool

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def load_check(ref: str, *, store: Store | None = None) -> LoadCheck:
    store = store or get_store()
    version = get(ref, store=store)
    model = load(version.ref, store=store)
    return LoadCheck(version.ref, version.artifact_sha256, version.flavor, version.serialization,
                     flavors.model_class(model), callable(getattr(model, "predict", None)),
                     callable(getattr(model, "predict_proba", None)))


# Evaluations and blessings belong to versions too; they live in their own module.
from prodml.tracking.evaluations import (NotBlessedError, attach_evaluation,  # noqa: E402,F401
                                         blessing, evaluations, require_blessed)
