"""Retention of the prediction log on a real store (SQLite and PostgreSQL): old rows pruned
after their Parquet archive is written and checked, labelled rows kept (their batches
rewritten), the prune recorded, lineage and monitors still working afterwards, and the CLI's
one-line refusals."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import polars as pl
import pytest
from sqlalchemy import select, update

import prodml as pm
from prodml.errors import InvalidInputError, NotFoundError
from prodml.monitoring.runner import run_monitor
from prodml.monitoring.store import list_alerts
from prodml.pipelines.lineage_refs import UnknownRefError
from prodml.serving.log_reader import get_prediction, read_predictions
from prodml.serving.prediction_log import new_prediction_id
from prodml.serving.retention import (RetentionPolicy, get_retention, parse_retention, prune,
                                      set_retention)
from prodml.store import now_ms
from prodml.store import tables as t
from tests.monitoring.logged import ENDPOINT, log_rows, post_labels, register_and_deploy
from tests.monitoring.streams import sudden_with_covariate_shift, train_model

DAY = 86_400_000


@pytest.fixture(scope="module")
def model():
    return train_model()


def test_prune_archives_keeps_labelled_rewrites_batches_and_is_recorded(store, model):
    register_and_deploy(store, model)
    with store.write() as conn:  # another feature's key in the same policy column
        conn.execute(update(t.endpoints).where(t.endpoints.c.name == ENDPOINT)
                     .values(policy={"pii": ["zipcode"]}))
    set_retention(ENDPOINT, "90d", archive=True, keep_labelled=True, actor="ana", store=store)
    with store.read() as conn:
        policy = conn.execute(select(t.endpoints.c.policy)).scalar()
    assert policy == {"pii": ["zipcode"], "retention": "90d", "archive": True,
                      "keep_labelled": True}

    now = now_ms()
    rows = model.predict(sudden_with_covariate_shift(2_000, 1_000, 400).head(1_000), start_ms=0, step_ms=1)
    # Old and new rows interleaved in the same commits: every batch holds both.
    times = [now - 100 * DAY + i if i % 2 == 0 else now - DAY + i for i in range(rows.height)]
    rows = rows.with_columns(pl.Series("time", times, pl.Int64))
    ids = log_rows(store, rows)
    old = [pid for pid, when in zip(ids, times) if when < now - 90 * DAY]
    labelled = old[:40]
    post_labels(store, labelled, [1] * 40)
    before = read_predictions(ENDPOINT, store=store)

    dry = prune(ENDPOINT, dry_run=True, store=store, now=now)
    assert (dry.rows, dry.kept_labelled, dry.archive_uri) == (len(old) - 40, 40, None)
    assert read_predictions(ENDPOINT, store=store).height == rows.height

    done = prune(ENDPOINT, actor="cron", store=store, now=now)
    assert done.rows == len(old) - 40 and done.kept_labelled == 40
    assert done.batches_rewritten >= 1
    # The archive: Parquet in the artifact store, its SHA-256 checked, the very rows pruned.
    archived = pl.read_parquet(io.BytesIO(store.artifacts.get_bytes(done.archive_sha256)))
    gone = set(old) - set(labelled)
    assert set(archived["id"]) == gone and done.archive_uri.endswith(done.archive_sha256)
    expected = before.filter(pl.col("id").is_in(list(gone))).sort("id")
    assert archived.sort("id").select("id", "time", "age", "salary", "proba_1").equals(
        expected.select("id", "time", "age", "salary", "proba_1"))
    # What is left: the new rows and the labelled old ones, inputs intact (rewritten batches).
    after = read_predictions(ENDPOINT, store=store)
    assert set(after["id"]) == set(ids) - gone
    kept = before.filter(pl.col("id").is_in(after["id"].to_list())).sort("id")
    assert after.sort("id").select(kept.columns).equals(kept)
    assert get_prediction(labelled[0], store=store)["inputs"]["age"] == \
        before.filter(pl.col("id") == labelled[0])["age"][0]
    assert after.filter(pl.col("id").is_in(labelled))["label"].to_list() == [1] * 40
    with store.read() as conn:
        recorded = conn.execute(select(t.log_prunes)).one()
        left_in_batches = sum(conn.execute(select(t.prediction_batches.c.num_rows)).scalars())
        orphan_feedback = conn.execute(select(t.feedback.c.id).where(
            t.feedback.c.prediction_id.in_(list(gone)[:500]))).first()
    assert left_in_batches == len(after)
    assert orphan_feedback is None
    assert (recorded.endpoint, recorded.rows, recorded.kept_labelled, recorded.actor,
            recorded.archive_uri) == (ENDPOINT, len(gone), 40, "cron", done.archive_uri)
    assert recorded.before == now - 90 * DAY
    # Nothing more to prune now.
    assert prune(ENDPOINT, store=store, now=now).rows == 0

    assert pm.lineage(labelled[0], store=store).nodes  # kept rows still have lineage

    # A monitor over the pruned log: the day that keeps only its 40 labelled rows is not a
    # window (its volume would fire the alert); the recent day is.
    pm.monitor({"endpoint": ENDPOINT, "name": "after-prune", "window": {"seconds": 86_400},
                "alerts": [{"series": "volume", "lower": 100}]}, store=store)
    run = run_monitor("after-prune", store=store, now=now + 2 * DAY)
    assert run.windows and all(w["start"] >= now - 91 * DAY for w in run.windows)
    assert sum(w["rows"] for w in run.windows) == len(ids) - len(old)
    assert list_alerts(monitor="after-prune", store=store) == []


def test_lineage_from_a_pruned_prediction_says_so_and_names_the_archive(store, model):
    register_and_deploy(store, model)
    set_retention(ENDPOINT, "1d", archive=True, store=store)
    rows = model.predict(sudden_with_covariate_shift(2_000, 1_000, 400).head(20), start_ms=0,
                         step_ms=1)
    ids = log_rows(store, rows.with_columns(pl.Series("time", [now_ms()] * 20, pl.Int64)))
    done = prune(ENDPOINT, before=now_ms() + 1, actor="ana", store=store)
    assert done.rows == 20
    with pytest.raises(UnknownRefError) as caught:
        pm.lineage(ids[3], store=store)
    message = str(caught.value)
    assert f"no prediction {ids[3]} in the log: predictions of {ENDPOINT} logged before " \
        in message
    assert f"by ana (archived in {done.archive_uri})" in message
    with pytest.raises(UnknownRefError, match="not a prediction id"):  # after the cutoff
        pm.lineage(new_prediction_id(), store=store)


def test_a_row_count_retention_keeps_the_newest(store, model):
    register_and_deploy(store, model)
    set_retention(ENDPOINT, "300 rows", store=store)
    rows = model.predict(sudden_with_covariate_shift(2_000, 1_000, 400).head(1_000), start_ms=0, step_ms=1)
    ids = log_rows(store, rows.with_columns(
        pl.Series("time", [1_700_000_000_000 + i for i in range(rows.height)], pl.Int64)))
    done = prune(ENDPOINT, store=store)
    assert done.rows == 700 and done.archive_uri is None and done.batches_deleted == 0
    assert set(read_predictions(ENDPOINT, store=store)["id"]) == set(ids[700:])


def test_policies_refuse_bad_values_naming_field_value_and_rule(store, model):
    with pytest.raises(InvalidInputError) as caught:
        parse_retention("ninety days")
    assert (caught.value.field, caught.value.value) == ("retention", "ninety days")
    assert "90d" in caught.value.rule
    with pytest.raises(InvalidInputError, match="archive='yes': must be true or false"):
        RetentionPolicy("90d", archive="yes")
    with pytest.raises(NotFoundError):
        set_retention("nobody", "90d", store=store)
    register_and_deploy(store, model)
    with pytest.raises(InvalidInputError, match="has no retention policy"):
        prune(ENDPOINT, store=store)
    set_retention(ENDPOINT, "2w", keep_labelled=True, store=store)
    set_retention(ENDPOINT, "off", store=store)
    assert get_retention(ENDPOINT, store=store).retention is None
    with store.read() as conn:
        actions = conn.execute(select(t.deployment_events.c.reason).where(
            t.deployment_events.c.action == "retention")).scalars().all()
    assert actions == ["retention none -> 2w keep-labelled", "retention 2w keep-labelled -> none"]


def test_cli_sets_prunes_and_refuses_in_one_line(tmp_path, model):
    from prodml.store import open_store

    url = f"sqlite:///{tmp_path}/p.db"
    store = open_store(url, str(tmp_path / "artifacts"))
    register_and_deploy(store, model)
    rows = model.predict(sudden_with_covariate_shift(2_000, 1_000, 400).head(200), start_ms=0, step_ms=1)
    log_rows(store, rows.with_columns(pl.Series("time", [1_600_000_000_000] * 100
                                                + [now_ms()] * 100, pl.Int64)))
    env = {**os.environ, "PRODML_DATABASE_URL": url,
           "PRODML_ARTIFACTS": str(tmp_path / "artifacts")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "prodml", "log", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    bad = cli("retention", ENDPOINT, "ninety days")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert "retention='ninety days': must be an age such as 90d" in bad.stderr
    bad = cli("prune", ENDPOINT, "--before", "last tuesday")
    assert bad.returncode == 1 and "before='last tuesday': must be a date" in bad.stderr
    assert cli("retention", ENDPOINT, "30d", "--archive").returncode == 0
    shown = cli("retention", ENDPOINT, "--json")
    assert json.loads(shown.stdout)["retention"] == "30d"
    dry = cli("prune", "--dry-run", "--json")
    assert json.loads(dry.stdout)[0]["rows"] == 100 and json.loads(dry.stdout)[0]["dry_run"]
    done = cli("prune", ENDPOINT)
    assert done.returncode == 0 and "pruned 100 predictions" in done.stdout, done.stderr
    assert "archived to" in done.stdout
    assert read_predictions(ENDPOINT, store=store).height == 100


def test_a_retention_change_is_a_new_revision_that_later_deployments_keep(store, model):
    from prodml.serving import endpoints as eps

    register_and_deploy(store, model)
    before = eps.get_endpoint(ENDPOINT, store=store).revision
    set_retention(ENDPOINT, "30d", archive=True, store=store)
    # a deployment that read the endpoint before this write fails its compare-and-set
    # (revision moved) rather than writing the old policy back
    assert eps.get_endpoint(ENDPOINT, store=store).revision == before + 1
    ref = eps.get_endpoint(ENDPOINT, store=store).spec.model
    eps.deploy(ENDPOINT, ref, reason="same version again", store=store)
    assert get_retention(ENDPOINT, store=store).retention == "30d"
