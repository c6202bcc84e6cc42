"""A monitor's declaration: which endpoint, which windows, against what, which checks, which
alerts. Written in YAML or Python; validated here, run by the runner.

.. code-block:: yaml

    endpoint: loans
    window: {predictions: 1000}          # or {minutes: 10}, {seconds: ...}, {hours: ...}
    reference: training_profile          # or {since: 2024-05-01, until: 2024-05-08}
    checks:
      software: true                     # a group: true (defaults), false, or its options
      input: {features: [age, income]}
      output: {events: [clicked]}
      drift: {num_method: psi, threshold: 0.2, multivariate: true}
      prior_shift: {method: chisquare}
      performance: {positive: 1, slices: [region]}
      estimated_performance: {probability: proba_1}
      concept_drift: {detectors: [adwin, ddm], confidence_test: welch}
      custom: {approval_rate: "mypackage.metrics:approval_rate"}
    alerts:
      - {series: error_rate, upper: 0.05, min_consecutive: 2}
      - {series: "drift_score[age]", adaptive: {k: 3, window: 20}}
      - {series: "drifted[income]", upper: 0.5, actions: [pause]}  # also: rollback,
                                         # callable:module:function, a registered name
    sinks:                               # where alert events go (default: log)
      - log
      - {webhook: "https://hooks.slack.com/services/...", timeout_s: 5}

Every error names the field, the value and the rule (:class:`~prodml.errors.InvalidInputError`).

>>> spec = MonitorSpec.load({"endpoint": "loans", "window": {"minutes": 10},
...                          "alerts": [{"series": "error_rate", "upper": 0.05}]})
>>> spec.window.span_ms, spec.reference, spec.checks.performance is None
(600000, 'training_profile', True)
>>> spec.alert_rules()[0].name
'error_rate <= 0.05'
>>> MonitorSpec.load({"endpoint": "loans", "window": {"predictions": 0}})
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: window.predictions=0: Input should be greater than or equal to 1 (in monitor spec)
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from prodml.errors import InvalidInputError
from prodml.specs import read_spec

CALLABLE_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
ACTION_NAME = re.compile(r"^[A-Za-z_][\w.-]*\Z")  # \Z: "$" lets a final newline in
WINDOW_UNITS_MS = {"seconds": 1000, "minutes": 60_000, "hours": 3_600_000}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


# -- window and reference ---------------------------------------------------------------------
class WindowSpec(_Strict):
    """A number of predictions, or a time span (exactly one of the four)."""

    predictions: int | None = Field(None, ge=1)
    seconds: float | None = Field(None, gt=0)
    minutes: float | None = Field(None, gt=0)
    hours: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> WindowSpec:
        given = [k for k in ("predictions", *WINDOW_UNITS_MS) if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of predictions, seconds, minutes, hours"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return "predictions" if self.predictions is not None else "time"

    @property
    def span_ms(self) -> int | None:
        """The window's length in milliseconds (None for a count window)."""
        for unit, ms in WINDOW_UNITS_MS.items():
            value = getattr(self, unit)
            if value is not None:
                return round(value * ms)
        return None


