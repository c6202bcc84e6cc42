"""Mergeable summaries of one column: moments, a HyperLogLog, a bottom-k uniform sample.

Each is a small object with ``update(values)`` over a whole NumPy array and ``merge(other)``;
merging the summaries of two parts equals summarising the whole (exactly for moments and the
sample's law, within the documented error for HyperLogLog).

Why HyperLogLog is written here rather than taken from DataSketches: ``hll_sketch.update``
takes one value per Python call (~1.3 µs), which costs seconds per million distinct values.
This one hashes a whole array with NumPy and keeps the same 2^12 registers (relative standard
error 1.04/sqrt(4096) ≈ 1.6 %). Quantiles and frequent items do use DataSketches (KLL and
frequent-items sketches), whose updates already take arrays or one call per distinct value.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_U64 = np.uint64


@dataclass
class Moments:
    """Count, mean, sum of squared deviations, min and max (Chan et al.'s parallel merge).

    >>> a, b = Moments(), Moments()
    >>> a.update(np.array([1.0, 2.0])); b.update(np.array([3.0, 4.0, 5.0]))
    >>> m = a.merge(b)
    >>> m.n, m.mean, round(m.variance, 6), m.min, m.max
    (5, 3.0, 2.5, 1.0, 5.0)
    """

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        other = Moments(int(values.size), float(values.mean()),
                        float(((values - values.mean()) ** 2).sum()),
                        float(values.min()), float(values.max()))
        merged = self.merge(other)
        self.n, self.mean, self.m2, self.min, self.max = (merged.n, merged.mean, merged.m2,
                                                          merged.min, merged.max)

    def merge(self, other: "Moments") -> "Moments":
        if other.n == 0:
            return Moments(self.n, self.mean, self.m2, self.min, self.max)
        if self.n == 0:
            return Moments(other.n, other.mean, other.m2, other.min, other.max)
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        return Moments(n, mean, m2, min(self.min, other.min), max(self.max, other.max))

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1), as pandas and SciPy report it."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.n > 1 else math.nan

    def to_dict(self) -> dict[str, float | None]:
        if self.n == 0:  # JSON has no infinity: an empty summary is just its count
            return {"n": 0, "mean": 0.0, "m2": 0.0, "min": None, "max": None}
        return {"n": self.n, "mean": self.mean, "m2": self.m2, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Moments":
        if not d["n"]:
            return cls()
        return cls(int(d["n"]), float(d["mean"]), float(d["m2"]), float(d["min"]),
                   float(d["max"]))


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a stable 64-bit mixing of 64-bit keys."""
    with np.errstate(over="ignore"):
        x = x.astype(_U64, copy=True)
        x ^= x >> _U64(30)
        x *= _U64(0xBF58476D1CE4E5B9)
        x ^= x >> _U64(27)
        x *= _U64(0x94D049BB133111EB)
        x ^= x >> _U64(31)
    return x


def hash_values(values: np.ndarray) -> np.ndarray:
    """Stable 64-bit hashes: numbers by their float64 bits, anything else by BLAKE2b.

    Stable across processes and versions, so HyperLogLogs from different days merge.
    """
    if values.dtype.kind in "iufb":
        as_float = values.astype(np.float64) + 0.0  # -0.0 and 0.0 count as one value
        return _mix64(as_float.view(_U64))
    if values.dtype.kind == "M":
        return _mix64(values.astype("datetime64[ns]").view(np.int64).view(_U64))
    return np.fromiter((int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(),
                                       "little") for v in values), dtype=_U64,
                       count=len(values))


@dataclass
class HyperLogLog:
    """Distinct counting in 2^p registers, updated with whole arrays.

    >>> h = HyperLogLog()
    >>> h.update_hashes(hash_values(np.arange(100_000)))
    >>> abs(h.estimate() - 100_000) / 100_000 < 0.05
    True
    """

    p: int = 12
    registers: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.registers is None:
            self.registers = np.zeros(1 << self.p, dtype=np.uint8)

    def update_hashes(self, hashes: np.ndarray) -> None:
        if hashes.size == 0:
            return
        index = (hashes >> _U64(64 - self.p)).astype(np.intp)
        rest = (hashes << _U64(self.p)) | _U64(1 << (self.p - 1))  # sentinel bounds the rank
        # rank = leading zeros of the remaining bits + 1, via the float64 exponent.
        top = (rest >> _U64(11)).astype(np.float64)  # 53 significant bits are enough
        rank = (53 - np.floor(np.log2(np.maximum(top, 1.0)))).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: "HyperLogLog") -> "HyperLogLog":
        if other.p != self.p:
            raise ValueError(f"cannot merge HyperLogLogs of precision {self.p} and {other.p}")
        return HyperLogLog(self.p, np.maximum(self.registers, other.registers))

    def estimate(self) -> float:
        m = float(1 << self.p)
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.exp2(-self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:  # small-range correction: linear counting
            return m * math.log(m / zeros)
        return raw


@dataclass
class BottomKSample:
    """A uniform sample without replacement of at most ``k`` values, mergeable.

    Every value gets a random priority; the sample is the ``k`` values with the smallest
    priorities. The union of two such samples, cut to ``k``, is a uniform sample of the union.

    >>> s = BottomKSample(k=3, seed=0)
    >>> s.update(np.arange(100)); len(s.values)
    3
    """

    k: int = 4096
    seed: int | None = None
    values: np.ndarray = field(default=None)  # type: ignore[assignment]
    priorities: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        if self.priorities is None:
            self.priorities = np.empty(0, dtype=np.float64)
            self.values = np.empty(0, dtype=np.float64)

    def update(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        priorities = self._rng.random(values.size)
        if values.size > self.k:
            keep = np.argpartition(priorities, self.k - 1)[: self.k]
            values, priorities = values[keep], priorities[keep]
        self._absorb(values, priorities)

    def _absorb(self, values: np.ndarray, priorities: np.ndarray) -> None:
        if priorities.size == 0:  # nothing new (an empty part's sample is float-typed)
            return
        if self.priorities.size:
            if object in (self.values.dtype, values.dtype):  # text stays text, never cast
                values = np.concatenate([self.values.astype(object, copy=False),
                                         values.astype(object, copy=False)])
            else:
                values = np.concatenate([self.values, values])
            priorities = np.concatenate([self.priorities, priorities])
        if priorities.size > self.k:
            keep = np.argpartition(priorities, self.k - 1)[: self.k]
            values, priorities = values[keep], priorities[keep]
        self.values, self.priorities = values, priorities

    def merge(self, other: "BottomKSample") -> "BottomKSample":
        merged = BottomKSample(min(self.k, other.k), None, self.values.copy(),
                               self.priorities.copy())
        merged._absorb(other.values, other.priorities)
        return merged
