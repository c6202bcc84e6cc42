"""Benchmark: pm.evaluate over slices with fairness, against a per-slice loop of
scikit-learn metrics and Fairlearn MetricFrame on the same data, same run.

Not a test. 3 slice columns x 20 values = 60 slices, one protected attribute; the ratio is
printed last.

    .venv/bin/python benchmarks/evaluation.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    score = np.clip(y * 0.35 + rng.random(rows) * 0.65, 0, 1)
    return pd.DataFrame({"y": y, "score": score,
                         **{f"s{i}": rng.integers(0, 20, rows).astype(str) for i in range(3)},
                         "gender": rng.choice(["f", "m", "x"], rows, p=[0.48, 0.48, 0.04])})


def prodml_way(frame: pd.DataFrame) -> dict[str, float]:
    import prodml as pm

    result = pm.evaluate("score", frame, label="y", slices=["s0", "s1", "s2"],
                         protected=["gender"], bootstrap=0)
    return {s.name: s.metrics["accuracy"] for s in result.slices}


def loop_way(frame: pd.DataFrame) -> dict[str, float]:
    """The idiomatic peer: one Fairlearn MetricFrame per slice column, whose groups are the
    slices and whose metrics are scikit-learn's, plus the fairness frame on the protected
    attribute and Fairlearn's disparity functions."""
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference,
                                   demographic_parity_ratio, equalized_odds_difference,
                                   false_positive_rate, selection_rate, true_positive_rate)
    from sklearn import metrics as m

    y, score = frame["y"].to_numpy(), frame["score"].to_numpy()
    pred = (score >= 0.5).astype(int)
    out = {}
    for column in ("s0", "s1", "s2"):
        by_slice = MetricFrame(metrics={"accuracy": m.accuracy_score,
                                        "precision": m.precision_score,
                                        "recall": m.recall_score, "f1": m.f1_score},
                               y_true=y, y_pred=pred, sensitive_features=frame[column])
        auc = MetricFrame(metrics=m.roc_auc_score, y_true=y, y_pred=score,
                          sensitive_features=frame[column])
        auc.by_group  # noqa: B018 - computed on access in some versions
        for value, accuracy in by_slice.by_group["accuracy"].items():
            out[f"{column}={value}"] = accuracy
    MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                         "fpr": false_positive_rate},
                y_true=y, y_pred=pred, sensitive_features=frame["gender"]).by_group
    demographic_parity_difference(y, pred, sensitive_features=frame["gender"])
    demographic_parity_ratio(y, pred, sensitive_features=frame["gender"])
    equalized_odds_difference(y, pred, sensitive_features=frame["gender"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frame = make_data(args.rows)
    print(f"{args.rows:,} predictions, 60 slices (3 columns x 20 values), fairness on gender")
    times: dict[str, list[float]] = {"prodml": [], "loop": []}
    answers = {}
    for rep in range(args.repeat):
        for name, job in (("prodml", prodml_way), ("loop", loop_way))[::(-1) ** rep]:
            start = time.perf_counter()
            answers[name] = job(frame)
            times[name].append(time.perf_counter() - start)
            print(f"  rep {rep + 1} {name:6} {times[name][-1]:.2f} s")
    agree = all(abs(answers["prodml"][k] - v) < 1e-12 for k, v in answers["loop"].items())
    ours, theirs = statistics.median(times["prodml"]), statistics.median(times["loop"])
    print(f"per-slice accuracy identical on all {len(answers['loop'])} slices: {agree}")
    print(f"prodml evaluate: median {ours:.2f} s; sklearn + Fairlearn loop: median {theirs:.2f} s")
    print(f"ratio (loop / prodml): {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
