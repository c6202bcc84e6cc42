"""How consistently people label: kappas, alpha, per class, per labeler, and who mixes what.

Everything comes from two count tables built once with ``bincount``: items x classes (how
many labelers gave each item each class) and, for every pair of labelers, the classes x
classes table of the items both labelled. From them:

- Fleiss' kappa (Fleiss 1971; statsmodels' ``fleiss_kappa``), generalised to items with
  different numbers of labels the usual way (each item's agreement over its own pairs);
- Krippendorff's alpha at the nominal, ordinal, interval or ratio level, missing labels
  allowed (the ``krippendorff`` package's coincidence-matrix computation);
- Cohen's kappa for every pair of labelers on the items both labelled (scikit-learn's
  ``cohen_kappa_score``, weighted ``linear`` or ``quadratic`` for ordered labels);
- per class: specific agreement and Fleiss' per-category kappa;
- per labeler: agreement with the consensus of the *other* labelers (leave-that-labeler-out
  majority; a tie gives partial credit), agreement and mean kappa with the others;
- the confusion between labelers: how often one says class a where another says class b.

>>> report = agreement({"item": [1, 1, 2, 2, 3, 3], "labeler": ["a", "b"] * 3,
...                     "label": ["cat", "cat", "dog", "dog", "cat", "dog"]})
>>> round(report.observed, 3), round(report.cohen("a", "b"), 3)
(0.667, 0.4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodml.data.labels.annotations import Annotations, as_annotations, count_table
from prodml.data.labels.reliability import Moments, headline
from prodml.errors import InvalidInputError

LEVELS = ("nominal", "ordinal", "interval", "ratio")
WEIGHTS = (None, "linear", "quadratic")
DEFAULT_WEIGHTS = {"nominal": None, "ordinal": "linear", "interval": "quadratic",
                   "ratio": "quadratic"}


@dataclass(frozen=True)
class PairAgreement:
    """Two labelers on the items both labelled: observed agreement and Cohen's kappa."""

    a: str
    b: str
    items: int
    observed: float
    kappa: float

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "items": self.items, "observed": self.observed,
                "kappa": self.kappa}


@dataclass(frozen=True)
class LabelerAgreement:
    """One labeler against the others.

    ``with_consensus``: share of their labels equal to the majority of the *other* labels on
    that item (ties give 1/k credit); ``with_others``: share of their pairs with another
    labeler that agree; ``kappa``: their Cohen's kappas with the others, weighted by overlap.
    """

    labeler: str
    annotations: int
    with_consensus: float
    with_others: float
    kappa: float

    def to_dict(self) -> dict[str, Any]:
        return {"labeler": self.labeler, "annotations": self.annotations,
                "with_consensus": self.with_consensus, "with_others": self.with_others,
                "kappa": self.kappa}


@dataclass(frozen=True)
class ClassAgreement:
    """One class: its share of the labels, specific agreement (when someone says it, how
    often another labeler of the same item says it too) and Fleiss' per-category kappa."""

    label: Any
    share: float
    specific_agreement: float
    kappa: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": _plain(self.label), "share": self.share,
                "specific_agreement": self.specific_agreement, "kappa": self.kappa}


