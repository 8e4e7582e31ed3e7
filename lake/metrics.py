"""Every Prometheus metric the platform's batch and streaming processes export, in one place.

Batch processes are short-lived, so figures are gauges describing the latest run, pushed to a
Pushgateway when `monitoring.pushgateway_url` is set (`push`): one group per subject (a table, a
stream source, a model version) under one job, so a process that ran one table replaces that
table's figures and leaves the others alone. Pushes add to their group (HTTP POST): a metric a
process pushes replaces that metric in the group and nothing else, so the training job's model
metrics survive the scoring job's push for the same model version, and a failed step's push
keeps the table's last success (the freshness alert goes on working).

The Serve apps' own metrics are defined in `serve/` with `ray.util.metrics` (the `SERVE_*` names
below) and exported, like Ray Serve's built-in ones, by Ray with a `ray_` prefix on Ray's metrics
endpoint, which Prometheus finds through Ray's service-discovery file. Rules and dashboards may
only name metrics some code creates: tests/unit/test_monitoring.py checks each name against the
gauges here and the metric definitions in `serve/` and in Ray Serve itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lake.ingest import IngestResult
    from lake.pipeline import RunReport, StepResult
    from lake.settings import Settings

log = logging.getLogger(__name__)
REGISTRY = CollectorRegistry()

# Pipeline steps, per table (bronze ingest, silver refine, gold publish).
ROWS_IN = Gauge("lakehouse_rows_in", "Input rows a step read in its latest run", ["table"], registry=REGISTRY)
ROWS_WRITTEN = Gauge("lakehouse_rows_written", "Rows a step wrote in its latest run", ["table"], registry=REGISTRY)
ROWS_QUARANTINED = Gauge(
    "lakehouse_rows_quarantined", "Rows a step sent to quarantine in its latest run", ["table"], registry=REGISTRY
)
GRAINS_RECOMPUTED = Gauge(
    "lakehouse_grains_recomputed", "Gold: grain values (days, months) recomputed in the latest run", ["table"], registry=REGISTRY
)
STEP_DURATION = Gauge(
    "lakehouse_step_duration_seconds", "Wall time of a step's latest run", ["table"], registry=REGISTRY
)
STEP_FAILED = Gauge(
    "lakehouse_step_failed", "1 when the table's latest step run raised, else 0", ["table"], registry=REGISTRY
)
LAST_SUCCESS = Gauge(
    "lakehouse_table_last_success_timestamp_seconds",
    "When a step last finished without error (unix time): freshness",
    ["table"],
    registry=REGISTRY,
)
FRESHNESS_SLA = Gauge(
    "lakehouse_table_freshness_sla_seconds",
    "How old the last success may get before the freshness alert fires (monitoring.freshness_sla_seconds)",
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
    "lakehouse_model_metric",
    "Test metric of a trained model (auc, log_loss, brier, positive_rate: the test set's late share)",
    ["model_version", "metric"],
    registry=REGISTRY,
)
PREDICTION_MEAN = Gauge(
    "lakehouse_prediction_mean", "Mean predicted delay probability of the latest scoring run", ["model_version"], registry=REGISTRY
)

# Ray Serve: the custom metrics the Serve apps define (`ray.util.metrics`) under these names.
# Ray exports them as `ray_<name>`, plus `_total` for counters, `_bucket/_sum/_count` for histograms.
SERVE_REQUESTS = "lakehouse_serve_requests"  # Counter, tags: app, route, status (serve/common.py)
SERVE_REQUEST_SECONDS = "lakehouse_serve_request_seconds"  # Histogram, tags: app, route
SERVE_PREDICTIONS = "lakehouse_serve_predictions"  # Counter, tags: model_version (serve/model_app.py)
SERVE_ROWS_RETURNED = "lakehouse_serve_rows_returned"  # Counter, tags: table (serve/data_app.py)
SERVE_BATCH_SIZE = "lakehouse_serve_batch_size"  # Histogram: rows per model call
SERVE_MODEL_INFO = "lakehouse_serve_model_info"  # Gauge = 1, tags: model_version (what is live)

# The label that names what a sample is about: each value is one Pushgateway group.
SUBJECT_LABELS = ("table", "source", "model_version")


def exported_names() -> set[str]:
    """Every sample name this module can export."""
    return {metric.name for metric in REGISTRY.collect()}


def record_ingest(result: IngestResult, seconds: float, settings: Settings) -> None:
    ROWS_IN.labels(result.table).set(result.rows)
    ROWS_WRITTEN.labels(result.table).set(result.rows)
    _finished(result.table, result.version, seconds, settings)


def record_step(result: StepResult, seconds: float, settings: Settings) -> None:
    """A silver/gold step's figures; a skipped step (inputs missing) is not a success."""
    t = result.table
    ROWS_IN.labels(t).set(result.rows_in)
    if t.startswith("gold."):
        GRAINS_RECOMPUTED.labels(t).set(result.grains_recomputed)
    else:
        ROWS_QUARANTINED.labels(t).set(result.rows_quarantined)
        ROWS_WRITTEN.labels(t).set(result.rows_in - result.rows_quarantined)
    if result.skipped:
        STEP_DURATION.labels(t).set(seconds)
        return
    _finished(t, result.version_after, seconds, settings)


