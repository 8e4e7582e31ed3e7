"""Observability end to end: real Prometheus and Pushgateway (Debian packages), real steps.

A scratch lake gets one day, then a second, through the observed steps (ingest, refine,
publish); their metrics are read back through Prometheus's HTTP API, the freshness alert is
made to fire by stopping updates, and a gold version is traced through the commits'
userMetadata to the exact bronze version it was built from. A registered model's metrics and a
scoring run's mean reach Prometheus under the names the model alerts read (both alerts fire), and
a streaming micro-batch pushes its source's freshness and lag.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from pyspark.sql import SparkSession

from lake import catalog, io, lineage, logs, openlineage, pipeline
from lake.seed import seed
from lake.settings import REPO_ROOT, Settings
from lake.source import declared_sources
from lake.tables import get

PROMETHEUS_DIR = REPO_ROOT / "monitoring" / "prometheus"
GOLD = "gold.carrier_daily_performance"
SLA_SECONDS = 15  # the freshness SLA the steps export in this test (monitoring.freshness_sla_seconds)
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def start(cmd: list[str], log: Path, ready_url: str) -> subprocess.Popen[bytes]:
    exe = shutil.which(cmd[0])
    assert exe, f"{cmd[0]} is missing: `make install` installs the Debian packages prometheus and prometheus-pushgateway"
    proc = subprocess.Popen([exe, *cmd[1:]], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for(f"{cmd[0]} at {ready_url} (log: {log})", lambda: proc.poll() is None and get_json_ok(ready_url), 60)
    except AssertionError:
        proc.kill()
        raise
    return proc


def get_json_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def value(self, query: str) -> float | None:
        data = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
        result = data["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def firing(self, alert: str, **labels: str) -> bool:
        alerts = get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return any(
            a["labels"].get("alertname") == alert and labels.items() <= a["labels"].items() and a["state"] == "firing"
            for a in alerts
        )


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Prometheus]]:
    """A Pushgateway and a Prometheus running the committed config and rules, at 1 s intervals."""
    tmp = tmp_path_factory.mktemp("monitoring")
    pg_port, prom_port = free_port(), free_port()
    pushgateway = start(
        ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{pg_port}", f"--persistence.file={tmp / 'pg.data'}"],
        tmp / "pushgateway.log",
        f"http://127.0.0.1:{pg_port}/-/ready",
    )
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    config.pop("alerting", None)  # no Alertmanager here: alerts are read from Prometheus's API
    for job in config["scrape_configs"]:
        if job["job_name"] == "pushgateway":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{pg_port}"]}]
        if job["job_name"] == "ray":  # no Ray here: an empty service-discovery file
            (tmp / "ray_sd.json").write_text("[]")
            job["file_sd_configs"] = [{"files": [str(tmp / "ray_sd.json")]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = start(
        [
            "prometheus",
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp / "prometheus.log",
        f"http://127.0.0.1:{prom_port}/-/ready",
    )
    try:
        yield f"http://127.0.0.1:{pg_port}", Prometheus(f"http://127.0.0.1:{prom_port}")
    finally:
        for proc in (prometheus, pushgateway):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def observed(
    spark: SparkSession, settings: Settings, monitoring: tuple[str, Prometheus], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Day 1 then day 2 of flights through the observed steps, pushing to the Pushgateway."""
    tmp = tmp_path_factory.mktemp("observed")
    s = settings.model_copy(
        update={
            "lake": settings.lake.model_copy(update={"root": str(tmp / "lake")}),
            "monitoring": settings.monitoring.model_copy(
                update={
                    "pushgateway_url": monitoring[0],
                    "freshness_sla_seconds": SLA_SECONDS,
                    "log_file": str(tmp / "logs" / "lakehouse.jsonl"),
                }
            ),
        }
    )
    logs.configure(s, flow="test-observability", quiet_console=True)
    specs = declared_sources(s)
    seed(s, dt.date(2013, 1, 1), dt.date(2013, 1, 1))
    for source in ("airports", "flights"):
        pipeline.run_ingest(spark, s, specs[source])
    pipeline.run(spark, s, only=[get("silver.airports"), get("silver.flights"), get(GOLD)])
    seed(s, dt.date(2013, 1, 2), dt.date(2013, 1, 2))
    pipeline.run_ingest(spark, s, specs["flights"])
    pipeline.run(spark, s, only=[get("silver.flights"), get(GOLD)])
    return s