@dataclass(frozen=True)
class AgreementReport:
    """Agreement among labelers; ``by_instruction`` repeats the headline per version."""

    items: int
    annotations: int
    labelers: tuple[str, ...]
    classes: tuple[Any, ...]
    level: str
    weights: str | None
    observed: float  # mean over items of the share of agreeing label pairs
    fleiss_kappa: float
    krippendorff_alpha: float
    pairs: tuple[PairAgreement, ...]
    per_class: tuple[ClassAgreement, ...]
    per_labeler: tuple[LabelerAgreement, ...]
    confusion: np.ndarray = field(repr=False)  # classes x classes, pairs of labels
    by_instruction: dict[str, dict[str, float]] = field(default_factory=dict)

    def cohen(self, a: str, b: str) -> float:
        """Cohen's kappa of labelers ``a`` and ``b`` (NaN if they share no item)."""
        for p in self.pairs:
            if {p.a, p.b} == {a, b}:
                return p.kappa
        if a not in self.labelers or b not in self.labelers:
            raise InvalidInputError("labeler", a if a not in self.labelers else b,
                                    f"not a labeler (labelers: {', '.join(self.labelers)})")
        return math.nan

    @property
    def least_consistent(self) -> LabelerAgreement:
        """The labeler who agrees least with the consensus of the others."""
        scored = [x for x in self.per_labeler if not math.isnan(x.with_consensus)]
        if not scored:
            raise InvalidInputError("annotations", "no shared items", "no labeler shares an "
                                    "item with another")
        return min(scored, key=lambda x: (x.with_consensus, x.labeler))

    def confused(self, top: int = 5) -> list[tuple[Any, Any, int]]:
        """The class pairs labelers mix up most: ``(class a, class b, pairs)``."""
        k = len(self.classes)
        upper = [(self.classes[i], self.classes[j], int(self.confusion[i, j]
                                                        + self.confusion[j, i]))
                 for i in range(k) for j in range(i + 1, k)]
        return sorted((u for u in upper if u[2] > 0), key=lambda u: -u[2])[:top]

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "annotations": self.annotations,
                "labelers": list(self.labelers), "classes": [_plain(c) for c in self.classes],
                "level": self.level, "weights": self.weights, "observed": self.observed,
                "fleiss_kappa": self.fleiss_kappa,
                "krippendorff_alpha": self.krippendorff_alpha,
                "pairs": [p.to_dict() for p in self.pairs],
                "per_class": [c.to_dict() for c in self.per_class],
                "per_labeler": [x.to_dict() for x in self.per_labeler],
                "confusion": self.confusion.tolist(),
                "confused": [[_plain(a), _plain(b), n] for a, b, n in self.confused()],
                "by_instruction": self.by_instruction}

    def summary(self) -> str:
        lines = [(f"{self.items} items, {self.annotations} labels, {len(self.labelers)} "
                  f"labelers, {len(self.classes)} classes ({self.level})"),
                 (f"observed agreement {self.observed:.1%}  Fleiss' kappa "
                  f"{self.fleiss_kappa:.3f}  Krippendorff's alpha "
                  f"{self.krippendorff_alpha:.3f}")]
        for version, values in self.by_instruction.items():
            lines.append(f"  instruction {version}: {values['items']:.0f} items, observed "
                         f"{values['observed']:.1%}, alpha {values['krippendorff_alpha']:.3f}")
        lines.append("labeler        labels  with consensus  with others  kappa")
        for x in sorted(self.per_labeler, key=lambda x: (x.with_consensus, x.labeler)):
            lines.append(f"{x.labeler[:14]:14} {x.annotations:6d}  {x.with_consensus:14.1%}  "
                         f"{x.with_others:11.1%}  {x.kappa:5.3f}")
        mixed = self.confused(3)
        if mixed:
            lines.append("most mixed up: " + ", ".join(f"{a} / {b} ({n})" for a, b, n in mixed))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def agreement(annotations: Any, *, level: str = "nominal", weights: str | None = "auto",
              classes: Any = None, **columns: Any) -> AgreementReport:
    """Agreement statistics of ``annotations`` (long form: item, labeler, label; see
    :func:`~prodml.data.labels.annotations.normalise` for ``columns``).

    ``level`` is Krippendorff's level of measurement (``nominal``, ``ordinal``, ``interval``,
    ``ratio``; the last two need numeric labels). ``weights`` weighs Cohen's kappa
    (``None``, ``"linear"``, ``"quadratic"``; ``"auto"``: none for nominal labels, linear for
    ordinal, quadratic otherwise). ``classes`` fixes the label order (ordinal text labels).
    """
    if level not in LEVELS:
        raise InvalidInputError("level", level, f"must be one of {', '.join(LEVELS)}")
    weights = DEFAULT_WEIGHTS[level] if weights == "auto" else weights
    if weights not in WEIGHTS:
        raise InvalidInputError("weights", weights, "must be None, 'linear' or 'quadratic'")
    ann = as_annotations(annotations, classes=classes, **columns)
    if len(ann.classes) < 2:
        raise InvalidInputError("label", list(ann.classes), "agreement needs at least two "
                                "classes among the labels (or classes= naming them)")
    values = _values(ann.classes, level)
    counts = ann.counts
    moments = Moments.of(counts)
    summary = headline(counts, values, level, moments)
    pair_index, pair_tables = _pair_tables(ann)
    pair_list, by_labeler = _pairs(ann, pair_index, pair_tables, weights)
    confusion = pair_tables.sum(axis=0) if len(pair_tables) else np.zeros(
        (len(ann.classes),) * 2, dtype=np.int64)
    return AgreementReport(
        items=len(ann.items), annotations=len(ann), labelers=tuple(map(str, ann.labelers)),
        classes=tuple(ann.classes.tolist()), level=level, weights=weights, **summary,
        pairs=tuple(pair_list), per_class=_per_class(moments, ann.classes),
        per_labeler=_per_labeler(ann, counts, by_labeler), confusion=confusion,
        by_instruction=_by_instruction(ann, values, level))