def record_failure(table: str, seconds: float) -> None:
    STEP_FAILED.labels(table).set(1)
    STEP_DURATION.labels(table).set(seconds)


def record_report(report: RunReport, settings: Settings) -> None:
    """Everything a run summary holds, for callers that did not time each step (durations 0)."""
    for ingested in report.ingested:
        record_ingest(ingested, 0.0, settings)
    for step in report.steps:
        record_step(step, 0.0, settings)


def _finished(table: str, version: int | None, seconds: float, settings: Settings) -> None:
    STEP_DURATION.labels(table).set(seconds)
    STEP_FAILED.labels(table).set(0)
    LAST_SUCCESS.labels(table).set(time.time())
    FRESHNESS_SLA.labels(table).set(settings.monitoring.freshness_sla_seconds)
    if version is not None:
        TABLE_VERSION.labels(table).set(version)


class _Subject(Collector):
    """The samples of REGISTRY about one subject (e.g. table=gold.x): one Pushgateway group."""

    def __init__(self, label: str, value: str) -> None:
        self.label, self.value = label, value

    def collect(self) -> Iterator[Metric]:
        for metric in REGISTRY.collect():
            samples = [s for s in metric.samples if _subject(s.labels) == (self.label, self.value)]
            if samples:
                out = Metric(metric.name, metric.documentation, metric.type)
                out.samples = samples
                yield out


def _subject(labels: dict[str, str]) -> tuple[str, str] | None:
    for label in SUBJECT_LABELS:
        if label in labels:
            return label, labels[label]
    return None


def subjects() -> list[tuple[str, str]]:
    found = {_subject(s.labels) for metric in REGISTRY.collect() for s in metric.samples}
    return sorted(s for s in found if s is not None)


_last_pushed: dict[tuple[str, str, str], float] = {}  # (url, label, value) -> when this process last pushed it


def push(
    settings: Settings, job: str | None = None, only: Iterable[tuple[str, str]] | None = None, every: float = 0.0
) -> int:
    """Add every subject's figures (or just `only`'s) to its Pushgateway group; returns groups pushed.

    The one place any process pushes from (steps, streaming, training, scoring). The grouping key
    is the subject (`table=...`, `source=...`, `model_version=...`) under `monitoring.job`, and
    the push is a POST, so it replaces only the metrics it carries: processes that describe the
    same subject with different metrics never erase each other's. Nothing happens without
    `monitoring.pushgateway_url`, and a subject this process has no figures for is skipped, as is
    one it pushed less than `every` seconds ago (a long-running loop can call this each turn). A
    Pushgateway that does not answer is logged, never fatal: the run it describes is over.
    """
    url = settings.monitoring.pushgateway_url
    if not url:
        return 0
    from prometheus_client import pushadd_to_gateway

    pushed = 0
    for label, value in list(only) if only is not None else subjects():
        subject = _Subject(label, value)
        last = _last_pushed.get((url, label, value))
        if (last is not None and time.monotonic() - last < every) or next(subject.collect(), None) is None:
            continue
        _last_pushed[(url, label, value)] = time.monotonic()  # attempts count: a dead gateway is not retried each turn
        registry = CollectorRegistry()
        registry.register(subject)
        try:
            pushadd_to_gateway(url, job=job or settings.monitoring.job, registry=registry, grouping_key={label: value}, timeout=5)
        except OSError as exc:
            log.warning("metrics for %s=%s not pushed to %s: %s", label, value, url, exc)
            continue
        pushed += 1
    return pushed
