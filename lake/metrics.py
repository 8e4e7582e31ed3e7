"""Every Prometheus metric the platform exports, in one place.

Alert rules (`monitoring/prometheus/rules/`) and dashboards (`monitoring/grafana/`) may only name
metrics defined here (a test checks it). Batch processes are short-lived, so figures are gauges
describing the latest run, pushed to a Pushgateway when `monitoring.pushgateway_url` is set.
Ray Serve's own metrics (`ray.util.metrics`) live with the Serve apps; Ray exports them with a
`ray_` prefix.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

REGISTRY = CollectorRegistry()

# Pipeline steps, per table (bronze ingest, silver refine, gold publish).
ROWS_IN = Gauge("lakehouse_rows_in", "Input rows a step read in its latest run", ["table"], registry=REGISTRY)
ROWS_WRITTEN = Gauge("lakehouse_rows_written", "Rows a step wrote in its latest run", ["table"], registry=REGISTRY)
ROWS_QUARANTINED = Gauge(
    "lakehouse_rows_quarantined", "Rows a step sent to quarantine in its latest run", ["table"], registry=REGISTRY
)
STEP_DURATION = Gauge(
    "lakehouse_step_duration_seconds", "Wall time of a step's latest run", ["table"], registry=REGISTRY
)
LAST_SUCCESS = Gauge(
    "lakehouse_table_last_success_timestamp_seconds",
    "When a step last finished without error (unix time): freshness",
    ["table"],
    registry=REGISTRY,
)
TABLE_VERSION = Gauge("lakehouse_table_version", "Delta version of the table after its step", ["table"], registry=REGISTRY)

# Data quality (quality/).
QUALITY_CHECKS_FAILED = Gauge(
    "lakehouse_quality_checks_failed", "Checks that failed in the table's latest quality run", ["table"], registry=REGISTRY
)
QUALITY_CHECKS_RUN = Gauge(
    "lakehouse_quality_checks_run", "Checks evaluated in the table's latest quality run", ["table"], registry=REGISTRY
)

# Streaming ingestion (Kafka or the landing folder).
STREAM_LAG_RECORDS = Gauge(
    "lakehouse_stream_lag_records", "Records published but not yet in bronze", ["source"], registry=REGISTRY
)
STREAM_FRESHNESS_SECONDS = Gauge(
    "lakehouse_stream_freshness_seconds",
    "Seconds from an event's publication to its visibility in bronze (latest batch)",
    ["source"],
    registry=REGISTRY,
)

# Models (ray_jobs/ training and scoring).
MODEL_METRIC = Gauge(
    "lakehouse_model_metric", "Test metric of a trained model (auc, log_loss, brier)", ["model_version", "metric"], registry=REGISTRY
)
PREDICTION_MEAN = Gauge(
    "lakehouse_prediction_mean", "Mean predicted delay probability of the latest scoring run", ["model_version"], registry=REGISTRY
)


def exported_names() -> set[str]:
    """Every sample name this module can export (what rules and dashboards may reference)."""
    return {sample_name for metric in REGISTRY.collect() for sample_name in [metric.name]}
