"""``LoggedPredictions``: a window of the prediction log as a pipeline's source.

A retraining pipeline reads the traffic it served: the logged answers of an endpoint in a
time window, usually those whose true label has arrived. Passed to a step as an argument,
the window is a Source like a file or a query: it is digested by its content (the ids and
labels of its rows, so a late label changes it, and a later window with no new rows does
not) and recorded as a "Source" artifact with
the endpoint, the window and the row count. Lineage upstream of a model retrained on
traffic then ends at the log window it came from, and forward lineage from the window finds
every dataset and model made from it.

The window is closed when the source is made (``until`` defaults to that moment), so the
rows the step reads are the rows the digest covered, apart from labels that arrive in
between.

>>> source = LoggedPredictions(endpoint="loan", since=1_000, until=2_000)
>>> source.kind, source.uri
('prediction_log', 'prediction-log://loan?since=1000&until=2000&labelled=1')
>>> source.display_name()
'loan prediction log'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prodml.errors import InvalidInputError
from prodml.pipelines.source import Source

if TYPE_CHECKING:
    import polars as pl

    from prodml.store import Store


@dataclass(frozen=True, kw_only=True)
class LoggedPredictions(Source):
    """The logged predictions of ``endpoint`` with ``since <= time < until`` (ms), on
    ``routes`` (default: all), only those with a label unless ``labelled=False``."""

    location: str = ""  # made from the fields below
    endpoint: str = ""
    since: int | None = None
    until: int | None = None
    routes: tuple[str, ...] | None = None
    labelled: bool = True

    def __post_init__(self) -> None:
        from prodml.store import now_ms

        if not isinstance(self.endpoint, str) or not self.endpoint:
            raise InvalidInputError("endpoint", self.endpoint, "must name an endpoint")
        for field_name in ("since", "until"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidInputError(field_name, value, "must be a time in ms since the epoch")
        if self.routes is not None:
            object.__setattr__(self, "routes", tuple(self.routes))
        if self.until is None:  # close the window now: what is digested is what is read
            object.__setattr__(self, "until", now_ms())
        query = f"since={self.since or 0}&until={self.until}&labelled={int(self.labelled)}"
        if self.routes:
            query += "&routes=" + ",".join(self.routes)
        object.__setattr__(self, "location", f"prediction-log://{self.endpoint}?{query}")

    @property
    def kind(self) -> str:
        return "prediction_log"

    @property
    def uri(self) -> str:
        return self.location

    def read(self, store: Store | None = None, *, with_inputs: bool = True) -> pl.DataFrame:
        """The window's rows (see :func:`prodml.serving.log_reader.read_predictions`); in a
        step, from the pipeline's store."""
        from prodml.serving.log_reader import read_predictions

        frame = read_predictions(self.endpoint, since=self.since, until=self.until,
                                 routes=list(self.routes) if self.routes else None,
                                 with_inputs=with_inputs, store=store or _step_store())
        if self.labelled:
            frame = frame.filter(frame["label"].is_not_null())
        return frame

    def digest(self, store: Store | None = None) -> str:
        """SHA-256 of what selects the rows (not ``until``) and of their ids and labels: a
        later window with no new rows is the same data, and a cache hit."""
        frame = self.read(store, with_inputs=False)
        selects = (f"prediction-log\n{self.endpoint}\n{self.since or 0}\n"
                   f"{','.join(self.routes or ())}\n{int(self.labelled)}\n")
        digest = hashlib.sha256(selects.encode())
        if frame.height:  # one "id<TAB>label" line per row, hashed in one call
            digest.update(("\n".join(_lines(frame)) + "\n").encode())
        object.__setattr__(self, "_rows", frame.height)  # for properties(), just after
        return digest.hexdigest()

    def properties(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"kind": self.kind, "endpoint": self.endpoint,
                                 "since": self.since, "until": self.until,
                                 "labelled": self.labelled}
        if self.routes:
            facts["routes"] = list(self.routes)
        rows = getattr(self, "_rows", None)
        if rows is not None:
            facts["rows"] = rows
        return facts

    def display_name(self) -> str:
        return self.name or f"{self.endpoint} prediction log"

    def __fspath__(self) -> str:
        raise TypeError("a prediction log window has no path: use .read()")


def _lines(frame: pl.DataFrame) -> list[str]:
    import polars as pl

    ids = frame["id"]
    if "label" not in frame.columns:
        return ids.to_list()
    try:
        labels = frame["label"].cast(pl.String)
    except Exception:  # noqa: BLE001 - a nested label (a list, a record): its repr
        labels = pl.Series([repr(v) for v in frame["label"].to_list()], dtype=pl.String)
    return (ids + "\t" + labels.fill_null("")).to_list()


def _step_store() -> Store:
    from prodml.pipelines.context import current
    from prodml.store import get_store

    context = current()
    return context.store if context is not None else get_store()
