"""Metrics recording, grouping and pushing (a real Pushgateway), JSON log lines, OpenLineage events
and sinks (no Spark)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lake import logs, metrics, openlineage
from lake.ingest import IngestResult
from lake.pipeline import StepResult
from lake.settings import REPO_ROOT, Settings


def monitored(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"monitoring": settings.monitoring.model_copy(update=changes)})


def test_a_step_is_recorded_per_table_and_a_skipped_one_is_not_a_success(settings: Settings) -> None:
    ok = StepResult("silver.t1", version_before=3, version_after=4, rows_in=100, rows_quarantined=7, batches=1)
    metrics.record_step(ok, 2.5, settings)
    assert metrics.ROWS_WRITTEN.labels("silver.t1")._value.get() == 93
    assert metrics.TABLE_VERSION.labels("silver.t1")._value.get() == 4
    assert metrics.FRESHNESS_SLA.labels("silver.t1")._value.get() == settings.monitoring.freshness_sla_seconds
    assert metrics.LAST_SUCCESS.labels("silver.t1")._value.get() > 0

    metrics.record_step(StepResult("gold.t2", None, None, skipped="waiting for silver.x"), 0.1, settings)
    assert ("table", "gold.t2") in metrics.subjects()
    assert metrics.LAST_SUCCESS.labels("gold.t2")._value.get() == 0  # never succeeded
    metrics.record_ingest(IngestResult("s", "bronze.t3", 2, 1, 42, 1, "b", 0), 1.0, settings)
    assert metrics.ROWS_IN.labels("bronze.t3")._value.get() == 42


def test_a_push_group_holds_only_its_subject(settings: Settings) -> None:
    metrics.ROWS_IN.labels("gold.a").set(1)
    metrics.ROWS_IN.labels("gold.b").set(2)
    registry = CollectorRegistry()
    registry.register(metrics._Subject("table", "gold.a"))
    text = generate_latest(registry).decode()
    assert 'lakehouse_rows_in{table="gold.a"} 1.0' in text
    assert "gold.b" not in text


def test_push_without_a_pushgateway_does_nothing_and_a_dead_one_is_not_fatal(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    assert metrics.push(settings) == 0  # monitoring.pushgateway_url is null by default
    dead = monitored(settings, pushgateway_url="http://127.0.0.1:9")  # nothing listens on port 9
    metrics.ROWS_IN.labels("gold.a").set(1)
    with caplog.at_level(logging.WARNING, logger="lake.metrics"):
        assert metrics.push(dead, only=[("table", "gold.a")]) == 0
    assert "not pushed to http://127.0.0.1:9" in caplog.text


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Pushgateway (Debian package prometheus-pushgateway) on a free 127.0.0.1 port."""
    exe = shutil.which("prometheus-pushgateway")
    assert exe, "prometheus-pushgateway is missing: `make install` installs the Debian package"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"], stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"the Pushgateway did not start: {log.read_text()}"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def gateway_samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(name, labels) -> value of every lakehouse_* sample the Pushgateway holds."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if v)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("lakehouse_")
    }


def in_another_process(pushgateway: str, code: str) -> None:
    """Run `code` in a fresh interpreter (its own metrics), as a scoring job or a later step would."""
    env = {**os.environ, "LAKEHOUSE_MONITORING__PUSHGATEWAY_URL": pushgateway}
    prelude = "from lake.settings import get_settings\nsettings = get_settings()\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_jobs_pushing_the_same_subject_keep_each_others_metrics(settings: Settings, pushgateway: str) -> None:
    """Training pushes the model's metrics, scoring (another process) its mean: the group holds both,
    under the names the alert rules read; a failed step's push keeps the table's last success."""
    from ray_jobs.registry import ModelRecord, export_metrics

    s = monitored(settings, pushgateway_url=pushgateway)
    trained = ModelRecord(
        model_version=901, created_at=dt.datetime.now(dt.UTC), git_revision="test", params={},
        metrics={"auc": 0.71, "log_loss": 0.5, "brier": 0.2, "test_positive_rate": 0.2, "base_rate_auc": 0.5},
        input_versions={}, feast_registry_version="", feature_service="", artifact_uri="",
    )  # fmt: skip
    assert export_metrics(s, trained) == 1
    in_another_process(pushgateway, "from ray_jobs.score import export_metrics\nassert export_metrics(settings, 901, 0.45) == 1")
    held = gateway_samples(pushgateway)
    group = {("job", "lakehouse"), ("model_version", "901")}
    for metric, value in {"auc": 0.71, "log_loss": 0.5, "brier": 0.2, "positive_rate": 0.2}.items():
        assert held[("lakehouse_model_metric", frozenset(group | {("metric", metric)}))] == value
    assert held[("lakehouse_prediction_mean", frozenset(group))] == 0.45
    assert not any(dict(labels).get("metric") == "base_rate_auc" for _, labels in held)  # only what rules read

    metrics.record_step(StepResult("gold.t901", version_before=1, version_after=2, rows_in=5), 1.0, s)
    assert metrics.push(s, only=[("table", "gold.t901")]) == 1
    in_another_process(pushgateway, """
        from lake import metrics
        metrics.record_failure("gold.t901", 2.0)
        assert metrics.push(settings, only=[("table", "gold.t901")]) == 1
    """)
    table = frozenset({("job", "lakehouse"), ("table", "gold.t901")})
    held = gateway_samples(pushgateway)
    assert held[("lakehouse_step_failed", table)] == 1
    assert held[("lakehouse_table_last_success_timestamp_seconds", table)] > 0  # freshness still alerts
    assert held[("lakehouse_table_version", table)] == 2