def test_step_metrics_are_read_back_through_prometheus(
    spark: SparkSession, observed: Settings, monitoring: tuple[str, Prometheus]
) -> None:
    prom = monitoring[1]
    gold_version = io.version(spark, observed, GOLD)
    # Gold was pushed last: once its latest version is scraped, every earlier step's figures are too.
    wait_for(
        f"gold's version {gold_version} in Prometheus",
        lambda: prom.value(f'lakehouse_table_version{{table="{GOLD}"}}') == gold_version,
        30,
    )
    assert prom.value('lakehouse_rows_in{table="bronze.flights", job="lakehouse"}') == 943  # day 2's file
    assert prom.value('lakehouse_rows_written{table="silver.flights"}') == prom.value(
        'lakehouse_rows_in{table="silver.flights"} - lakehouse_rows_quarantined{table="silver.flights"}'
    )
    assert prom.value(f'lakehouse_grains_recomputed{{table="{GOLD}"}}') == 1  # only 2013-01-02 changed
    assert prom.value('lakehouse_step_failed{table="silver.flights"}') == 0
    last = prom.value(f'lakehouse_table_last_success_timestamp_seconds{{table="{GOLD}"}}')
    assert last is not None and time.time() - 600 < last <= time.time()


def test_freshness_alert_fires_when_updates_stop(
    spark: SparkSession, observed: Settings, monitoring: tuple[str, Prometheus]
) -> None:
    prom = monitoring[1]
    before = time.time()
    pipeline.run_table(spark, observed, get(GOLD))  # nothing new, still a success: the table is current
    query = f'lakehouse_table_last_success_timestamp_seconds{{table="{GOLD}"}}'
    pushed = wait_for("the new success to be scraped", lambda: (v := prom.value(query)) is not None and v >= before and v, 20)
    wait_for("GoldTableStale to resolve after the refresh", lambda: not prom.firing("GoldTableStale", table=GOLD), 10)
    assert time.time() - pushed < SLA_SECONDS, "resolving took longer than the SLA; the test cannot tell"
    # No more updates: past the SLA the alert fires, with its runbook link.
    wait_for("GoldTableStale to fire", lambda: prom.firing("GoldTableStale", table=GOLD), SLA_SECONDS + 20)
    assert time.time() - pushed > SLA_SECONDS
    rule = next(
        r
        for g in get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
        for r in g["rules"]
        if r["name"] == "GoldTableStale"
    )
    assert rule["annotations"]["runbook_url"] == "docs/runbook.md#goldtablestale"


def pushing(settings: Settings, monitoring: tuple[str, Prometheus], lake: Path) -> Settings:
    """Settings of a separate scratch lake whose processes push to the test's Pushgateway."""
    return settings.model_copy(
        update={
            "lake": settings.lake.model_copy(update={"root": str(lake)}),
            "monitoring": settings.monitoring.model_copy(update={"pushgateway_url": monitoring[0]}),
        }
    )


def test_model_metrics_reach_prometheus_and_the_model_alerts_fire(
    settings: Settings, monitoring: tuple[str, Prometheus], tmp_path: Path
) -> None:
    """Registering a model pushes its test metrics, scoring its mean: AUC 0.6 and a mean 0.25 away
    from the test set's late share make both model alerts fire."""
    from ray_jobs import registry, score

    s, prom = pushing(settings, monitoring, tmp_path / "lake"), monitoring[1]
    version = registry.next_version(s)
    registry.record(
        s,
        registry.ModelRecord(
            model_version=version, created_at=dt.datetime.now(dt.UTC), git_revision="test", params={},
            metrics={"auc": 0.6, "log_loss": 0.55, "brier": 0.19, "test_positive_rate": 0.2, "test_rows": 100.0},
            input_versions={}, feast_registry_version="", feature_service="", artifact_uri=str(tmp_path / "artifact"),
        ),
    )  # fmt: skip
    assert score.export_metrics(s, version, 0.45) == 1
    v = str(version)
    wait_for(
        "the scoring run's mean in Prometheus",
        lambda: prom.value(f'lakehouse_prediction_mean{{model_version="{v}", job="lakehouse"}}') == 0.45,
        30,
    )
    assert prom.value(f'lakehouse_model_metric{{model_version="{v}", metric="auc"}}') == 0.6
    assert prom.value(f'lakehouse_model_metric{{model_version="{v}", metric="positive_rate"}}') == 0.2  # kept by scoring's push
    wait_for("ModelAucBelowThreshold to fire", lambda: prom.firing("ModelAucBelowThreshold", model_version=v), 20)
    wait_for("PredictionDrift to fire", lambda: prom.firing("PredictionDrift", model_version=v), 20)


