"""Every metric equals scikit-learn's on the same rows: overall, and per slice from the
vectorised group-by path."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LinearRegression, LogisticRegression

from prodml.evaluation import ConfusionMatrix, evaluate
from prodml.evaluation.metrics import cell_metrics

TOL = 1e-12


def close(a: float, b: float, tol: float = TOL) -> bool:
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return abs(a - b) <= tol * max(1.0, abs(b))


def sk_ece_binary(y: np.ndarray, p: np.ndarray) -> float:
    true, pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p), minlength=10)
    counts = counts[counts > 0]
    return float(np.sum(counts / len(y) * np.abs(true - pred)))


def sk_binary(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    pred = (p >= threshold).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"accuracy": skm.accuracy_score(y, pred),
               "precision": skm.precision_score(y, pred, zero_division=0),
               "recall": skm.recall_score(y, pred, zero_division=0),
               "f1": skm.f1_score(y, pred, zero_division=0),
               "roc_auc": skm.roc_auc_score(y, p),
               "pr_auc": skm.average_precision_score(y, p),
               "log_loss": skm.log_loss(y, p, labels=[0, 1]),
               "ece": sk_ece_binary(y, p)}
        for avg in ("macro", "weighted"):
            out[f"precision_{avg}"] = skm.precision_score(y, pred, average=avg, zero_division=0)
            out[f"recall_{avg}"] = skm.recall_score(y, pred, average=avg, zero_division=0)
            out[f"f1_{avg}"] = skm.f1_score(y, pred, average=avg, zero_division=0)
    return out


@pytest.fixture(scope="module")
def binary() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 3000
    y = rng.integers(0, 2, n)
    df = pd.DataFrame({"y": y, "region": rng.choice(list("abcde"), n, p=[.4, .3, .2, .09, .01]),
                       "age": rng.integers(18, 90, n)})
    # rounded scores: many ties, which the rank statistics must average like sklearn does
    df["p"] = np.clip(y * 0.35 + rng.random(n) * 0.65, 0, 1).round(2)
    # a slice with only negatives: AUC undefined there (NaN), AP 0 as sklearn says
    df.loc[df.region == "e", "y"] = 0
    return df


def test_binary_metrics_equal_sklearn_overall_and_per_slice(binary: pd.DataFrame) -> None:
    r = evaluate("p", binary, label="y", slices=["region", ("region", "age")], bootstrap=0)
    y, p = binary.y.to_numpy(), binary.p.to_numpy()
    expected = sk_binary(y, p)
    for name, value in expected.items():
        assert close(r.metric(name), value), name
    cm = skm.confusion_matrix(y, (p >= .5).astype(int))
    assert r.confusion == ConfusionMatrix((0, 1), cm)
    crosses = [s for s in r.slices if s.feature == "region x age"]
    assert sum(s.count for s in crosses) == len(binary)
    for s in [s for s in r.slices if s.feature == "region"] + crosses[::12]:
        m = (binary.region == s.value).to_numpy() if s.feature == "region" else (
            (binary.region + " & " + binary.age.astype(str)) == s.value).to_numpy()
        assert s.count == m.sum()
        want = sk_binary(y[m], p[m])
        for name, value in want.items():
            assert close(s.metrics[name], value), (s.name, name, s.metrics[name], value)
    assert np.isnan(r.metric("roc_auc", "region=e")) and r.metric("pr_auc", "region=e") == 0


def test_per_class_entries_and_threshold(binary: pd.DataFrame) -> None:
    r = evaluate("p", binary, label="y", threshold=0.3, bootstrap=0)
    y, pred = binary.y.to_numpy(), (binary.p.to_numpy() >= 0.3).astype(int)
    per_class = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    for i, c in enumerate((0, 1)):
        assert close(r.metric(f"precision[{c}]"), per_class[0][i])
        assert close(r.metric(f"recall[{c}]"), per_class[1][i])
        assert close(r.metric(f"f1[{c}]"), per_class[2][i])
    assert close(r.metric("accuracy"), skm.accuracy_score(y, pred))


def test_course_notes_confusion_example() -> None:
    # TP 68, FP 9, FN 18, TN 905 (1,000 examples): precision 88.3 %, recall 79.1 %
    y = np.array([1] * 68 + [0] * 9 + [1] * 18 + [0] * 905)
    pred = np.array([1] * 68 + [1] * 9 + [0] * 18 + [0] * 905)
    r = evaluate(pred, pd.DataFrame({"y": y}), label="y", bootstrap=0)
    precision, recall = r.metric("precision"), r.metric("recall")
    assert round(precision, 3) == 0.883 and round(recall, 3) == 0.791
    assert close(precision, 68 / 77) and close(recall, 68 / 86)
    assert close(r.metric("f1"), 2 / (1 / precision + 1 / recall))
    assert r.confusion.count(true=1, predicted=1) == 68 and r.confusion.count(0, 1) == 9
    assert r.confusion.count(1, 0) == 18 and r.confusion.count(0, 0) == 905


def test_multiclass_probabilities_equal_sklearn() -> None:
    rng = np.random.default_rng(3)
    n, k = 2000, 3
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    group = rng.choice(["u", "v"], n)
    df = pd.DataFrame({"label": y, "g": group})
    r = evaluate(proba, df, label="label", slices="g", bootstrap=0)
    for name, m in [("overall", np.ones(n, bool)), ("g=u", group == "u"), ("g=v", group == "v")]:
        yy, pp = y[m], proba[m]
        pred = pp.argmax(axis=1)
        s = r.slice(name).metrics
        assert close(s["accuracy"], skm.accuracy_score(yy, pred))
        for avg in ("macro", "weighted"):
            assert close(s[f"f1_{avg}"], skm.f1_score(yy, pred, average=avg))
            assert close(s[f"precision_{avg}"], skm.precision_score(yy, pred, average=avg))
            assert close(s[f"recall_{avg}"], skm.recall_score(yy, pred, average=avg))
        assert close(s["f1"], skm.f1_score(yy, pred, average="macro"))
        assert close(s["roc_auc"], skm.roc_auc_score(yy, pp, multi_class="ovr"))
        assert close(s["pr_auc"], skm.average_precision_score(np.eye(k)[yy], pp))
        assert close(s["log_loss"], skm.log_loss(yy, pp, labels=[0, 1, 2]))
        conf, hit = pp.max(axis=1), (pred == yy)
        bins = np.searchsorted(np.linspace(0, 1, 11)[1:-1], conf)
        ece = sum(abs(hit[bins == b].sum() - conf[bins == b].sum()) for b in range(10)) / len(yy)
        assert close(s["ece"], ece)
    assert r.confusion.matrix.tolist() == skm.confusion_matrix(y, proba.argmax(1)).tolist()


def test_multiclass_string_labels_macro_over_present_classes() -> None:
    y = np.array(["cat", "dog", "cat", "bird", "dog", "cat", "dog", "dog"])
    pred = np.array(["cat", "cat", "cat", "dog", "dog", "bird", "dog", "cat"])
    df = pd.DataFrame({"y": y, "g": [0, 0, 0, 0, 1, 1, 1, 1]})
    r = evaluate(pred, df, label="y", slices="g", bootstrap=0, min_slice_size=0)
    assert r.classes == ("bird", "cat", "dog")
    for name, m in [("overall", slice(None)), ("g=0", slice(0, 4)), ("g=1", slice(4, 8))]:
        s = r.slice(name).metrics
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert close(s["f1_macro"], skm.f1_score(y[m], pred[m], average="macro"))
            assert close(s["precision_macro"], skm.precision_score(y[m], pred[m],
                                                                   average="macro"))
            assert close(s["recall_weighted"], skm.recall_score(y[m], pred[m],
                                                                average="weighted"))
    assert r.confusion.count("dog", "cat") == 2


def test_regression_equals_sklearn() -> None:
    rng = np.random.default_rng(5)
    n = 1500
    df = pd.DataFrame({"price": rng.normal(100, 30, n), "city": rng.choice(list("xyz"), n)})
    df.loc[:4, "price"] = 0.0  # MAPE's epsilon guard
    pred = df.price.to_numpy() + rng.normal(0, 10, n)
    r = evaluate(pred, df, label="price", slices="city", bootstrap=0)
    assert r.task == "regression" and r.confusion is None
    for name, m in [("overall", np.ones(n, bool)),
                    *((f"city={c}", (df.city == c).to_numpy()) for c in "xyz")]:
        y, p = df.price.to_numpy()[m], pred[m]
        s = r.slice(name).metrics
        assert close(s["mae"], skm.mean_absolute_error(y, p))
        assert close(s["rmse"], skm.root_mean_squared_error(y, p))
        assert close(s["mape"], skm.mean_absolute_percentage_error(y, p), 1e-10)
        assert close(s["r2"], skm.r2_score(y, p), 1e-10)


def test_models_with_and_without_probabilities() -> None:
    rng = np.random.default_rng(11)
    n = 600
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (X.a + X.b + rng.normal(0, .5, n) > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    # "segment" is metadata: not a feature of the model, but slices can use it
    data = X.assign(y=y, segment=rng.choice(["web", "app"], n))
    r = evaluate(clf, data, label="y", slices="segment", bootstrap=0)
    p = clf.predict_proba(X)[:, 1]
    assert close(r.metric("roc_auc"), skm.roc_auc_score(y, p))
    assert close(r.metric("accuracy"), skm.accuracy_score(y, clf.predict(X)))
    reg = LinearRegression().fit(X, X.a * 2)
    rr = evaluate(reg, X.assign(t=X.a * 2 + 0.1), label="t", bootstrap=0)
    assert rr.task == "regression" and close(rr.metric("mae"), 0.1, 1e-9)


def test_positive_label_and_string_binary() -> None:
    y = np.array(["spam", "ham", "ham", "spam", "ham", "spam"])
    p_ham = np.array([0.2, 0.9, 0.6, 0.4, 0.3, 0.1])
    r = evaluate(p_ham, pd.DataFrame({"y": y}), label="y", positive_label="ham", bootstrap=0)
    assert r.positive_label == "ham"
    yb = (y == "ham").astype(int)
    assert close(r.metric("roc_auc"), skm.roc_auc_score(yb, p_ham))
    assert close(r.metric("recall"), skm.recall_score(yb, (p_ham >= .5).astype(int)))
    assert close(r.metric("log_loss"), skm.log_loss(yb, p_ham))


def test_cell_metrics_vectorised_over_leading_axes() -> None:
    cells = np.array([[[5, 1], [2, 7]], [[0, 0], [3, 4]]])
    m = cell_metrics(cells, positive=1)
    assert m["accuracy"].shape == (2,)
    assert close(float(m["precision"][1]), 4 / 4) and close(float(m["recall"][1]), 4 / 7)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6), st.integers(0, 2)),
                min_size=4, max_size=60))
def test_vectorised_auc_matches_sklearn_on_random_ties(rows: list[tuple[int, int, int]]) -> None:
    y = np.array([r[0] for r in rows])
    score = np.array([r[1] for r in rows]) / 6.0
    group = np.array([r[2] for r in rows])
    r = evaluate(score, pd.DataFrame({"y": y, "g": group}), label="y", slices="g",
                 bootstrap=0, task="classification")
    for s in [r.overall, *r.slices]:
        m = np.ones(len(y), bool) if s.feature is None else group == int(s.value)
        if len(set(y[m])) < 2:
            assert np.isnan(s.metrics["roc_auc"])
            continue
        assert close(s.metrics["roc_auc"], skm.roc_auc_score(y[m], score[m]))
        assert close(s.metrics["pr_auc"], skm.average_precision_score(y[m], score[m]))