# -- the headline statistics: see prodml.data.labels.reliability ----------------------------------
def _values(classes: np.ndarray, level: str) -> np.ndarray:
    if level in ("interval", "ratio"):
        if classes.dtype.kind not in "biuf":
            raise InvalidInputError("level", level, "needs numeric labels (use nominal or "
                                    "ordinal, with classes= giving the order)")
        return classes.astype(float)
    return np.arange(len(classes), dtype=float)


def _per_class(moments: Moments | None, classes: np.ndarray) -> tuple[ClassAgreement, ...]:
    if moments is None:
        return tuple(ClassAgreement(c, math.nan, math.nan, math.nan) for c in classes.tolist())
    total = moments.totals.sum()
    p = moments.totals / total
    # labels of class c disagreeing with the item's other labels, each pair counted 1/(m-1)
    disagree = moments.pairs.sum(axis=1) - np.diag(moments.pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        specific = np.where(moments.said > 0, moments.agreeing / moments.said, np.nan)
        kappa = np.where((p > 0) & (p < 1), 1 - disagree / (total * p * (1 - p)), np.nan)
    return tuple(ClassAgreement(label, float(a), float(b), float(k)) for label, a, b, k in
                 zip(classes.tolist(), p.tolist(), specific.tolist(), kappa.tolist()))


# -- pairs of labelers ----------------------------------------------------------------------------
def _pair_tables(ann: Annotations) -> tuple[np.ndarray, np.ndarray]:
    """The labeler pairs (``first * labelers + second``, first < second) that share items,
    and each pair's classes x classes table of the items both labelled.

    Every pair of labels of an item is a pair of columns of :attr:`Annotations.blocks`; a
    token is ``labeler * classes + class`` and rows ascend, so the left token of a pair is
    always the lower labeler's, and one ``bincount`` over (left, right) tokens holds every
    table.
    """
    n_lab, k = len(ann.labelers), len(ann.classes)
    width = n_lab * k
    blocks = [b for b in ann.blocks if len(b) > 1]
    key = np.empty(sum(len(b) * (len(b) - 1) // 2 * b.shape[1] for b in blocks), np.int64)
    start = 0
    for block in blocks:
        for left in range(len(block) - 1):
            for right in range(left + 1, len(block)):
                end = start + block.shape[1]
                np.multiply(block[left], width, out=key[start:end], dtype=np.int64)
                key[start:end] += block[right]
                start = end
    if width * width <= 4 * len(key) + 1_000_000:
        tally = np.bincount(key, minlength=width * width).reshape(n_lab, k, n_lab, k)
        tables = tally.transpose(0, 2, 1, 3)
        first, second = np.nonzero(np.triu(tables.sum(axis=(2, 3)) > 0, 1))
        return first.astype(np.int64) * n_lab + second, tables[first, second]
    cells, tallies = np.unique(key, return_counts=True)
    left, right = np.divmod(cells, width)
    pair = (left // k) * n_lab + right // k
    present, where = np.unique(pair, return_inverse=True)
    tables = np.zeros((len(present), k * k), dtype=np.int64)
    tables[where, (left % k) * k + right % k] = tallies
    return present, tables.reshape(len(present), k, k)


def cohen_kappas(tables: np.ndarray, weights: str | None) -> np.ndarray:
    """Cohen's kappa of each classes x classes table (scikit-learn's formula)."""
    k = tables.shape[-1]
    i = np.arange(k)
    if weights is None:
        w = 1.0 - np.eye(k)
    elif weights == "linear":
        w = np.abs(i[:, None] - i[None, :]).astype(float)
    else:
        w = ((i[:, None] - i[None, :]) ** 2).astype(float)
    t = tables.astype(float)
    n = t.sum(axis=(1, 2))
    expected = t.sum(axis=2)[:, :, None] * t.sum(axis=1)[:, None, :] / n[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (t * w).sum(axis=(1, 2)) / (expected * w).sum(axis=(1, 2))


def _pairs(ann: Annotations, index: np.ndarray, tables: np.ndarray, weights: str | None
           ) -> tuple[list[PairAgreement], np.ndarray]:
    n_lab = len(ann.labelers)
    first, second = index // n_lab, index % n_lab
    shared = tables.sum(axis=(1, 2))
    agree = np.trace(tables, axis1=1, axis2=2)
    kappas = cohen_kappas(tables, weights) if len(tables) else np.zeros(0)
    names = ann.labelers.astype(str)
    pairs = [PairAgreement(names[x], names[y], int(s), float(g / s), float(kp))
             for x, y, s, g, kp in zip(first.tolist(), second.tolist(), shared.tolist(),
                                       agree.tolist(), kappas.tolist())]
    # per labeler: pairs, agreeing pairs, overlap-weighted kappa sum and its weight
    tally = np.zeros((n_lab, 4))
    finite = np.isfinite(kappas)
    for who in (first, second):
        np.add.at(tally[:, 0], who, shared)
        np.add.at(tally[:, 1], who, agree)
        np.add.at(tally[:, 2], who[finite], (kappas * shared)[finite])
        np.add.at(tally[:, 3], who[finite], shared[finite])
    return pairs, tally


def leave_one_out_credit(ann: Annotations, counts: np.ndarray | None = None) -> np.ndarray:
    """Per annotation: 1 if its label is the majority of the *other* labels of the item,
    1/k if it ties with k-1 others for that majority, 0 if not, NaN if nobody else labelled
    the item.

    Taking one label out changes only its own class's count, so only an item's sole leading
    class can win credit, and how much follows from the item's two largest counts and how
    many classes reach the second: a few passes over the classes, then two gathers.
    """
    counts = ann.counts if counts is None else counts
    n, k = counts.shape
    first = counts[:, 0].copy()
    leader = np.zeros(n, dtype=np.int64)
    for j in range(1, k):
        column = counts[:, j]
        leader[column > first] = j
        np.maximum(first, column, out=first)
    at_first = np.zeros(n, dtype=np.int64)
    votes = np.zeros(n, dtype=np.int64)
    second = np.full(n, -1, dtype=counts.dtype)  # -1: no runner-up
    for j in range(k):
        column = counts[:, j]
        top = column == first
        at_first += top
        votes += column
        np.maximum(second, np.where(top, -1, column), out=second)
    at_second = np.zeros(n, dtype=np.int64)
    for j in range(k):
        at_second += counts[:, j] == second
    # the sole leader minus its own vote: still ahead, or level with the runners-up
    worth = np.where(first - 1 > second, 1.0, np.where(
        (first - 1 == second) & (second > 0), 1.0 / (1 + at_second), 0.0))
    worth[at_first > 1] = 0.0
    worth[votes < 2] = np.nan
    # an items x classes table of credit (column order), read once per label
    table = np.empty((k, n))
    table[:] = np.where(votes < 2, np.nan, 0.0)
    table[leader, np.arange(n)] = worth
    return table.ravel()[ann.cell]


def _per_labeler(ann: Annotations, counts: np.ndarray, tally: np.ndarray
                 ) -> tuple[LabelerAgreement, ...]:
    n_lab = len(ann.labelers)
    credit = leave_one_out_credit(ann, counts)
    given = np.bincount(ann.labeler_index, minlength=n_lab)
    if np.isnan(credit).any():  # some items have one label: nobody to compare with
        scored = ~np.isnan(credit)
        hits = np.bincount(ann.labeler_index, weights=np.where(scored, credit, 0.0),
                           minlength=n_lab)
        judged = np.bincount(ann.labeler_index, weights=scored, minlength=n_lab)
    else:
        hits, judged = np.bincount(ann.labeler_index, weights=credit, minlength=n_lab), given
    with np.errstate(invalid="ignore", divide="ignore"):
        consensus = hits / judged
        others = tally[:, 1] / tally[:, 0]
        kappa = tally[:, 2] / tally[:, 3]
    return tuple(LabelerAgreement(str(name), int(g), float(c), float(o), float(k))
                 for name, g, c, o, k in zip(ann.labelers.tolist(), given.tolist(),
                                             consensus.tolist(), others.tolist(),
                                             kappa.tolist()))


def _by_instruction(ann: Annotations, values: np.ndarray, level: str
                    ) -> dict[str, dict[str, float]]:
    version = ann.frame.get_column("instruction")
    if version.null_count() == len(version) or version.n_unique() < 2:
        return {}
    codes = version.fill_null("(none)").to_numpy()
    times = ann.frame.get_column("time").to_numpy()
    out: dict[str, tuple[float, dict[str, float]]] = {}
    for name in np.unique(codes).tolist():
        mask = codes == name
        counts = count_table(ann.item_index[mask], ann.label_index[mask], len(ann.items),
                             len(ann.classes))
        counts = counts[counts.sum(axis=1) > 0]
        first = times[mask].min() if np.issubdtype(times.dtype, np.number) else 0
        out[name] = (0.0 if math.isnan(first) else float(first), {
            "items": float(len(counts)), "annotations": float(mask.sum()),
            **headline(counts, values, level)})
    return {name: stats for name, (_, stats) in sorted(out.items(), key=lambda x: x[1][0])}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