def test_a_stream_micro_batch_pushes_its_freshness_and_lag(
    spark: SparkSession, settings: Settings, monitoring: tuple[str, Prometheus], tmp_path: Path
) -> None:
    from lake import metrics, stream
    from lake.replay import replay

    s, prom = pushing(settings, monitoring, tmp_path / "lake"), monitoring[1]
    spec = stream.load_stream(s)
    metrics.STREAM_LAG_RECORDS.labels(source=spec.name).set(12345)  # what `lakehouse stream` sets from Kafka's offsets
    sent = replay(s, spec, "landing", dt.date(2013, 1, 1), 50)
    summary = stream.ingest_available(spark, s, spec, "landing")
    assert summary.rows == sent.well_formed > 0
    wait_for(
        "the stream's lag in Prometheus",
        lambda: prom.value(f'lakehouse_stream_lag_records{{source="{spec.name}", job="lakehouse"}}') == 12345,
        30,
    )
    freshness = prom.value(f'lakehouse_stream_freshness_seconds{{source="{spec.name}"}}')
    assert freshness is not None and freshness > 0
    wait_for("StreamingLagHigh to be pending", lambda: any(
        a["labels"].get("alertname") == "StreamingLagHigh" and a["labels"].get("source") == spec.name
        for a in get_json(f"{prom.url}/api/v1/alerts")["data"]["alerts"]
    ), 20)  # fmt: skip


def test_a_gold_version_traces_to_the_exact_bronze_version(spark: SparkSession, observed: Settings) -> None:
    from delta.tables import DeltaTable

    def history(table: str) -> dict[int, Any]:
        rows = DeltaTable.forPath(spark, io.path_of(observed, table)).history().collect()
        return {int(r["version"]): r for r in rows}

    gold_history, silver_history = history(GOLD), history("silver.flights")
    # Every commit of the run carries userMetadata with the run id.
    for table, commits in ((GOLD, gold_history), ("silver.flights", silver_history)):
        for version, row in commits.items():
            meta = io.parse_user_metadata(row["userMetadata"])
            assert meta.get("run_id") == logs.run_id() and meta["table"] == table, (table, version, meta)

    chain = lineage.trace(spark, observed, GOLD)
    latest = io.version(spark, observed, GOLD)
    assert (chain[0].table, chain[0].version) == (GOLD, latest)
    by_table = {t.table: t for t in chain}
    assert set(by_table) == {GOLD, "silver.flights", "bronze.flights", "silver.airports", "bronze.airports"}
    silver = by_table["silver.flights"]
    assert silver.version == io.version(spark, observed, "silver.flights")
    assert silver_history[silver.version]["operation"] == "MERGE"  # day 2 was merged, and recorded
    bronze = by_table["bronze.flights"]
    assert bronze.version == io.version(spark, observed, "bronze.flights")
    assert spark.read.format("delta").option("versionAsOf", bronze.version).load(io.path_of(observed, "bronze.flights")).count() == 842 + 943

    # The first gold version (day 1 only) traces to the bronze version that held day 1 only.
    first = lineage.trace(spark, observed, GOLD, min(gold_history))
    first_bronze = next(t for t in first if t.table == "bronze.flights")
    assert first_bronze.version < bronze.version
    day1 = spark.read.format("delta").option("versionAsOf", first_bronze.version).load(io.path_of(observed, "bronze.flights"))
    assert day1.count() == 842


