"""The model registry on SQLite and PostgreSQL: versions, aliases, tags, flavors, loading."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import prodml as pm
from tests.tracking.model_classes import ThresholdRule


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = pd.DataFrame({"salary": rng.normal(50, 10, 400), "age": rng.integers(18, 80, 400),
                      "car": rng.integers(1, 20, 400)})
    y = (X["salary"] + rng.normal(0, 3, 400) > 50).astype(int).to_numpy()
    return X, y


def test_versions_number_up_and_load_by_version_alias_latest(store, data):
    X, y = data
    first = make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(X, y)
    second = make_pipeline(StandardScaler(), LogisticRegression(C=10.0)).fit(X, y)
    v1 = pm.models.register("loan", first, aliases=["champion"])
    v2 = pm.models.register("loan", second, aliases=["challenger"])
    assert (v1.version, v2.version) == (1, 2)
    assert v1.serialization == "skops"  # safe format when skops trusts every type
    np.testing.assert_array_equal(pm.models.load("loan/1").predict_proba(X),
                                  first.predict_proba(X))
    np.testing.assert_array_equal(pm.models.load("models:/loan@challenger").predict_proba(X),
                                  second.predict_proba(X))
    assert pm.models.get("loan@latest").version == 2
    assert pm.models.get("loan@champion").aliases == ("champion",)


def test_alias_moves_atomically_between_versions(store, data):
    X, y = data
    for c in (0.1, 1.0):
        pm.models.register("loan", LogisticRegression(C=c).fit(X, y))
    pm.models.set_alias("loan", "champion", 1)
    moved = pm.models.set_alias("loan", "champion", 2)
    assert moved.version == 2 and moved.aliases == ("champion",)
    assert pm.models.get("loan/1").aliases == ()  # one alias points at one version
    pm.models.set_alias("loan", "previous", "champion")  # an alias may name another alias
    assert pm.models.get("loan@previous").version == 2
    pm.models.delete_alias("loan", "previous")
    with pytest.raises(pm.NotFoundError, match="known aliases: champion"):
        pm.models.get("loan@previous")
    with pytest.raises(pm.InvalidInputError, match="reserved"):
        pm.models.set_alias("loan", "latest", 1)


def test_clear_errors_for_unknown_references(store, data):
    X, y = data
    pm.models.register("loan", LogisticRegression().fit(X, y))
    with pytest.raises(pm.NotFoundError, match="model 'nope' not found"):
        pm.models.get("nope/1")
    with pytest.raises(pm.NotFoundError, match="model version 'loan/7' not found"):
        pm.models.load("loan/7")
    with pytest.raises(pm.NotFoundError, match="alias 'loan@prod' not found"):
        pm.models.load("loan@prod")
    with pytest.raises(pm.InvalidInputError, match="NAME/VERSION or NAME@ALIAS"):
        pm.models.get("loan")
    with pytest.raises(pm.InvalidInputError, match="model name"):
        pm.models.register("bad name!", LogisticRegression())


def test_names_with_a_trailing_newline_are_refused(store, data):
    """``$`` with ``re.match`` let "loan\\n" in as a second, distinct model."""
    X, y = data
    model = LogisticRegression().fit(X, y)
    pm.models.register("loan", model)
    with pytest.raises(pm.InvalidInputError, match="model name='loan\\\\n'"):
        pm.models.register("loan\n", model)
    with pytest.raises(pm.InvalidInputError, match="alias"):
        pm.models.set_alias("loan", "champion\n", 1)
    with pytest.raises(pm.InvalidInputError, match="experiment name"):
        with pm.start_run(experiment="e\n"):
            pass
    with pytest.raises(pm.InvalidInputError, match="model reference"):
        pm.models.get("loan/１")  # a full-width digit is not a version number
    with pytest.raises(pm.NotFoundError, match="model version"):
        pm.models.get("loan/" + "1" * 30)
    assert [m.name for m in pm.models.list_models()] == ["loan"]


def test_tags_and_search_by_tag(store, data):
    X, y = data
    a = pm.models.register("loan", LogisticRegression().fit(X, y), tags={"stage": "staging"})
    pm.models.register("loan", LogisticRegression(C=2).fit(X, y), tags={"stage": "prod"})
    pm.models.register("fraud", LogisticRegression().fit(X, y), tags={"stage": "staging"})
    pm.models.set_tag(a.ref, "validated", "yes")
    found = pm.models.search(tags={"stage": "staging"})
    assert sorted(v.ref for v in found) == ["fraud/1", "loan/1"]
    assert [v.ref for v in pm.models.search("loan", {"stage": "staging", "validated": "yes"})] \
        == ["loan/1"]
    assert pm.models.search(tags={"stage": "none"}) == []
    listed = {m.name: m for m in pm.models.list_models()}
    assert listed["loan"].latest_version == 2 and listed["fraud"].versions == 1


def test_signature_inferred_from_run_training_data(store, data):
    X, y = data
    with pm.start_run(experiment="loan") as run:
        run.log_dataset(X.assign(label=y), context="train")
        model = LogisticRegression().fit(X, y)
    version = pm.models.register("loan", model, run=run)
    assert version.run_id == run.id
    assert [(c.name, c.type) for c in version.signature.inputs] == [
        ("salary", "float"), ("age", "integer"), ("car", "integer")]
    assert [d.context for d in version.datasets] == ["train"]
    example = pm.models.register("loan", model, input_example=X.head(3).astype({"car": str}))
    assert example.signature.inputs[2].type == "string"


def test_untrusted_skops_types_fall_back_to_pickle_or_are_trusted_explicitly(store, data):
    X, y = data
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    tree_type = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    assert pm.models.register("gbm", model).serialization == "pickle"
    trusted = pm.models.register("gbm", model, trusted=[tree_type])
    assert trusted.serialization == "skops"
    np.testing.assert_array_equal(pm.models.load(trusted.ref).predict(X), model.predict(X))
    with pytest.raises(pm.InvalidInputError, match="TreePredictor"):
        pm.models.register("gbm", model, serialization="skops")


def test_python_flavor_any_object_with_predict(store, data):
    X, _ = data
    version = pm.models.register("rule", ThresholdRule(55.0))
    assert (version.flavor, version.serialization) == ("python", "pickle")
    loaded = pm.models.load("rule/1")
    np.testing.assert_array_equal(loaded.predict(X), (X["salary"] > 55.0).astype(int))
    with pytest.raises(pm.InvalidInputError, match="predict method"):
        pm.models.register("nothing", object())


def test_lightgbm_through_its_sklearn_api(store, data):
    lightgbm = pytest.importorskip("lightgbm")
    X, y = data
    model = lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, y)
    version = pm.models.register("lgbm", model)
    assert version.flavor == "sklearn"
    np.testing.assert_allclose(pm.models.load(version.ref).predict_proba(X),
                               model.predict_proba(X))


def test_onnx_flavor_runs_through_onnxruntime(store, data):
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType

    X, y = data
    model = LogisticRegression().fit(X.to_numpy(np.float32), y)
    onnx_model = skl2onnx.convert_sklearn(
        model, initial_types=[("input", FloatTensorType([None, 3]))],
        options={id(model): {"zipmap": False}})
    version = pm.models.register("onnx-loan", onnx_model)
    assert (version.flavor, version.serialization) == ("onnx", "onnx")
    loaded = pm.models.load(version.ref)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X.to_numpy(np.float32)))
    np.testing.assert_allclose(loaded.predict_proba(X),
                               model.predict_proba(X.to_numpy(np.float32)), atol=1e-5)
    check = pm.models.load_check(version.ref)
    assert check.has_predict_proba and check.sha256 == version.artifact_sha256


def _register_many(url: str, artifacts: str, count: int, queue) -> None:
    import prodml as pm_child
    pm_child.open_store(url, artifacts, make_default=True)
    queue.put([pm_child.models.register("shared", ThresholdRule(i)).version
               for i in range(count)])


def test_concurrent_registrations_get_distinct_consecutive_versions(store):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_register_many,
                               args=(store.database_url, store.artifacts.location, 5, queue))
               for _ in range(4)]
    for w in workers:
        w.start()
    versions = sorted(v for _ in workers for v in queue.get(timeout=120))
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert versions == list(range(1, 21))


def test_head_revision_constant_matches_alembic():
    from prodml.store.engine import HEAD_REVISION, head_revision
    assert HEAD_REVISION == head_revision()
