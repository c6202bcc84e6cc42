"""Profiles kept with datasets and model versions, and the migration that added them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import prodml as pm
from prodml.tracking.runs import dataset_profile


@pytest.fixture
def train():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"salary": rng.normal(50, 10, 500), "car": rng.integers(1, 5, 500)})
    return X.assign(label=(X["salary"] > 50).astype(int))


def test_logged_dataset_keeps_its_profile_once_per_version(store, train):
    with pm.start_run(experiment="p") as run:
        record = run.log_dataset(train, context="train")
    with pm.start_run(experiment="p") as again:
        same = again.log_dataset(train, context="train")
    assert record.profile_sha256 is not None and same.profile_sha256 == record.profile_sha256
    stored = dataset_profile(record)
    assert stored.rows == 500
    assert stored["salary"].mean == pytest.approx(train["salary"].mean())
    with pm.start_run(experiment="p") as bare:
        skipped = bare.log_dataset(train.head(10), context="eval", profile=False)
    assert skipped.profile_sha256 is None
    with pytest.raises(pm.NotFoundError, match="profile=True"):
        dataset_profile(skipped)


def test_model_version_carries_its_training_profile(store, train):
    X, y = train[["salary", "car"]], train["label"]
    with pm.start_run(experiment="p") as run:
        run.log_dataset(train, context="train")
        model = LogisticRegression().fit(X, y)
    from_run = pm.models.register("loan", model, run=run)
    assert pm.models.training_profile(from_run.ref)["salary"].moments.n == 500
    explicit = pm.models.register("loan", model, training_data=X.head(100))
    assert pm.models.training_profile(explicit.ref).rows == 100
    bare = pm.models.register("loan", model)
    with pytest.raises(pm.NotFoundError, match="training profile"):
        pm.models.training_profile(bare.ref)


def test_a_store_at_revision_0001_is_upgraded_keeping_its_rows(tmp_path):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from prodml.store.engine import MIGRATIONS

    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    with engine.connect() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("INSERT INTO datasets (digest, name, source, source_type, num_rows, "
                          "num_columns, schema, created_at) VALUES ('d1', 'old', 's', 'file', "
                          "3, 1, '[]', 0)"))
        conn.commit()
    engine.dispose()
    store = pm.open_store(url, str(tmp_path / "artifacts"))
    from prodml.store.engine import HEAD_REVISION
    assert store.revision() == HEAD_REVISION
    with store.read() as conn:
        rows = conn.execute(text("SELECT name, profile_sha256 FROM datasets")).all()
    assert rows == [("old", None)]
