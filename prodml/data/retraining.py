"""Retraining strategies: which rows a new model learns from, and how much each one counts.

After a change (drift in the inputs, or a new concept), there are three ways to retrain:

- ``"all"``: every row, before and after the change, each with weight 1;
- ``"weighted"``: every row (or every row in ``window``), the recent ones counting more: a row
  ``age`` old weighs ``0.5 ** (age / half_life)``, so the newest row weighs 1 and a row one
  half-life old weighs 0.5 (past about 1,074 half-lives the weight underflows to 0: kept,
  but it no longer counts; ``effective_rows`` says how many rows do);
- ``"recent"``: only the rows in ``window`` (a duration such as ``"30d"``, or a row count),
  dropping the past, each with weight 1.

Ages are measured from ``now``, which defaults to the newest row's time so that the same data
gives the same window whenever it runs; rows later than ``now`` are not used (train as of a
date to replay the past).

>>> import pandas as pd
>>> df = pd.DataFrame({"t": pd.date_range("2026-01-01", periods=5, freq="D"),
...                    "x": [1, 2, 3, 4, 5]})
>>> recent = training_window(df, strategy="recent", time_column="t", window="2d")
>>> recent.frame["x"].tolist(), recent.rows_dropped
([3, 4, 5], 2)
>>> weighted = training_window(df, strategy="weighted", time_column="t", half_life="2d")
>>> weighted.sample_weight.round(3).tolist()
[0.25, 0.354, 0.5, 0.707, 1.0]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from prodml.data.frames import to_arrow
from prodml.errors import InvalidInputError

STRATEGIES = ("all", "weighted", "recent")


@dataclass(frozen=True, eq=False)
class TrainingWindow:
    """The rows a strategy keeps (``frame``, in the input's library and row order) and the
    weight of each (``sample_weight``, aligned with ``frame``'s rows)."""

    frame: Any = field(repr=False)
    sample_weight: np.ndarray = field(repr=False)
    strategy: str
    time_column: str
    now: pd.Timestamp
    cutoff: pd.Timestamp | None  # oldest time kept; None when no window was asked for
    window: pd.Timedelta | int | None
    half_life: pd.Timedelta | None
    rows_kept: int
    rows_dropped: int

    @property
    def weighted(self) -> bool:
        """Whether the weights differ from all ones (a trainer should pass them on)."""
        return self.strategy == "weighted"

    @property
    def effective_rows(self) -> float:
        """Kish's effective sample size, ``sum(w)² / sum(w²)``: as many equally weighted rows
        as the weighted ones are worth."""
        w = self.sample_weight
        return float(w.sum() ** 2 / (w * w).sum())

    def to_dict(self) -> dict[str, Any]:
        window = self.window
        return {"strategy": self.strategy, "time_column": self.time_column,
                "now": self.now.isoformat(),
                "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
                "window": (None if window is None else
                           window if isinstance(window, int) else str(window)),
                "half_life": None if self.half_life is None else str(self.half_life),
                "rows_kept": self.rows_kept, "rows_dropped": self.rows_dropped,
                "weight_min": float(self.sample_weight.min()),
                "weight_max": float(self.sample_weight.max()),
                "effective_rows": round(self.effective_rows, 3)}


def training_window(frame: Any, *, strategy: str = "all", time_column: str,
                    now: Any = None, window: Any = None,
                    half_life: Any = None) -> TrainingWindow:
    """Select and weight the rows of ``frame`` for retraining with ``strategy``.

    ``window`` is a duration (``"30d"``, ``"12h"``, a ``pd.Timedelta`` or ``timedelta``) or a
    number of most recent rows; ``"recent"`` needs it, ``"weighted"`` may use it to cap the
    look-back, ``"all"`` takes none. ``half_life`` (a duration) is for ``"weighted"`` only.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": ["2026-01-01", "2026-01-02", "2026-01-03"], "y": [0, 1, 1]})
    >>> training_window(df, strategy="recent", time_column="t", window=2).rows_kept
    2
    >>> training_window(df, strategy="recent", time_column="t")
    Traceback (most recent call last):
    ...
    prodml.errors.InvalidInputError: window=None: strategy 'recent' needs a window (a duration such as '30d', or a row count)
    """
    if strategy not in STRATEGIES:
        raise InvalidInputError("strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
    times = _times(frame, time_column)
    window = _window(window, strategy)
    half_life = _half_life(half_life, strategy)
    reference = _now(now, times)

    keep = times <= reference.to_datetime64()
    if not keep.any():
        raise InvalidInputError("now", str(reference), f"is before every row's {time_column}; "
                                "no rows to train on")
    cutoff: pd.Timestamp | None = None
    if isinstance(window, int):
        candidates = np.flatnonzero(keep)
        newest = candidates[np.argsort(times[candidates], kind="stable")[-window:]]
        keep = np.zeros(times.size, dtype=bool)
        keep[newest] = True
        cutoff = pd.Timestamp(times[newest].min())
    elif window is not None:
        cutoff = reference - window
        keep &= times >= cutoff.to_datetime64()
        if not keep.any():
            raise InvalidInputError("window", str(window), f"keeps no rows: no {time_column} "
                                    f"between {cutoff} and {reference}")

    rows = np.flatnonzero(keep)
    if strategy == "weighted":
        age = (reference.to_datetime64() - times[rows]) / half_life.to_timedelta64()
        weight = np.power(0.5, age.astype(np.float64))
    else:
        weight = np.ones(rows.size, dtype=np.float64)
    return TrainingWindow(frame=_take(frame, rows, keep.all()), sample_weight=weight,
                          strategy=strategy, time_column=time_column, now=reference,
                          cutoff=cutoff, window=window, half_life=half_life,
                          rows_kept=int(rows.size), rows_dropped=int(times.size - rows.size))


# -- inputs ------------------------------------------------------------------------------------

def _times(frame: Any, column: str) -> np.ndarray:
    """The time column as naive UTC ``datetime64[ns]`` (text is parsed; nulls are refused)."""
    table = to_arrow(frame)
    if column not in table.column_names:
        raise InvalidInputError("time_column", column,
                                f"must be a column of the data ({', '.join(table.column_names)})")
    if table.num_rows == 0:
        raise InvalidInputError("frame", "0 rows", "needs at least one row to train on")
    values = table.column(column)
    if values.null_count:
        raise InvalidInputError("time_column", column,
                                f"has {values.null_count} missing time(s); every row needs one")
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        series = values.to_pandas()
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            series = pd.to_datetime(values.to_pandas(), utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise InvalidInputError("time_column", column,
                                    f"must hold dates or times ({exc})") from None
    else:
        raise InvalidInputError("time_column", column,
                                f"must hold dates or times, not {kind}")
    series = pd.to_datetime(series)
    if series.dt.tz is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.to_numpy(dtype="datetime64[ns]")


_UNITS = {"s": "s", "sec": "s", "second": "s", "seconds": "s", "min": "min",
          "minute": "min", "minutes": "min", "h": "h", "hour": "h", "hours": "h", "d": "D",
          "day": "D", "days": "D", "w": "W", "week": "W", "weeks": "W"}
_SHORT = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def _duration(name: str, value: Any) -> pd.Timedelta:
    match = _SHORT.match(value) if isinstance(value, str) else None
    try:
        if match and match.group(2).lower() in _UNITS:
            # pandas deprecates lower-case "d"; "30d" is what people write
            duration = pd.Timedelta(float(match.group(1)), unit=_UNITS[match.group(2).lower()])
        else:
            duration = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise InvalidInputError(name, value, "must be a duration such as '30d', '12h' or "
                                "'90min'") from None
    if pd.isna(duration) or duration <= pd.Timedelta(0):
        raise InvalidInputError(name, value, "must be a positive duration")
    return duration


def _window(value: Any, strategy: str) -> pd.Timedelta | int | None:
    if value is None:
        if strategy == "recent":
            raise InvalidInputError("window", None, "strategy 'recent' needs a window (a "
                                    "duration such as '30d', or a row count)")
        return None
    if strategy == "all":
        raise InvalidInputError("window", value, "strategy 'all' keeps every row; use "
                                "'recent' (or 'weighted') for a window")
    if isinstance(value, (bool, np.bool_)):
        raise InvalidInputError("window", value, "must be a duration or a row count")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise InvalidInputError("window", value, "a row count must be at least 1")
        return int(value)
    return _duration("window", value)


def _half_life(value: Any, strategy: str) -> pd.Timedelta | None:
    if strategy != "weighted":
        if value is not None:
            raise InvalidInputError("half_life", value,
                                    f"only strategy 'weighted' decays; {strategy!r} takes none")
        return None
    if value is None:
        raise InvalidInputError("half_life", None, "strategy 'weighted' needs a half_life "
                                "(a duration such as '14d')")
    return _duration("half_life", value)


def _now(value: Any, times: np.ndarray) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp(times.max())
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InvalidInputError("now", value, "must be a date or time") from None
    if pd.isna(stamp):
        raise InvalidInputError("now", value, "must be a date or time")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _take(frame: Any, rows: np.ndarray, everything: bool) -> Any:
    """The kept rows in the input's own library, in the input's order."""
    if everything:
        return frame
    module = type(frame).__module__.split(".")[0]
    if module == "pandas":
        return frame.iloc[rows]
    if module == "polars":
        return frame[rows]
    table = to_arrow(frame).take(pa.array(rows, pa.int64()))
    if isinstance(frame, (pa.Table, pa.RecordBatch)):
        return table
    return table.to_pandas()


__all__ = ["STRATEGIES", "TrainingWindow", "training_window"]
