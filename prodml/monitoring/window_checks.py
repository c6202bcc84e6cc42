"""The checks a monitor runs on one complete window of the log, as ``{series: value}``.

Two moments per window:

- :meth:`WindowChecks.on_close`, when the window is complete: software, input, output and
  custom metrics; data drift against the reference (and the domain classifier when asked
  for and the reference has rows); prior shift of the predictions; training-serving skew on
  the first window after a deployment; CBPE estimates; the confidence test against the
  previous window;
- :meth:`WindowChecks.on_settle`, once enough of its labels arrived (or it waited long
  enough): realised performance (per slice too) with label coverage and delay; CBPE against
  realised; outcome-event rates; the error stream through the concept-drift detectors.

Every number comes from the pure functions of :mod:`prodml.monitoring`; this module only
finds their inputs: the reference (the served version's training profile from the
registry, or a fixed stretch of the log), the served version's schema, the detectors.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prodml.errors import NotFoundError
from prodml.monitoring.spec import LogStretch, MonitorSpec
from prodml.monitoring.window_metrics import feature_columns, measure_window
from prodml.store import Store

SERVED_ROUTES = ("primary", "canary", "fallback", "human")  # shadow rows are mirrors
_CACHE: OrderedDict[tuple[Any, ...], Reference] = OrderedDict()
_CACHE_SIZE = 16


@dataclass
class Reference:
    """What a window is compared with: a profile or a frame, its features, the class
    distribution the predictions are compared with, a schema, a calibrator for CBPE."""

    source: str  # "training_profile:loan/3" or "log:<since>-<until>"
    data: Any  # a Profile or a Polars frame
    features: list[str]
    prior: dict[str, float] | None
    schema: Any = None
    calibrator: Any = None
    frame: pl.DataFrame | None = None  # the labelled log stretch (for adaptive learning)


def served_version(frame: pl.DataFrame) -> str | None:
    """``name/version`` of the model that answered most of the window's primary rows."""
    rows = frame.select("model_name", "model_version", "route").filter(
        pl.col("model_version").is_not_null())
    primary = rows.filter(pl.col("route") == "primary")
    rows = primary if primary.height else rows
    if rows.height == 0:
        return None
    top = rows.group_by("model_name", "model_version").len().sort(
        "len", "model_version", descending=True).row(0)
    return f"{top[0]}/{top[1]}"


def training_reference(ref: str, store: Store) -> Reference | None:
    """The training profile of version ``ref`` with its label's distribution; None if the
    version was registered without one."""
    from prodml.tracking import registry

    key = ("profile", store.database_url, ref)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    version = registry.get(ref, store=store)
    try:
        profile = registry.training_profile(ref, store=store)
    except NotFoundError:
        return None
    inputs = set(version.signature.names) if version.signature else set()
    columns = profile.column_names
    features = [c for c in columns if c in inputs] if inputs else list(columns)
    targets = [c for c in columns if c not in inputs] if inputs else []
    prior = _distribution(profile[targets[0]]) if len(targets) == 1 else None
    reference = Reference(f"training_profile:{ref}", profile, features, prior, version.schema)
    _remember(key, reference)
    return reference