def test_push_skips_subjects_without_figures_and_throttles_a_loop(settings: Settings, pushgateway: str) -> None:
    s = monitored(settings, pushgateway_url=pushgateway)
    assert metrics.push(s, only=[("source", "never_set")]) == 0
    metrics.STREAM_LAG_RECORDS.labels(source="s902").set(10)
    assert metrics.push(s, only=[("source", "s902")], every=60) == 1
    metrics.STREAM_LAG_RECORDS.labels(source="s902").set(20)
    assert metrics.push(s, only=[("source", "s902")], every=60) == 0  # pushed a moment ago
    assert metrics.push(s, only=[("source", "s902")]) == 1  # a batch's push is never held back
    assert gateway_samples(pushgateway)[("lakehouse_stream_lag_records", frozenset({("job", "lakehouse"), ("source", "s902")}))] == 20


def test_every_line_is_json_with_the_run_context(settings: Settings, tmp_path: Path) -> None:
    s = monitored(settings, log_file=str(tmp_path / "l.jsonl"))
    run = logs.configure(s, flow="unit", quiet_console=True)
    log = logging.getLogger("some.library")
    log.info("outside a step")
    with logs.step("gold.x"):
        log.info("inside")
        logs.set_version(7)
        log.warning("after the commit")
    lines = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [(line["message"], line["table"], line["delta_version"]) for line in lines] == [
        ("outside a step", None, None),
        ("inside", "gold.x", None),
        ("after the commit", "gold.x", 7),
    ]
    assert {line["run_id"] for line in lines} == {run} and {line["flow"] for line in lines} == {"unit"}
    assert logs.ensure(s, "nested", "run-2") == "run-2"  # a flow inside the CLI keeps the handlers
    assert len([h for h in logging.getLogger().handlers if getattr(h, logs._HANDLER_MARK, False)]) == 2


def test_a_bad_log_level_names_the_key(settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"monitoring\.log_level"):
        logs.configure(monitored(settings, log_level="LOUD"), flow="unit")


def test_run_events_follow_the_spec_and_go_to_files(settings: Settings, tmp_path: Path) -> None:
    s = monitored(settings, openlineage_dir=str(tmp_path / "ol"))
    read = [openlineage.dataset(s, "silver.flights", 3)]
    wrote = [openlineage.dataset(s, "gold.x", 5, rows=10)]
    event = openlineage.run_event(s, "COMPLETE", "gold.x", "0b6f7e8e-1b61-4c0a-9a55-7a7c3e1f2d11", ("platform", "cli-run-1"), read, wrote)
    openlineage.emit(s, event)
    (stored,) = openlineage.read_events(s)
    assert stored == event
    assert set(stored) == {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"}
    assert stored["eventTime"].endswith("Z")
    parent = stored["run"]["facets"]["parent"]["run"]["runId"]
    assert len(parent) == 36 and parent == openlineage._as_uuid("cli-run-1")  # not a UUID: mapped, stably
    assert stored["inputs"][0]["namespace"] == "file" and stored["inputs"][0]["name"].endswith("/silver/flights")
    assert stored["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 10
    s3 = openlineage.dataset(s.model_copy(update={"lake": s.lake.model_copy(update={"root": "s3a://bkt/prod"})}), "gold.x", 1)
    assert (s3["namespace"], s3["name"]) == ("s3a://bkt", "/prod/gold/x")


@pytest.fixture()
def lineage_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP endpoint that accepts OpenLineage POSTs the way Marquez does."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "event": json.loads(body)})
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_the_http_sink_posts_to_the_lineage_api(settings: Settings, lineage_server: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = lineage_server
    s = monitored(settings, openlineage_sink="http", openlineage_url=url)
    event = openlineage.run_event(s, "START", "silver.flights", "0b6f7e8e-1b61-4c0a-9a55-7a7c3e1f2d11", None)
    openlineage.emit(s, event)
    assert received == [{"path": "/api/v1/lineage", "event": event}]
