"""The labelling act of the demo: several people label the same loan files.

A slice of the test applications is labelled ("would you approve it?") by five simulated
loan officers. Four are careful, but some files are genuinely borderline and the first
labelling instruction (v1) left them unclear; v2 clarified the definition, so fewer files
are ambiguous under it. The fifth officer is careless: a random answer 40 % of the time.

The annotations go to the store linked to the test dataset's rows, and the act reports what
the course's labelling loop looks at: agreement (overall and by instruction version), the
most disputed files, the careless labeler (lowest agreement with the consensus of the
others) and human-level performance, which the evaluation then uses as its ``hlp``
baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from prodml.demo.data import LABEL
from prodml.store import Store
from prodml.tracking import annotations as labels

OFFICERS = ("ana", "ben", "chen", "dara", "eli")
CARELESS = "eli"
SLICE_ROWS = 240
ERROR = 0.05  # a careful officer's slips
AMBIGUOUS = {"v1": 0.35, "v2": 0.05}  # share of files the instruction leaves unclear
CARELESS_RANDOM = 0.4


def simulated_annotations(data: pd.DataFrame, seed: int = 42) -> pd.DataFrame:
    """Five officers' approve/decline labels on ``data``'s rows (item = row position).

    >>> from prodml.demo.data import loan_applications
    >>> ann = simulated_annotations(loan_applications(20), seed=1)
    >>> ann.shape, sorted(ann["labeler"].unique())[-1], ann["instruction"].unique().tolist()
    ((100, 6), 'eli', ['v1', 'v2'])
    """
    rng = np.random.default_rng(seed)
    n = len(data)
    truth = data[LABEL].to_numpy()
    instruction = np.where(np.arange(n) < n // 2, "v1", "v2")
    unclear = rng.random(n) < np.where(instruction == "v1", AMBIGUOUS["v1"], AMBIGUOUS["v2"])
    item = np.repeat(np.arange(n), len(OFFICERS))
    who = np.tile(np.arange(len(OFFICERS)), n)
    careless = who == OFFICERS.index(CARELESS)
    # an unclear file is a coin toss for anyone; a clear one only for the careless officer
    flip_chance = np.where(unclear[item], 0.5, ERROR)
    guess = careless & (rng.random(len(item)) < CARELESS_RANDOM)
    label = np.where(rng.random(len(item)) < flip_chance, 1 - truth[item], truth[item])
    label = np.where(guess, rng.integers(0, 2, len(item)), label)
    start = pd.Timestamp("2024-06-03 09:00", tz="UTC")
    return pd.DataFrame({
        "item": item, "labeler": np.asarray(OFFICERS)[who], "label": label,
        "time": start + pd.to_timedelta(item * 90 + who * 7, unit="s"),
        "instruction": instruction[item],
        "zipcode": data["zipcode"].to_numpy()[item]})


def labelling_story(test: pd.DataFrame, *, store: Store, seed: int = 42,
                    say: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Label a slice of ``test``, store it, and report agreement, disputes, the careless
    labeler and HLP; ``["baselines"]`` is what ``evaluate(..., baselines=...)`` takes."""
    data = test.iloc[:SLICE_ROWS]
    say(f"labelling {len(data)} test applications: {len(OFFICERS)} loan officers each, "
        "instruction v1 then the clarified v2")
    labels.import_annotations(simulated_annotations(data, seed), dataset=test, store=store,
                              source="demo: simulated loan officers")
    stored = labels.load(dataset=test, store=store)
    report = labels.agreement(stored)
    by_version = {v: round(x["krippendorff_alpha"], 3) for v, x in report.by_instruction.items()}
    disputed = labels.disputes(stored, top=3)
    worst = report.least_consistent
    others = [x.with_consensus for x in report.per_labeler if x.labeler != worst.labeler]
    truth = dict(zip(range(len(data)), data[LABEL].tolist()))
    hlp = labels.human_level(stored, truth={str(k): v for k, v in truth.items()})
    careful = labels.human_level(stored.select(stored.frame["labeler"].to_numpy()
                                               != worst.labeler),
                                 truth={str(k): v for k, v in truth.items()})
    say(f"agreement: Krippendorff's alpha {report.krippendorff_alpha:.3f}, Fleiss' kappa "
        f"{report.fleiss_kappa:.3f}; by instruction "
        + " -> ".join(f"{v} {a:.3f}" for v, a in by_version.items()))
    say("most disputed files: " + "; ".join(
        f"#{r['item']} ({r['votes']})" for r in disputed.table.iter_rows(named=True)))
    say(f"careless labeler found: {worst.labeler} agrees with the others' consensus "
        f"{worst.with_consensus:.0%} of the time (the others {min(others):.0%}-"
        f"{max(others):.0%})")
    say(f"human-level performance {hlp.overall:.1%} (without {worst.labeler}: "
        f"{careful.overall:.1%}): the evaluation's 'hlp' baseline")
    return {"items": report.items, "annotations": report.annotations,
            "labelers": list(report.labelers),
            "krippendorff_alpha": report.krippendorff_alpha,
            "fleiss_kappa": report.fleiss_kappa, "by_instruction": by_version,
            "disputed": disputed.table.select("item", "entropy", "votes", "labels").to_dicts(),
            "careless": worst.labeler, "careless_agreement": worst.with_consensus,
            "hlp": hlp.overall, "hlp_without_careless": careful.overall,
            "baselines": {"hlp": hlp.overall}}