def log_reference(spec: MonitorSpec, stretch: LogStretch, store: Store) -> Reference:
    """A fixed stretch of the endpoint's log: its rows, predicted classes and a calibrator
    fitted on its labelled rows (for CBPE)."""
    from prodml.serving.log_reader import read_predictions

    key = ("log", store.database_url, spec.endpoint, stretch.since_ms, stretch.until_ms)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    frame = read_predictions(spec.endpoint, since=stretch.since_ms, until=stretch.until_ms,
                             routes=SERVED_ROUTES, store=store)
    if frame.height == 0:
        raise NotFoundError("reference", f"{stretch.since_ms}..{stretch.until_ms}",
                            f"no served prediction of endpoint {spec.endpoint!r} in that "
                            "stretch of the log")
    counts = frame["prediction"].drop_nulls().cast(pl.String).value_counts()
    prior = dict(zip(counts[:, 0].to_list(), map(float, counts["count"].to_list())))
    calibrator = None
    check = spec.checks.estimated_performance
    if check is not None and check.calibrate and check.probability in frame.columns:
        from prodml.monitoring.performance import Calibrator

        labelled = frame.filter(pl.col("label").is_not_null()
                                & pl.col(check.probability).is_not_null())
        truth = labelled["label"].cast(pl.String) == str(check.positive)
        if labelled.height and 0 < truth.sum() < labelled.height:
            calibrator = Calibrator.fit(labelled[check.probability].to_numpy(),
                                        truth.to_numpy().astype(int), positive=1)
    version = served_version(frame)
    schema = None
    if version is not None:
        from prodml.tracking import registry
        schema = registry.get(version, store=store).schema
    reference = Reference(f"log:{stretch.since_ms}-{stretch.until_ms}", frame,
                          feature_columns(frame), prior or None, schema, calibrator, frame)
    _remember(key, reference)
    return reference


def _remember(key: tuple[Any, ...], reference: Reference) -> None:
    _CACHE[key] = reference
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)


