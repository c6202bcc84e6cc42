"""The demo's monitoring act on its own: a served loan model, later traffic with a salary
inflation ramp and a concept change at known points, the alerts at the right windows."""

from __future__ import annotations

from sklearn.ensemble import HistGradientBoostingClassifier

from prodml.demo.data import FEATURES, LABEL, loan_applications
from prodml.demo.monitoring import monitoring_story
from prodml.serving import endpoints as eps
from prodml.store import open_store
from prodml.tracking import registry


def test_the_alerts_fire_at_the_right_windows(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'prodml.db'}", str(tmp_path / "artifacts"))
    train = loan_applications(4_500, 42)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(
        train[FEATURES], train[LABEL])
    version = registry.register("loan", model, input_example=train[FEATURES].head(100),
                                training_data=train, store=store)
    eps.deploy("loan", version.ref, store=store, fallback="1 if salary > 100000 else 0")
    story = monitoring_story(store, seed=42)
    fired = {(a["series"], a["window"]) for a in story["alerts"]}
    assert fired == {("drifted[salary]", story["drift_window"]),
                     ("accuracy", story["change_window"]),
                     ("concept_drift[adwin]", story["change_window"])}
    assert story["early_alerts"] == [] and story["read"] == story["rows"]
    delay = story["detection_delay"]
    assert delay["false_alarms"] == 0 and 0 <= delay["delay"] < 500
    kinds = {a["series"]: a["kind"] for a in story["alerts"]}
    assert kinds["accuracy"] == "sudden"
    assert story["seconds"] < 20
