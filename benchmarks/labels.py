"""Benchmark: label agreement and consensus with prodml, against the straightforward pandas +
statsmodels + krippendorff route on the same annotations, same run.

Not a test. 1,000,000 annotations by default: 200,000 items, each labelled by 5 of 50
labelers (so Fleiss' kappa applies), 5 classes; 40 careful labelers (5 % random labels), 8
noisy ones (30 %) and 2 careless ones (70 %).

- prodml: ``as_annotations`` (encode once), ``pm.labels.agreement`` (Fleiss' kappa,
  Krippendorff's alpha, Cohen's kappa for all 1,225 labeler pairs, per class, per labeler
  against the leave-one-out consensus, labeler confusion) and ``pm.labels.consensus``
  (majority vote, ties settled by the prior).
- peer: pandas ``sort_values`` + reshape into items x 5 ratings, statsmodels
  ``aggregate_raters`` + ``fleiss_kappa``; pandas ``pivot`` into labelers x items and
  ``krippendorff.alpha`` (nominal); majority vote by pandas ``groupby([item, label]).size()
  .unstack()`` + ``idxmax``. It computes less than prodml does (no pairs, classes or labelers).

Checks that both give the same kappa, alpha and majority labels (on untied items), prints
every repetition, the medians, and last the ratio (peer / prodml; above 1: prodml faster).

    .venv/bin/python benchmarks/labels.py --annotations 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

CLASSES = 5
PER_ITEM = 5


def make_annotations(annotations: int, labelers: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = annotations // PER_ITEM
    truth = rng.integers(0, CLASSES, items)
    noise = np.full(labelers, 0.05)
    noise[-10:-2], noise[-2:] = 0.3, 0.7
    who = np.argsort(rng.random((items, labelers)), axis=1)[:, :PER_ITEM].ravel()
    item = np.repeat(np.arange(items), PER_ITEM)
    random_label = rng.random(len(item)) < noise[who]
    label = np.where(random_label, rng.integers(0, CLASSES, len(item)), truth[item])
    order = rng.permutation(len(item))  # annotations arrive in no particular order
    return pd.DataFrame({"item": item[order], "labeler": np.char.add("l", who[order].astype(
        str).astype(object).astype(str)), "label": label[order]})


def prodml_way(frame: pd.DataFrame) -> dict:
    import prodml as pm
    from prodml.data.labels import as_annotations

    ann = as_annotations(frame)
    report = pm.labels.agreement(ann)
    majority = pm.labels.consensus(ann)
    return {"fleiss": report.fleiss_kappa, "alpha": report.krippendorff_alpha,
            "majority": majority.table["label"].to_numpy(),
            "tied": majority.table["tied"].to_numpy(),
            "least_consistent": report.least_consistent.labeler}


def peer_way(frame: pd.DataFrame) -> dict:
    import krippendorff
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    ratings = frame.sort_values("item")["label"].to_numpy().reshape(-1, PER_ITEM)
    table, _ = aggregate_raters(ratings)
    fleiss = fleiss_kappa(table)
    reliability = frame.pivot(index="labeler", columns="item", values="label")
    alpha = krippendorff.alpha(reliability.to_numpy(dtype=float),
                               level_of_measurement="nominal")
    counts = frame.groupby(["item", "label"]).size().unstack(fill_value=0)
    majority = counts.idxmax(axis=1)
    return {"fleiss": fleiss, "alpha": alpha, "majority": majority.to_numpy()}


def timed(fn, frame):
    start = time.perf_counter()
    out = fn(frame)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=int, default=1_000_000)
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    frame = make_annotations(args.annotations, args.labelers)
    print(f"{len(frame):,} annotations, {frame['item'].nunique():,} items, "
          f"{frame['labeler'].nunique()} labelers, {CLASSES} classes")
    timed(prodml_way, frame.head(10_000))  # imports and first-call costs out of the timing
    timed(peer_way, frame.head(10_000))
    ours, theirs = [], []
    for i in range(args.repeat):
        first, second = (prodml_way, peer_way) if i % 2 == 0 else (peer_way, prodml_way)
        for fn in (first, second):
            seconds, out = timed(fn, frame)
            (ours if fn is prodml_way else theirs).append(seconds)
            if fn is prodml_way:
                mine = out
            else:
                peer = out
        print(f"repetition {i + 1}: prodml {ours[-1]:.2f} s, peer {theirs[-1]:.2f} s")
    assert abs(mine["fleiss"] - peer["fleiss"]) < 1e-9, (mine["fleiss"], peer["fleiss"])
    assert abs(mine["alpha"] - peer["alpha"]) < 1e-9, (mine["alpha"], peer["alpha"])
    untied = ~mine["tied"]
    assert (mine["majority"][untied] == peer["majority"][untied]).all()
    print(f"same results: Fleiss' kappa {mine['fleiss']:.4f}, Krippendorff's alpha "
          f"{mine['alpha']:.4f}, majority labels on {untied.sum():,} untied items "
          f"(prodml also: 1,225 pairwise Cohen's kappas, per class, per labeler; least "
          f"consistent labeler {mine['least_consistent']})")
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(f"median prodml {mo:.2f} s, peer (pandas + statsmodels + krippendorff) {mt:.2f} s")
    print(f"ratio: {mt / mo:.1f}x")


if __name__ == "__main__":
    main()