def _distribution(column: Any) -> dict[str, float] | None:
    counts = column.frequencies()
    if not counts:
        values = column.sample_values
        if values.size == 0:
            return None
        keys, n = np.unique(values, return_counts=True)
        counts = {_label(k): int(c) for k, c in zip(keys.tolist(), n.tolist())}
    return {str(k): float(v) for k, v in counts.items()} or None


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class WindowChecks:
    """Runs one monitor's checks; holds what a run carries from window to window."""

    spec: MonitorSpec
    store: Store
    detectors: dict[str, Any] = field(default_factory=dict)  # name -> ErrorStreamMonitor
    previous_confidence: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    # -- the reference ---------------------------------------------------------------------
    def reference(self, frame: pl.DataFrame) -> Reference | None:
        if isinstance(self.spec.reference, LogStretch):
            return log_reference(self.spec, self.spec.reference, self.store)
        version = served_version(frame)
        if version is None:
            return None
        found = training_reference(version, self.store)
        if found is None:
            self._note(f"{version} has no training profile: no drift or skew (register it "
                       "with training_data=)")
        return found

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- when a window closes -----------------------------------------------------------------
    def on_close(self, frame: pl.DataFrame, *, span_s: float | None = None,
                 skew: bool = False) -> dict[str, float]:
        from prodml.monitoring.drift_checks import drift_series, prior_shift, window_drift

        checks = self.spec.checks
        reference = self.reference(frame)
        groups = [g for g in ("software", "input", "output") if getattr(checks, g) is not None]
        if checks.custom:
            groups.append("custom")
        schema = reference.schema if reference is not None and checks.input is not None \
            and checks.input.schema_domain else None
        values = measure_window(
            frame, features=checks.input.features if checks.input else None, schema=schema,
            classes=checks.output.classes if checks.output else None,
            custom=checks.custom_metrics() if checks.custom else None, groups=groups,
            span_s=span_s, error_statuses=(checks.software.error_statuses if checks.software
                                           else ("error", "timeout")))
        if checks.drift is not None and reference is not None:
            names = self._drift_features(frame, reference)
            if names:
                report = window_drift(reference.data, frame, features=names,
                                      **checks.drift.drift_options())
                multivariate = None
                if checks.drift.multivariate:
                    multivariate = self._domain_classifier(reference, frame, names)
                values.update(drift_series(report, multivariate=multivariate))
        if checks.prior_shift is not None and reference is not None and reference.prior:
            predicted = frame["prediction"].drop_nulls()
            if predicted.len():
                shift = prior_shift(predicted, reference.prior, method=checks.prior_shift.method,
                                    threshold=checks.prior_shift.threshold)
                values.update(drift_series(prior=shift))
        if skew:
            values.update(self._skew(frame))
        estimate = self._estimate(frame)
        if estimate is not None:
            values.update(estimate.series())
        values.update(self._confidence(frame))
        return values

    def _drift_features(self, frame: pl.DataFrame, reference: Reference) -> list[str]:
        if self.spec.checks.drift is not None and self.spec.checks.drift.features:
            return [f for f in self.spec.checks.drift.features if f in frame.columns]
        present = set(feature_columns(frame))
        return [f for f in reference.features if f in present]

    def _domain_classifier(self, reference: Reference, frame: pl.DataFrame,
                           names: list[str]) -> Any:
        if reference.frame is None:
            self._note("multivariate drift needs a log stretch as reference (a profile keeps "
                       "no joint rows)")
            return None
        from prodml.data.skew import domain_classifier

        return domain_classifier(reference.frame.select(names), frame.select(names))

    def _skew(self, frame: pl.DataFrame) -> dict[str, float]:
        from prodml.data.drift import drift

        check = self.spec.checks.drift
        if check is None or not check.skew_after_deployment:
            return {}
        version = served_version(frame)
        training = training_reference(version, self.store) if version else None
        if training is None:
            return {}
        names = [f for f in training.features if f in set(feature_columns(frame))]
        if not names:
            return {}
        report = drift(training.data, frame.select(names), columns=names, kind="skew",
                       **check.drift_options())
        out = {f"skew_score[{c.name}]": float(c.score) for c in report.columns}
        out.update({f"skewed[{c.name}]": float(c.drifted) for c in report.columns})
        out["skew_share"] = float(report.share_drifted)
        return out

    def _estimate(self, frame: pl.DataFrame) -> Any:
        from prodml.monitoring.performance import estimate_performance

        check = self.spec.checks.estimated_performance
        if check is None:
            return None
        if check.probability not in frame.columns:
            self._note(f"no column {check.probability!r} in the log: no CBPE estimate")
            return None
        rows = frame.filter(pl.col(check.probability).is_not_null())
        if rows.height == 0:
            return None
        reference = self.reference(frame) if isinstance(self.spec.reference, LogStretch) \
            else None
        predicted = (rows["prediction"].cast(pl.String) == str(check.positive)).to_numpy()
        return estimate_performance(rows[check.probability].cast(pl.Float64).to_numpy(),
                                    predicted.astype(np.int64), positive=1,
                                    threshold=check.threshold,
                                    calibrator=reference.calibrator if reference else None)

    def _confidence(self, frame: pl.DataFrame) -> dict[str, float]:
        from prodml.monitoring.concept_drift import confidence_shift

        check = self.spec.checks.concept_drift
        if check is None or check.confidence_test is None:
            return {}
        current = frame["confidence"].cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        previous, self.previous_confidence = self.previous_confidence, current
        if previous is None or previous.size < 2 or current.size < 2:
            return {}
        shift = confidence_shift(previous, current, method=check.confidence_test,
                                 alpha=check.alpha, min_effect=check.min_effect)
        return {"confidence_p_value": shift.p_value, "confidence_shift": float(
            shift.significant), "confidence_effect": shift.effect}

    # -- when its labels have arrived ---------------------------------------------------------
    def needs_feedback(self) -> bool:
        checks = self.spec.checks
        return bool(checks.performance is not None or checks.estimated_performance is not None
                    or (checks.concept_drift is not None and checks.concept_drift.detectors)
                    or (checks.output is not None and checks.output.events))

    def without_feedback(self, rows: int) -> dict[str, float]:
        """The settled series of a window that got no label and no event at all."""
        values = {"labelled": 0.0, "label_coverage": 0.0 if rows else math.nan}
        if self.spec.checks.output is not None:
            values.update({f"event_rate[{e}]": 0.0 for e in self.spec.checks.output.events})
        return values

    def on_settle(self, frame: pl.DataFrame) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """Series of a window joined with its feedback (``label``, ``label_time``, event
        counts), and the detections of the concept-drift detectors in it."""
        from prodml.monitoring.concept_drift import error_stream
        from prodml.monitoring.performance import realised_performance

        checks = self.spec.checks
        labelled = frame.filter(pl.col("label").is_not_null())
        values: dict[str, float] = {
            "labelled": float(labelled.height),
            "label_coverage": labelled.height / frame.height if frame.height else math.nan}
        if checks.output is not None:
            for event in checks.output.events:
                counts = frame[event] if event in frame.columns else pl.Series([0] * frame.height)
                values[f"event_rate[{event}]"] = float((counts.fill_null(0) > 0).mean() or 0.0)
        if labelled.height == 0:
            return values, []
        performance = checks.performance
        if performance is not None:
            realised = realised_performance(
                frame, positive=performance.positive, average=performance.average,
                score=performance.score if performance.score in frame.columns else None,
                slices=[s for s in performance.slices if s in frame.columns])
            values.update(realised.series())
        estimated = checks.estimated_performance
        if estimated is not None and estimated.probability in frame.columns:
            estimate = self._estimate(labelled)
            if estimate is not None:
                realised_metrics = realised_performance(
                    labelled, positive=estimated.positive, score=estimated.probability).metrics
                for name, c in estimate.compare(realised_metrics).items():
                    values[f"cbpe_gap[{name}]"] = c["gap"]
                    values[f"cbpe_outside_band[{name}]"] = float(c["outside_band"])
        detections: list[dict[str, Any]] = []
        concept = checks.concept_drift
        if concept is not None and concept.detectors:
            ordered = labelled.sort("time", "id")
            errors = error_stream(ordered, order_by=None)
            values["labelled_error_rate"] = float(errors.mean())
            ids, times = ordered["id"].to_list(), ordered["time"].to_list()
            for name in concept.detectors:
                monitor = self._detector(name)
                start = monitor.n
                found = monitor.update_many(errors)
                values[f"concept_drift[{name}]"] = float(len(found))
                detections += [{"detector": name, "position": p, "prediction_id": ids[p - start],
                                "time": times[p - start]} for p in found]
        return values, detections

    def stream_position(self) -> int | None:
        """Labelled predictions the detectors have seen so far (positions in the stream)."""
        concept = self.spec.checks.concept_drift
        if concept is None or not concept.detectors:
            return None
        return self._detector(concept.detectors[0]).n

    def _detector(self, name: str) -> Any:
        from prodml.monitoring.concept_drift import ErrorStreamMonitor

        if name not in self.detectors:
            params = self.spec.checks.concept_drift.detector_params.get(name, {})  # type: ignore[union-attr]
            self.detectors[name] = ErrorStreamMonitor(name, **params)
        return self.detectors[name]


def learn_from_reference(spec: MonitorSpec, store: Store, states: list[Any]) -> None:
    """Adaptive bands start from the windows of the reference stretch (the series a monitor
    would have computed on them), then keep learning from trailing windows."""
    from prodml.monitoring.log_windows import cut_windows

    adaptive = [s for s in states if s.threshold.kind == "adaptive"]
    if not adaptive or not isinstance(spec.reference, LogStretch):
        return
    reference = log_reference(spec, spec.reference, store)
    assert reference.frame is not None
    checks = WindowChecks(spec, store)
    history: dict[str, list[float]] = {}
    windows, _ = cut_windows(reference.frame, spec.window, spec.reference.until_ms)
    for window in windows:
        values = checks.on_close(window["frame"], span_s=window["span_s"])
        if checks.needs_feedback():
            values.update(checks.on_settle(window["frame"])[0])
        for name, value in values.items():
            history.setdefault(name, []).append(value)
    for state in adaptive:
        state.threshold.learn(history.get(state.rule.series, []))