class LogStretch(_Strict):
    """A fixed stretch of the prediction log: ``since <= time < until``."""

    since: dt.datetime | int
    until: dt.datetime | int

    @field_validator("since", "until", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> LogStretch:
        if self.since_ms >= self.until_ms:
            raise ValueError("since must be before until")
        return self

    @property
    def since_ms(self) -> int:
        return _ms(self.since)

    @property
    def until_ms(self) -> int:
        return _ms(self.until)


# -- checks ------------------------------------------------------------------------------------
class SoftwareCheck(_Strict):
    error_statuses: list[str] = Field(default_factory=lambda: ["error", "timeout"])


class InputCheck(_Strict):
    features: list[str] | None = None  # None: every feature column of the log
    schema_domain: bool = True  # out-of-domain shares from the served version's schema


class OutputCheck(_Strict):
    classes: list[str | int | bool] | None = None  # None: the observed classes
    events: list[str] = Field(default_factory=list)  # outcome-event count columns


class DriftCheck(_Strict):
    features: list[str] | None = None
    methods: dict[str, str] = Field(default_factory=dict)
    num_method: str | None = None
    cat_method: str | None = None
    threshold: float | None = None
    thresholds: dict[str, float] = Field(default_factory=dict)
    drift_share: float = Field(0.5, gt=0, le=1)
    multivariate: bool = False  # the domain classifier (prodml.domain_classifier)
    skew_after_deployment: bool = True  # first window after a deployment vs training data

    @field_validator("num_method", "cat_method")
    @classmethod
    def _known(cls, value: str | None, info: Any) -> str | None:
        from prodml.data.drift_methods import METHODS

        if value is None:
            return value
        if value not in METHODS:
            raise ValueError("must be one of " + ", ".join(METHODS))
        kind = "numeric" if info.field_name == "num_method" else "categorical"
        if kind not in METHODS[value].kinds:
            raise ValueError(f"applies to {' and '.join(METHODS[value].kinds)} columns, not "
                             f"{kind} ones")
        return value

    @field_validator("methods")
    @classmethod
    def _known_each(cls, value: dict[str, str]) -> dict[str, str]:
        from prodml.data.drift_methods import METHODS

        for column, method in value.items():
            if method not in METHODS:
                raise ValueError(f"{column}: {method!r} must be one of " + ", ".join(METHODS))
        return value

    def drift_options(self) -> dict[str, Any]:
        """The keyword arguments for :func:`prodml.drift`."""
        return {"methods": dict(self.methods) or None, "num_method": self.num_method,
                "cat_method": self.cat_method, "threshold": self.threshold,
                "thresholds": dict(self.thresholds) or None, "drift_share": self.drift_share}


class PriorShiftCheck(_Strict):
    method: str = "jensenshannon"
    threshold: float | None = None

    @field_validator("method")
    @classmethod
    def _categorical(cls, value: str) -> str:
        from prodml.data.drift_methods import METHODS

        if value not in METHODS or "categorical" not in METHODS[value].kinds:
            raise ValueError("must be a categorical method: " + ", ".join(
                m for m, spec in METHODS.items() if "categorical" in spec.kinds))
        return value


class PerformanceCheck(_Strict):
    positive: str | int | bool | None = None  # a binary task's positive class
    average: Literal["macro", "weighted"] = "macro"
    slices: list[str] = Field(default_factory=list)
    score: str | None = None  # the positive class's probability column, for ROC AUC
    # a window's realised metrics reach the alert rules once this share of it is labelled
    min_coverage: float = Field(0.5, ge=0, le=1)
    # ... or once this many newer windows have closed, whatever their coverage
    label_wait_windows: int = Field(20, ge=0)


class EstimatedPerformanceCheck(_Strict):
    probability: str  # the positive class's probability column (e.g. proba_1)
    positive: str | int | bool = 1
    threshold: float = Field(0.5, ge=0, le=1)
    calibrate: bool = True  # isotonic calibration fitted on the labelled reference


class ConceptDriftCheck(_Strict):
    detectors: list[str] = Field(default_factory=lambda: ["adwin"])
    detector_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    confidence_test: Literal["welch", "mannwhitney"] | None = "welch"
    alpha: float = Field(0.01, gt=0, lt=1)
    min_effect: float = Field(0.0, ge=0)
    trend_windows: int = Field(6, ge=3)  # k of classify_change

    @field_validator("detectors")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        from prodml.monitoring.concept_drift import DETECTORS

        for name in value:
            if name not in DETECTORS:
                raise ValueError(f"{name!r} must be one of " + ", ".join(DETECTORS))
        return value

    @model_validator(mode="after")
    def _params_named(self) -> ConceptDriftCheck:
        for name in self.detector_params:
            if name not in self.detectors:
                raise ValueError(f"detector_params names {name!r}, which is not in detectors")
        return self


GROUPS = {"software": SoftwareCheck, "input": InputCheck, "output": OutputCheck,
          "drift": DriftCheck, "prior_shift": PriorShiftCheck,
          "performance": PerformanceCheck, "concept_drift": ConceptDriftCheck}
ON_BY_DEFAULT = ("software", "input", "output", "drift", "prior_shift", "concept_drift")


class Checks(_Strict):
    """Check groups: each ``true`` (its defaults), ``false`` / absent, or its options.

    On unless turned off: software, input, output, drift, prior_shift, concept_drift.
    Off unless asked for: performance (needs labels), estimated_performance (needs the
    probability column's name).
    """

    software: SoftwareCheck | None = Field(default_factory=SoftwareCheck)
    input: InputCheck | None = Field(default_factory=InputCheck)
    output: OutputCheck | None = Field(default_factory=OutputCheck)
    drift: DriftCheck | None = Field(default_factory=DriftCheck)
    prior_shift: PriorShiftCheck | None = Field(default_factory=PriorShiftCheck)
    performance: PerformanceCheck | None = None
    estimated_performance: EstimatedPerformanceCheck | None = None
    concept_drift: ConceptDriftCheck | None = Field(default_factory=ConceptDriftCheck)
    custom: dict[str, Any] = Field(default_factory=dict)  # name -> "module:function" or fn

    @model_validator(mode="before")
    @classmethod
    def _switches(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            if value is False or value is None:
                out[name] = None if name != "custom" else {}
            elif value is True:
                if name not in GROUPS:
                    raise ValueError(f"{name}: true needs options here (e.g. "
                                     "{probability: proba_1})")
                out[name] = {}
        return out

    @field_validator("custom")
    @classmethod
    def _callables(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, target in value.items():
            if not callable(target):
                resolve_callable(target, f"checks.custom.{name}")
        return value

    def custom_metrics(self) -> dict[str, Callable[..., float]]:
        """The custom metric callables, imported."""
        return {name: target if callable(target) else
                resolve_callable(target, f"checks.custom.{name}")
                for name, target in self.custom.items()}


# -- alert rules -------------------------------------------------------------------------------
class AdaptiveSpec(_Strict):
    k: float = Field(3.0, gt=0)
    window: int | None = Field(20, ge=2)
    min_history: int = Field(5, ge=2)
    relearn_every: int | None = Field(1, ge=1)
    direction: Literal["both", "upper", "lower"] = "both"
    learn_breaches: bool = False


class AlertRuleSpec(_Strict):
    """A rule on one series: static ``lower``/``upper``, or an ``adaptive`` band."""

    series: str = Field(min_length=1)
    lower: float | None = None
    upper: float | None = None
    adaptive: AdaptiveSpec | None = None
    min_consecutive: int = Field(1, ge=1)
    min_consecutive_ok: int = Field(1, ge=1)
    severity: Literal["info", "warning", "critical"] = "warning"
    name: str = ""
    # what to do when it fires: pause, rollback, callable:module:function,
    # pipeline:file.py:name, or the name of an action registered with
    # prodml.monitoring.sinks.register_action
    actions: list[str] = Field(default_factory=list)

    @field_validator("actions")
    @classmethod
    def _actions(cls, value: list[str]) -> list[str]:
        for action in value:
            if action.startswith("callable:"):
                if not CALLABLE_PATH.match(action.removeprefix("callable:")):
                    raise ValueError(f"{action!r}: give callable:module:function")
            elif action.startswith("pipeline:"):
                if not action.removeprefix("pipeline:").strip():
                    raise ValueError(f"{action!r}: give pipeline:file.py:name or "
                                     "pipeline:module:name")
            elif not ACTION_NAME.match(action):
                raise ValueError(f"{action!r} must be pause, rollback, "
                                 "callable:module:function, pipeline:file.py:name or a "
                                 "registered action's name")
        return value

    @model_validator(mode="after")
    def _one_threshold(self) -> AlertRuleSpec:
        static = self.lower is not None or self.upper is not None
        if static == (self.adaptive is not None):
            raise ValueError("give lower and/or upper (a static threshold) or adaptive "
                             "(a learnt band), not both, not neither")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) must be <= upper ({self.upper})")
        return self

    def to_rule(self) -> Any:
        from prodml.monitoring.alerts import AlertRule
        from prodml.monitoring.thresholds import AdaptiveThreshold, StaticThreshold

        threshold = (AdaptiveThreshold(**self.adaptive.model_dump()) if self.adaptive
                     else StaticThreshold(self.lower, self.upper))
        return AlertRule(self.series, threshold, self.min_consecutive,
                         self.min_consecutive_ok, self.name, self.severity)


class SinkSpec(_Strict):
    """Where alert events go: the log (``prodml.monitoring`` logger) or a webhook that gets
    JSON (Slack-compatible: ``text`` plus ``attachments``), posted with a timeout."""

    type: Literal["log", "webhook"]
    url: str | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)
    on: list[Literal["firing", "resolved"]] = Field(
        default_factory=lambda: ["firing", "resolved"])
    min_severity: Literal["info", "warning", "critical"] = "info"

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        if isinstance(data, dict) and "webhook" in data and "type" not in data:
            out = {k: v for k, v in data.items() if k != "webhook"}
            return {"type": "webhook", "url": data["webhook"], **out}
        return data

    @model_validator(mode="after")
    def _url(self) -> SinkSpec:
        if self.type == "webhook" and not (self.url or "").startswith(("http://", "https://")):
            raise ValueError("a webhook needs an http:// or https:// url")
        return self


# -- the monitor -----------------------------------------------------------------------------
class MonitorSpec(_Strict):
    """One monitor of one endpoint."""

    endpoint: str = Field(min_length=1)
    name: str = ""
    window: WindowSpec
    reference: Literal["training_profile"] | LogStretch = "training_profile"
    checks: Checks = Field(default_factory=Checks)
    alerts: list[AlertRuleSpec] = Field(default_factory=list)
    sinks: list[SinkSpec] = Field(default_factory=lambda: [SinkSpec(type="log")])
    # Watch the predictions logged from this time on (None: the whole log). "now" is read
    # when the spec is loaded, so a monitor added to a busy endpoint starts with new traffic.
    since: dt.datetime | int | None = None

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        if value == "now":
            return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return value

    @property
    def since_ms(self) -> int | None:
        return None if self.since is None else _ms(self.since)

    @model_validator(mode="after")
    def _named(self) -> MonitorSpec:
        if not self.name:
            object.__setattr__(self, "name", self.endpoint)
        return self

    @classmethod
    def load(cls, spec: MonitorSpec | dict[str, Any] | str | os.PathLike[str]
             ) -> MonitorSpec:
        """From a spec, a dict, YAML text or a YAML file; errors name the field and rule."""
        if isinstance(spec, MonitorSpec):
            return spec
        value, source = read_spec(spec, "monitor spec")
        if not isinstance(value, dict):
            raise InvalidInputError(source, type(value).__name__, "must be a mapping with "
                                    "'endpoint' and 'window'")
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise _invalid(exc, source) from None
        except InvalidInputError as exc:  # raised inside a validator (custom callables)
            raise InvalidInputError(exc.field or source, exc.value,
                                    f"{exc.rule} (in {source})") from None

    def alert_rules(self) -> list[Any]:
        """The :class:`~prodml.monitoring.alerts.AlertRule` of every declared alert."""
        return [rule.to_rule() for rule in self.alerts]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (custom callables as ``module:function``); ``load`` reads it back."""
        out = self.model_dump(mode="json", exclude_defaults=True,
                              exclude={"checks": {"custom"}})
        checks = out.setdefault("checks", {})
        for group, value in list(checks.items()):
            if value is None:
                checks[group] = False  # a group on by default, turned off
        checks["custom"] = {name: target if isinstance(target, str) else
                                   f"{target.__module__}:{target.__qualname__}"
                                   for name, target in self.checks.custom.items()}
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def resolve_callable(target: Any, field: str = "callable") -> Callable[..., Any]:
    """Import ``"package.module:function"`` (a dotted attribute path after the colon).

    >>> resolve_callable("math:sqrt")(9.0)
    3.0
    """
    if not isinstance(target, str) or not CALLABLE_PATH.match(target):
        raise InvalidInputError(field, target, "must be 'module:function' (e.g. "
                                "'mypackage.metrics:approval_rate') or a callable")
    module_name, attribute = target.split(":")
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInputError(field, target, f"module {module_name!r} cannot be imported: "
                                f"{exc}") from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InvalidInputError(field, target, f"{module_name!r} has no attribute "
                                    f"{attribute!r}")
        value = getattr(value, part)
    if not callable(value):
        raise InvalidInputError(field, target, "is not callable")
    return value


def _invalid(exc: ValidationError, source: str) -> InvalidInputError:
    errors = exc.errors(include_url=False)
    # In a union (reference: training_profile or a stretch) every member reports; the one
    # whose shape matched the input says what is wrong with it.
    first = min(errors, key=lambda e: e["type"] in _SHAPE_ERRORS)
    where = ".".join(str(p) for p in first["loc"] if not _UNION_TAG.match(str(p))) or "spec"
    rule = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        rule = "is not a field here"
    value = None if first["type"] == "missing" else first.get("input")
    if isinstance(value, dict):
        value = "{" + ", ".join(map(str, value)) + "}"
    others = [e for e in errors if e is not first and e["type"] not in _SHAPE_ERRORS]
    more = f"; and {len(others)} more" if others else ""
    return InvalidInputError(where, value, f"{rule} (in {source}){more}")


_SHAPE_ERRORS = {"literal_error", "model_type", "dict_type", "model_attributes_type"}
_UNION_TAG = re.compile(r"^(literal\[.*\]|[A-Z]\w*|function-\w+\[.*\])$")


def _ms(value: dt.datetime | int) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    return int(value)