def test_openlineage_events_pair_start_and_complete(spark: SparkSession, observed: Settings) -> None:
    events = openlineage.read_events(observed)
    gold = [e for e in events if e["job"]["name"] == GOLD]
    starts = {e["run"]["runId"] for e in gold if e["eventType"] == "START"}
    completes = [e for e in gold if e["eventType"] == "COMPLETE"]
    assert starts and starts == {e["run"]["runId"] for e in completes}
    last = completes[-1]
    assert last["schemaURL"].startswith("https://openlineage.io/spec/")
    assert last["run"]["facets"]["parent"]["job"]["name"] == "test-observability"
    output = last["outputs"][0]
    assert output["facets"]["symlinks"]["identifiers"][0]["name"] == GOLD
    assert output["facets"]["version"]["datasetVersion"] == str(io.version(spark, observed, GOLD))
    assert [i["facets"]["symlinks"]["identifiers"][0]["name"] for i in last["inputs"]] == ["silver.flights"]


def test_declared_descriptions_land_in_the_delta_tables(spark: SparkSession, observed: Settings) -> None:
    table = get("silver.flights")
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{io.path_of(observed, table.fqn)}`").first()
    assert detail is not None
    assert detail["description"] == table.description
    assert detail["properties"][catalog.OWNER_PROPERTY] == table.owner
    comments = {f.name: f.metadata.get("comment") for f in io.read(spark, observed, table.fqn).schema.fields}
    assert comments == dict(table.columns)  # every column described, nothing else
    assert catalog.undeclared_columns(spark, observed, GOLD) == []
    assert catalog.apply(spark, observed, table.fqn) == 0  # already in line: no new commit

    entries = {e.table: e for e in catalog.entries(spark, observed)}
    assert entries[GOLD].rows > 0 and entries[GOLD].version == io.version(spark, observed, GOLD)
    assert entries["bronze.flights"].rows == 842 + 943 and entries["bronze.flights"].owner
    age = entries[GOLD].age_seconds()
    assert age is not None and 0 <= age < 3600


def test_every_log_line_carries_the_run_context(observed: Settings) -> None:
    assert observed.monitoring.log_file
    lines = [json.loads(line) for line in Path(observed.monitoring.log_file).read_text().splitlines()]
    assert lines and all(set(logs.FIELDS) <= set(line) for line in lines)
    finished = [line for line in lines if line["logger"] == "lake.step" and line["table"] == GOLD]
    assert finished and all(line["run_id"] == logs.run_id() and line["flow"] == "test-observability" for line in finished)
    assert all(isinstance(line["delta_version"], int) for line in finished)


def test_catalog_quality_status_is_the_latest_run_per_table(spark: SparkSession, scratch_lake: Settings) -> None:
    at = dt.datetime(2026, 1, 1, 12)
    rows = [
        ("r1", "silver.x", "failed", at),
        ("r2", "silver.x", "passed", at + dt.timedelta(hours=1)),
        ("r2", "silver.x", "failed", at + dt.timedelta(hours=1, seconds=1)),
        ("r2", "silver.x", "passed", at + dt.timedelta(hours=1, seconds=2)),
        ("r1", "gold.y", "passed", at),
    ]
    df = spark.createDataFrame(rows, "run_id STRING, table STRING, outcome STRING, checked_at TIMESTAMP")
    io.append(df, scratch_lake, catalog.QUALITY_RESULTS)
    assert catalog.quality_status(spark, scratch_lake) == {"silver.x": "fail (1 of 3)", "gold.y": "pass (1 checks)"}


def test_cli_traces_a_version_and_lists_the_catalog(spark: SparkSession, observed: Settings) -> None:
    """Last in this module: the CLI starts a run of its own (a new run id for later log lines)."""
    from typer.testing import CliRunner

    from lake.cli import app

    env = {"LAKEHOUSE_LAKE__ROOT": observed.lake.root}
    traced = CliRunner().invoke(app, ["lineage", GOLD, "--at", "-1"], env=env)
    assert traced.exit_code == 0, traced.output
    bronze = io.version(spark, observed, "bronze.flights")
    assert f"{GOLD} v{io.version(spark, observed, GOLD)}" in traced.stdout
    assert f"    bronze.flights v{bronze} (WRITE, run " in traced.stdout

    listed = CliRunner().invoke(app, ["catalog", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = {r["table"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows["bronze.flights"]["rows"] == 842 + 943 and rows[GOLD]["version"] == io.version(spark, observed, GOLD)
