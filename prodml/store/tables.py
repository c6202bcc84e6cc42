"""The tables of the one store (SQLAlchemy Core).

Times are integer milliseconds since the Unix epoch (UTC): portable across SQLite and
PostgreSQL, cheap to compare and sort. JSON columns hold small structured values (schemas,
environments); bulk data never goes into JSON here.

Change a table only together with a new migration in ``store/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, String, Table, Text, UniqueConstraint)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

experiments = Table(
    "experiments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False, index=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # RUNNING, FINISHED, FAILED, KILLED
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("error", Text),
    Column("user", String(255)),
    Column("host", String(255)),
    Column("code_commit", String(64)),
    Column("code_branch", String(255)),
    Column("code_dirty", Boolean),
    Column("code_diff_digest", String(64)),
    Column("code_repo", String(1024)),
    Column("environment", JSON),  # python, platform, package versions
    Column("wall_time_s", Float),
    Column("cpu_time_s", Float),
    Column("peak_memory_bytes", BigInteger),
)
Index("ix_runs_start_time", runs.c.start_time)

params = Table(
    "params", metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

tags = Table(
    "tags", metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

# Every point of every metric: the history. NaN is stored as NULL (SQLite cannot hold NaN).
metrics = Table(
    "metrics", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("key", String(255), nullable=False),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)
Index("ix_metrics_run_key_step", metrics.c.run_id, metrics.c.key, metrics.c.step)

# The last point per (run, metric) by (step, timestamp): what search and listings read.
latest_metrics = Table(
    "latest_metrics", metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)
Index("ix_latest_metrics_key_value", latest_metrics.c.key, latest_metrics.c.value)

# Content-addressed blobs: one row per distinct SHA-256.
artifacts = Table(
    "artifacts", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("uri", String(2048), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(255)),
    Column("created_at", BigInteger, nullable=False),
)

run_artifacts = Table(
    "run_artifacts", metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("sha256", String(64), ForeignKey("artifacts.sha256"), nullable=False),
)

datasets = Table(
    "datasets", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("source", String(2048), nullable=False),
    Column("source_type", String(32), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("num_columns", Integer, nullable=False),
    Column("schema", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("profile_sha256", String(64)),  # artifact: the dataset's Profile bytes (0002)
)

run_inputs = Table(
    "run_inputs", metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), primary_key=True),
    Column("context", String(64), primary_key=True),
)

registered_models = Table(
    "registered_models", metadata,
    Column("name", String(255), primary_key=True),
    Column("description", Text),
    Column("created_at", BigInteger, nullable=False),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(255), ForeignKey("registered_models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("serialization", String(32), nullable=False),
    Column("flavor_options", JSON),  # e.g. skops types trusted at registration
    Column("model_class", String(512)),
    Column("artifact_sha256", String(64), ForeignKey("artifacts.sha256"), nullable=False),
    Column("signature", JSON),
    Column("run_id", String(32), ForeignKey("runs.id")),
    Column("description", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("profile_sha256", String(64)),  # artifact: training-data Profile (0002)
    Column("schema", JSON),  # data Schema that requests are validated against (0004)
    UniqueConstraint("model_name", "version", name="uq_model_versions_name_version"),
)

model_aliases = Table(
    "model_aliases", metadata,
    Column("model_name", String(255), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

model_version_tags = Table(
    "model_version_tags", metadata,
    Column("version_id", Integer, ForeignKey("model_versions.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

# An evaluation of a version on some data, and the gate's verdict on it (0003).
evaluations = Table(
    "evaluations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("model_versions.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("dataset_digest", String(64)),
    Column("result", JSON, nullable=False),  # EvaluationResult.to_dict()
    Column("gate", String(255)),
    Column("blessed", Boolean),
    Column("blessing", JSON),  # Blessing.to_dict()
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_evaluations_version_id", evaluations.c.version_id)

# ---- serving (0004) ----------------------------------------------------------------------
# An endpoint is a stable name with a deployment behind it: ``spec`` is the strategy tree
# (direct / shadow / canary / blue-green / automation) with its live state (canary step,
# active colour). ``revision`` grows with every change, so workers notice a change with one
# cheap read, and writers update with compare-and-set on it.
endpoints = Table(
    "endpoints", metadata,
    Column("name", String(255), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("fallback", Text),  # an expression or "module:callable"
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # (0008) what the endpoint demands of whatever it serves: require_blessing, retention,
    # archive, keep_labelled, pii (columns hashed on every route whatever the version says).
    Column("policy", JSON),
)

# Every change of an endpoint: who, when, why, from, to.
deployment_events = Table(
    "deployment_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), ForeignKey("endpoints.name"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("reason", Text),
    Column("from_spec", JSON),
    Column("to_spec", JSON),
    # (0009) the server process that made the change, "host:pid" (prodml.store.replica_id):
    # a canary step taken by the controller, or the replica whose admin API was called.
    Column("replica", String(255)),
)
Index("ix_deployment_events_endpoint", deployment_events.c.endpoint, deployment_events.c.id)

# Every field of the predictions committed together (ids, times, routes, versions, inputs,
# outputs, per-class probabilities), as one Arrow IPC stream: reading a million logged rows
# back for monitoring is then a few blob reads, not a million JSON parses. PII columns are
# hashed. ``predictions`` keeps the row per request for lookups by id and for joins.
prediction_batches = Table(
    "prediction_batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("time_first", BigInteger, nullable=False),
    Column("time_last", BigInteger, nullable=False),
    Column("num_rows", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)
Index("ix_prediction_batches_endpoint_time", prediction_batches.c.endpoint,
      prediction_batches.c.time_last)

# (0009) A job that one server process at a time does for the whole fleet (the canary
# controller): held by ``holder`` until ``expires_at`` (the database's clock, ms), renewed
# while it works; another process takes it over once it expires.
leases = Table(
    "leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# One row per answered (or mirrored) request.
predictions = Table(
    "predictions", metadata,
    Column("id", String(32), primary_key=True),
    Column("time", BigInteger, nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("model_name", String(255)),
    Column("model_version", Integer),
    Column("route", String(16), nullable=False),  # primary, canary, shadow, fallback, human
    Column("revision", Integer),  # the endpoint revision that routed it
    Column("routing_key", String(255)),
    Column("prediction", Text),  # JSON of the answer
    Column("confidence", Float),
    Column("latency_ms", Float),
    Column("status", String(16), nullable=False),  # ok, error, timeout, review
    Column("error", Text),
    Column("batch_id", Integer),
    Column("row", Integer),
    # A shadow answer's link to the answer that was returned (the primary's, or a canary
    # candidate's): agreement between the two is a join.
    Column("parent_id", String(32)),
)
Index("ix_predictions_endpoint_time", predictions.c.endpoint, predictions.c.time)
Index("ix_predictions_batch_id", predictions.c.batch_id)
Index("ix_predictions_parent_id", predictions.c.parent_id)

# Ground truth and outcome events that arrive after the prediction.
feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # label, event
    Column("name", String(255)),  # event name (clicked, redid_search, ...)
    Column("value", Text),  # JSON: the label, or the event's value
    Column("time", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),  # api, import, review
    Column("actor", String(255)),  # (0008) the identity that gave it (its token's name)
)
Index("ix_feedback_prediction_id", feedback.c.prediction_id)
Index("ix_feedback_time", feedback.c.time)

# Cases that partial automation (or shadow/assist mode) hands to a person.
review_items = Table(
    "review_items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(32), nullable=False, unique=True),
    Column("endpoint", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # open, resolved
    Column("suggestion", Text),  # JSON of the model's answer
    Column("confidence", Float),
    Column("resolved_at", BigInteger),
    Column("resolver", String(255)),
    Column("label", Text),  # JSON of the person's answer
)
Index("ix_review_items_endpoint_status", review_items.c.endpoint, review_items.c.status)

# ---- labels (0005) -----------------------------------------------------------------------
# One row per label a person (or a program) gave an item. Append-only: a correction is a new
# row with its own labeler and time, never an update, so every label a model trained on can
# be traced to who gave it, when, under which instruction. ``item`` may point at a dataset
# row (``dataset_digest`` + ``row_id``); ``label`` is the JSON of the value (1, "cat", 2.5).
annotations = Table(
    "annotations", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("item", String(255), nullable=False),
    Column("labeler", String(255), nullable=False),
    Column("label", Text, nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("instruction", String(255)),  # labelling-instruction version
    Column("dataset_digest", String(64)),
    Column("row_id", BigInteger),
    Column("meta", JSON),  # the item's metadata (source, device, line, ...)
    Column("source", String(2048), nullable=False),  # file imported, or "python"
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_annotations_item", annotations.c.item)
Index("ix_annotations_labeler", annotations.c.labeler)
Index("ix_annotations_dataset_digest", annotations.c.dataset_digest, annotations.c.row_id)

# Per-row provenance of a dataset version: which columns say where a row came from (source,
# time, device, factory line, labeler), a digest of those columns' values, and the columns
# themselves as an artifact (Parquet), so lineage can reach a row's origin.
dataset_provenance = Table(
    "dataset_provenance", metadata,
    Column("dataset_digest", String(64), primary_key=True),
    Column("columns", JSON, nullable=False),  # names of the provenance columns
    Column("digest", String(64), nullable=False),  # digest of those columns' content
    Column("artifact_sha256", String(64), ForeignKey("artifacts.sha256")),
    Column("num_rows", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# ---- monitoring (0006) -------------------------------------------------------------------
# A monitor watches one endpoint's prediction log window after window. ``spec`` is the
# MonitorSpec (JSON); ``cursor_id``/``cursor_time`` is the last prediction read, so a run reads
# only newer rows; ``pending`` holds the rows of the window still open (Arrow IPC), ``state``
# the alert states, trailing series and label bookkeeping (JSON), ``detectors`` the pickled
# concept-drift detectors. ``latest`` is the last complete window's series, what /metrics
# reads. ``revision`` grows with every run: two runners update with compare-and-set on it.
monitors = Table(
    "monitors", metadata,
    Column("name", String(255), primary_key=True),
    Column("endpoint", String(255), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("cursor_id", String(32)),
    Column("cursor_time", BigInteger),
    Column("windows", Integer, nullable=False),  # complete windows so far
    Column("pending", LargeBinary),
    Column("state", JSON),
    Column("detectors", LargeBinary),
    Column("latest", JSON),  # {series: value} of the last complete window
    Column("latest_window_end", BigInteger),
    Column("last_run_at", BigInteger),
    Column("last_error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_monitors_endpoint", monitors.c.endpoint)

# The series of every complete window, long format: one row per (monitor, window, series).
# A value computed later (realised performance once labels arrive) replaces the window's row.
# NaN is stored as NULL.
monitor_results = Table(
    "monitor_results", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("monitor", String(255), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("window_index", Integer, nullable=False),  # 0, 1, 2, ... per monitor
    Column("window_start", BigInteger, nullable=False),  # time of its first prediction (ms)
    Column("window_end", BigInteger, nullable=False),  # time of its last prediction (ms)
    Column("num_rows", Integer, nullable=False),
    Column("series", String(255), nullable=False),
    Column("value", Float),
    Column("computed_at", BigInteger, nullable=False),
    UniqueConstraint("monitor", "window_index", "series",
                     name="uq_monitor_results_monitor_window_series"),
)
Index("ix_monitor_results_monitor_series_end", monitor_results.c.monitor,
      monitor_results.c.series, monitor_results.c.window_end)
Index("ix_monitor_results_endpoint_end", monitor_results.c.endpoint,
      monitor_results.c.window_end)

# One row per alert episode (ok → firing → resolved); ``key`` is the episode's id within the
# monitor ("rule#3"), so the firing and resolving of one episode update one row.
alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(600), nullable=False),
    Column("monitor", String(255), nullable=False),
    Column("endpoint", String(255), nullable=False),
    Column("rule", String(512), nullable=False),
    Column("series", String(255), nullable=False),
    Column("severity", String(16), nullable=False),  # info, warning, critical
    Column("status", String(16), nullable=False),  # firing, resolved
    Column("started_at", BigInteger, nullable=False),  # end of the first breaching window
    Column("fired_at", BigInteger, nullable=False),  # end of the window that fired it
    Column("resolved_at", BigInteger),
    Column("window_index", Integer),  # the window that fired it
    Column("window_start", BigInteger),
    Column("window_end", BigInteger),
    Column("value", Float),  # value when fired (then when resolved)
    Column("peak", Float),
    Column("lower", Float),  # bounds when fired
    Column("upper", Float),
    Column("breaches", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("finding", JSON),  # e.g. {"kind": "sudden", "detection_delay": ...}
    Column("actions", JSON),  # [{"sink": "webhook", "ok": true, "detail": ...}, ...]
    Column("acked_at", BigInteger),
    Column("acked_by", String(255)),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("monitor", "key", name="uq_alerts_monitor_key"),
)
Index("ix_alerts_status_fired_at", alerts.c.status, alerts.c.fired_at)
Index("ix_alerts_endpoint_fired_at", alerts.c.endpoint, alerts.c.fired_at)
Index("ix_alerts_monitor_fired_at", alerts.c.monitor, alerts.c.fired_at)

# ---- pipelines (0007): ML Metadata's shape ---------------------------------------------------
# A *context* groups executions: a pipeline (type "pipeline", name = the pipeline's name) and
# each run of it (type "pipeline_run", name = the run id). A run's ``spec`` says how to run it
# again ("file.py:name" or "module:name" plus parameters), which is what resume and
# rerun_affected use. Its status: running, succeeded, failed, waiting (an approval).
pipeline_contexts = Table(
    "pipeline_contexts", metadata,
    Column("id", String(32), primary_key=True),
    Column("type", String(32), nullable=False),  # pipeline, pipeline_run
    Column("name", String(255), nullable=False),
    Column("parent_id", String(32)),  # a run's pipeline context
    Column("spec", JSON),  # {"target": "file.py:name", "params": {...}, "engine": "local"}
    Column("status", String(16)),
    Column("triggered_by", String(255)),  # cli, python, alert:<id>, rerun:<artifact>
    Column("properties", JSON),
    Column("error", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
)
Index("ix_pipeline_contexts_type_name", pipeline_contexts.c.type, pipeline_contexts.c.name)
Index("ix_pipeline_contexts_parent_created", pipeline_contexts.c.parent_id,
      pipeline_contexts.c.created_at)

# An *artifact* a step read or wrote: identified by its content digest and type (a dataset,
# a model, a model version, a schema, a report, a source file or query, a plain value).
# ``blob_sha256`` is the serialized value in the content-addressed blob store when prodml
# keeps it (what caching needs); ``uri`` says where it lives for a person or another tool.
lineage_artifacts = Table(
    "lineage_artifacts", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("uri", String(2048)),
    Column("name", String(255)),
    Column("blob_sha256", String(64)),
    Column("properties", JSON),  # rows, columns, dataset digest, model ref, ...
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("type", "digest", name="uq_lineage_artifacts_type_digest"),
)
Index("ix_lineage_artifacts_uri", lineage_artifacts.c.uri)

# An *execution* of one step in one pipeline run. ``cache_key`` is the digest of the step's
# code, parameters and input digests; a later execution with the same key reuses the outputs
# (status "cached", ``cached_from`` the execution that made them).
executions = Table(
    "executions", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("context_id", String(32), nullable=False),  # the pipeline_run context
    Column("step", String(255), nullable=False),
    Column("function", String(512), nullable=False),  # module:qualname
    Column("code_digest", String(64), nullable=False),
    Column("params", JSON),
    Column("cache_key", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running succeeded failed cached skipped waiting
    Column("cached_from", BigInteger),
    Column("run_id", String(32)),  # a tracked run the step opened (train)
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Column("logs", Text),
    Column("resources", JSON),  # wall_s, cpu_s, peak_memory_mb, worker
    Column("error", Text),
    Column("approval", JSON),  # {"required": true, "by": ..., "at": ..., "decision": ...}
)
Index("ix_executions_context", executions.c.context_id, executions.c.id)
Index("ix_executions_cache_key", executions.c.cache_key, executions.c.status)
Index("ix_executions_run_id", executions.c.run_id)  # tracked run -> the step that opened it

# An *event* links an execution to an artifact it read (input) or wrote (output); ``name`` is
# the argument or output name, ``position`` the place in a tuple output.
events = Table(
    "events", metadata,
    Column("execution_id", BigInteger, primary_key=True),
    Column("kind", String(8), primary_key=True),  # input, output
    Column("name", String(255), primary_key=True),
    Column("artifact_id", BigInteger, nullable=False),
    Column("position", Integer),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_events_artifact", events.c.artifact_id, events.c.kind)

# ---- access (0008) ---------------------------------------------------------------------------
# An identity: a person or a service with a role (viewer, labeler, deployer, admin). Only the
# SHA-256 of the token is kept (tokens are 256 random bits, so a slow hash adds nothing);
# ``prefix`` is its first characters, enough for a person to tell tokens apart in a list.
access_tokens = Table(
    "access_tokens", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("revoked_at", BigInteger),
    Column("revoked_by", String(255)),
    UniqueConstraint("token_sha256", name="uq_access_tokens_token_sha256"),
)
Index("ix_access_tokens_name", access_tokens.c.name)

# Every prune of an endpoint's prediction log: rows older than ``before`` went (to
# ``archive_uri`` first when archived); labelled rows kept for retraining are counted apart.
log_prunes = Table(
    "log_prunes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(255), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("before", BigInteger, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("kept_labelled", Integer, nullable=False),
    Column("archive_uri", String(2048)),
    Column("actor", String(255), nullable=False),
)
Index("ix_log_prunes_endpoint_time", log_prunes.c.endpoint, log_prunes.c.time)
