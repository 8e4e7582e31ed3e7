"""Metrics recording and grouping, JSON log lines, OpenLineage events and sinks (no Spark)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lake import logs, metrics, openlineage
from lake.ingest import IngestResult
from lake.pipeline import StepResult
from lake.settings import Settings


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
