"""The monitor declaration: YAML or Python in, validated, round-tripped; every error names the
field, the value and the rule."""

from __future__ import annotations

import polars as pl
import pytest

from prodml.errors import InvalidInputError
from prodml.monitoring import AdaptiveThreshold, MonitorSpec, StaticThreshold, measure_window

YAML = """
endpoint: loans
window: {predictions: 1000}
reference: {since: 2024-05-01, until: 2024-05-08}
checks:
  software: true
  input: {features: [age, income]}
  output: {events: [clicked]}
  drift: {num_method: psi, threshold: 0.2, multivariate: true}
  prior_shift: {method: chisquare}
  performance: {positive: 1, slices: [region]}
  estimated_performance: {probability: proba_1}
  concept_drift: {detectors: [adwin, ddm], detector_params: {ddm: {warm_start: 500}}}
  custom: {p90_income: "tests.monitoring.test_spec:p90_income"}
alerts:
  - {series: error_rate, upper: 0.05, min_consecutive: 2}
  - {series: "drift_score[age]", adaptive: {k: 3, window: 20}, severity: critical}
"""


def p90_income(frame: pl.DataFrame) -> float:
    return frame["income"].quantile(0.9)


def test_yaml_declaration(tmp_path):
    path = tmp_path / "loans.yaml"
    path.write_text(YAML)
    spec = MonitorSpec.load(path)
    assert spec == MonitorSpec.load(YAML)
    assert (spec.name, spec.window.kind, spec.window.predictions) == ("loans", "predictions",
                                                                      1000)
    assert spec.reference.since_ms == 1714521600000
    assert spec.checks.drift.drift_options()["num_method"] == "psi"
    assert spec.checks.performance.slices == ["region"]
    rules = spec.alert_rules()
    assert isinstance(rules[0].threshold, StaticThreshold) and rules[0].min_consecutive == 2
    assert isinstance(rules[1].threshold, AdaptiveThreshold) and rules[1].threshold.window == 20
    custom = spec.checks.custom_metrics()
    frame = pl.DataFrame({"income": [float(i) for i in range(101)]})
    assert measure_window(frame, custom=custom, groups=["custom"])["custom[p90_income]"] == 90


def test_defaults():
    spec = MonitorSpec.load({"endpoint": "loans", "window": {"minutes": 10}})
    assert spec.reference == "training_profile" and spec.window.span_ms == 600_000
    on = [g for g in ("software", "input", "output", "drift", "prior_shift", "performance",
                      "estimated_performance", "concept_drift")
          if getattr(spec.checks, g) is not None]
    assert on == ["software", "input", "output", "drift", "prior_shift", "concept_drift"]
    assert spec.checks.concept_drift.detectors == ["adwin"]


def test_python_declaration_with_callables_round_trips():
    spec = MonitorSpec(endpoint="loans", window={"hours": 1},
                       checks={"software": False, "custom": {"p90": p90_income}},
                       alerts=[{"series": "volume", "lower": 100}])
    data = spec.to_dict()
    assert data["checks"]["software"] is False
    assert data["checks"]["custom"] == {"p90": f"{__name__}:p90_income"}
    again = MonitorSpec.load(spec.to_yaml())
    assert again.checks.software is None
    assert again.checks.custom_metrics()["p90"] is p90_income
    assert MonitorSpec.load(MonitorSpec.load(YAML).to_yaml()) == MonitorSpec.load(YAML)


@pytest.mark.parametrize("change,field,rule", [
    ({"window": {"predictions": 0}}, "window.predictions", "greater than or equal to 1"),
    ({"window": {"predictions": 10, "minutes": 5}}, "window", "exactly one"),
    ({"window": {"days": 1}}, "window.days", "not a field"),
    ({"reference": "yesterday"}, "reference", "training_profile"),
    ({"reference": {"since": 5, "until": 3}}, "reference", "since must be before until"),
    ({"checks": {"drift": {"num_method": "chisq"}}}, "checks.drift.num_method", "one of"),
    ({"checks": {"drift": {"num_method": "chisquare", "cat_method": "ks"}}},
     "checks.drift.cat_method", "numeric"),
    ({"checks": {"prior_shift": {"method": "wasserstein"}}}, "checks.prior_shift.method",
     "categorical"),
    ({"checks": {"concept_drift": {"detectors": ["cusum"]}}},
     "checks.concept_drift.detectors", "one of"),
    ({"checks": {"concept_drift": {"detector_params": {"ddm": {}}}}},
     "checks.concept_drift", "not in detectors"),
    ({"checks": {"estimated_performance": True}}, "checks", "needs options"),
    ({"checks": {"custom": {"m": "no_such_module_xyz:f"}}}, "checks.custom.m",
     "cannot be imported"),
    ({"checks": {"custom": {"m": "math:no_such_function"}}}, "checks.custom.m",
     "no attribute"),
    ({"checks": {"custom": {"m": "math.sqrt"}}}, "checks.custom.m", "module:function"),
    ({"alerts": [{"series": "x"}]}, "alerts.0", "not neither"),
    ({"alerts": [{"series": "x", "upper": 1, "adaptive": {}}]}, "alerts.0", "not both"),
    ({"alerts": [{"series": "x", "lower": 2, "upper": 1}]}, "alerts.0", "must be <= upper"),
    ({"alerts": [{"series": "x", "upper": 1, "min_consecutive": 0}]},
     "alerts.0.min_consecutive", "greater than or equal to 1"),
])
def test_errors_name_the_field_the_value_and_the_rule(change, field, rule):
    spec = {"endpoint": "loans", "window": {"predictions": 100}, **change}
    with pytest.raises(InvalidInputError) as caught:
        MonitorSpec.load(spec)
    assert caught.value.field == field
    assert rule in caught.value.rule
    assert "monitor spec" in caught.value.rule


def test_not_a_mapping_and_missing_files():
    with pytest.raises(InvalidInputError, match="must be a mapping"):
        MonitorSpec.load("- a\n- b\n")
    with pytest.raises(InvalidInputError, match="does not exist"):
        MonitorSpec.load("nowhere.yaml")
    with pytest.raises(InvalidInputError, match="endpoint=None: Field required"):
        MonitorSpec.load({"window": {"minutes": 1}})
