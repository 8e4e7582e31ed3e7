"""Streaming ingestion against a real Kafka broker (and the landing folder): exactly once, faults, silver.

The broker is started once for the session on its own ports and data dir, and stopped at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake import io, kafka, pipeline, stream
from lake.ingest import ingest
from lake.replay import Faults, Published, replay
from lake.seed import seed
from lake.settings import REPO_ROOT, Settings
from lake.source import declared_sources
from lake.tables import get

DAY = dt.date(2013, 1, 1)
FAULTS = Faults(malformed=0.03, duplicate=0.05, late=0.03, out_of_order=0.03, drift=0.03)
PORT, CONTROLLER_PORT = 19192, 19193  # not the dev broker's 9092


def lake_settings(base: Settings, root: Path, **kafka_keys: object) -> Settings:
    return base.model_copy(
        update={
            "lake": base.lake.model_copy(update={"root": str(root / "lake")}),
            "kafka": base.kafka.model_copy(update={"port": PORT, "controller_port": CONTROLLER_PORT, **kafka_keys}),
        }
    )


@pytest.fixture(scope="session")
def broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    s = lake_settings(settings, tmp_path_factory.mktemp("kafka"), data_dir=str(tmp_path_factory.mktemp("kafka-data")))
    st = kafka.start(s)
    assert st.ready and st.pid
    try:
        yield s
    finally:
        assert kafka.stop(s)
        assert not kafka.status(s).running


def with_lake(broker: Settings, root: Path) -> Settings:
    return broker.model_copy(update={"lake": broker.lake.model_copy(update={"root": str(root / "lake")})})


def spec_for(settings: Settings, name: str, **keys: object) -> stream.StreamSpec:
    """The shipped declaration on its own topic and landing folder."""
    return stream.load_stream(settings).model_copy(update={"topic": name, "landing_path": f"events/{name}", **keys})


def lookups(spark: SparkSession, s: Settings) -> None:
    """silver.airports: what silver.flights looks time zones up in."""
    seed(s, DAY, DAY)
    ingest(spark, s, declared_sources(s)["airports"])
    pipeline.refine(spark, s, get("silver.airports"))


def test_broker_answers_and_status_cli(broker: Settings) -> None:
    env = {**os.environ, "LAKEHOUSE_KAFKA__PORT": str(PORT), "LAKEHOUSE_KAFKA__DATA_DIR": broker.kafka.data_dir}
    done = subprocess.run([sys.executable, "-m", "lake", "kafka", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"ready (pid {kafka.status(broker).pid}) on 127.0.0.1:{PORT}" in done.stdout


def test_kafka_faults_bronze_quarantine_and_silver_equal_batch(
    spark: SparkSession, broker: Settings, tmp_path: Path
) -> None:
    s = with_lake(broker, tmp_path / "stream")
    spec = spec_for(s, "faults")
    flights = 842  # all of 2013-01-01
    sent = replay(s, spec, "kafka", DAY, flights, faults=FAULTS)
    assert sent.malformed and sent.duplicates and sent.late and sent.out_of_order and sent.drift

    summary = stream.ingest_available(spark, s, spec, "kafka")
    assert (summary.rows, summary.quarantined) == (sent.well_formed, sent.malformed)
    bronze = io.read(spark, s, spec.target)
    assert bronze.count() == sent.well_formed
    assert bronze.select("_partition", "_offset").distinct().count() == sent.well_formed  # each record once
    assert bronze.where(F.col("gate").isNotNull()).count() >= sent.drift  # drift: the new field became a column

    quarantine = io.read(spark, s, spec.quarantine).toPandas()
    assert len(quarantine) == sent.malformed
    assert quarantine["_reason"].notna().all() and quarantine["_raw"].map(len).gt(0).all()
    assert quarantine[["_topic", "_partition", "_offset"]].notna().all().all()
    assert {"not a JSON object", "not valid UTF-8", "missing key field flight_id", "field dep_delay: not a valid int"} <= set(
        quarantine["_reason"]
    )
    # Every record in the topic is in exactly one of the two tables.
    offsets = {(r[0], r[1]) for r in bronze.select("_partition", "_offset").collect()}
    offsets |= set(zip(quarantine["_partition"], quarantine["_offset"], strict=True))
    assert len(offsets) == sent.records

    version = io.version(spark, s, spec.target)
    assert stream.ingest_available(spark, s, spec, "kafka").rows == 0  # nothing new: no new version
    assert io.version(spark, s, spec.target) == version

    lookups(spark, s)
    assert stream.refine_available(spark, s, spec) is None
    streamed = io.read(spark, s, "silver.flights").toPandas()

    b = with_lake(broker, tmp_path / "batch")
    lookups(spark, b)
    ingest(spark, b, declared_sources(b)["flights"])
    pipeline.refine(spark, b, get("silver.flights"))
    batch = io.read(spark, b, "silver.flights").drop("_ingested_at").toPandas()

    assert len(streamed) == len(batch) == flights
    cols = sorted(batch.columns)
    right = batch[cols].sort_values("flight_id").reset_index(drop=True)

    def silver_matches_batch() -> None:
        left = io.read(spark, s, "silver.flights").drop("_ingested_at").toPandas()
        left = left[cols].sort_values("flight_id").reset_index(drop=True)
        assert left.equals(right), left.compare(right).head()

    silver_matches_batch()
    # The same events again, each followed by a stale (older by event time) version and a
    # duplicate, in later micro-batches: silver must not move.
    replay(s, spec, "kafka", DAY, 100, faults=Faults(out_of_order=1.0, duplicate=1.0))
    assert stream.ingest_available(spark, s, spec, "kafka").rows == 300
    assert stream.refine_available(spark, s, spec) is None
    silver_matches_batch()


def test_landing_folder_is_the_default_source(spark: SparkSession, settings: Settings, tmp_path: Path) -> None:
    s = lake_settings(settings, tmp_path)
    assert s.stream.source == "landing"
    spec = spec_for(s, "landing", on_new_field="quarantine")
    first = replay(s, spec, None, DAY, 300, faults=Faults(malformed=0.05, drift=0.05), records_per_file=100)
    summary = stream.ingest_available(spark, s, spec)
    assert summary.source == "landing"
    # on_new_field: quarantine -> events with the unknown field go to quarantine, named.
    assert summary.rows == first.well_formed - first.drift
    assert summary.quarantined == first.malformed + first.drift
    reasons = io.read(spark, s, spec.quarantine).select("_reason", "_source_file").toPandas()
    assert (reasons["_reason"] == "unexpected field(s): gate").sum() == first.drift
    assert reasons["_source_file"].str.contains("/events/landing/events-").all()
    assert "gate" not in io.read(spark, s, spec.target).columns

    second = replay(s, spec, None, DAY + dt.timedelta(days=1), 100)  # files keep arriving
    assert stream.ingest_available(spark, s, spec).rows == second.well_formed
    assert io.read(spark, s, spec.target).count() == first.well_formed - first.drift + second.well_formed


def _stream_process(s: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LAKEHOUSE_LAKE__ROOT": s.lake.root,
        "LAKEHOUSE_KAFKA__PORT": str(PORT),
        "LAKEHOUSE_STREAM__SOURCE": "kafka",
        "LAKEHOUSE_STREAM__DECLARATION": s.stream.declaration,
        "LAKEHOUSE_SPARK__DRIVER_MEMORY": "1g",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lake", "stream", "--trigger-seconds", "0.5"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _lines(log: Path, prefix: str) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith(prefix))


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    spark: SparkSession, broker: Settings, tmp_path: Path
) -> None:
    """`lakehouse stream` killed with SIGKILL 5 times while events keep arriving; then restarted."""
    s = with_lake(broker, tmp_path)
    declaration = tmp_path / "crash.yml"
    spec = spec_for(s, "crash")
    declaration.write_text(
        (REPO_ROOT / "lake/streams/flight_events.yml").read_text().replace("topic: flight_events", "topic: crash")
    )
    s = s.model_copy(update={"stream": s.stream.model_copy(update={"declaration": str(declaration)})})
    log = tmp_path / "stream.log"
    log.touch()
    rng = random.Random(7)
    sent: list[Published] = []
    publishing = threading.Event()
    publishing.set()

    def publish() -> None:  # 50 flights of one day after another, until the kills are done
        day = DAY
        while publishing.is_set():
            sent.append(replay(s, spec, "kafka", day, 50, rate=10))
            day += dt.timedelta(days=1)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        for _ in range(5):
            committed = _lines(log, '{"batch"')
            proc = _stream_process(s, log)
            deadline = time.monotonic() + 240
            while _lines(log, '{"batch"') == committed and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)  # until this run commits a batch (the one a kill interrupted, replayed)
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 3.0))  # events keep coming: kill somewhere in the next batches
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        publishing.clear()
        publisher.join()
    published = sum(p.records for p in sent)
    assert published >= 100 and _lines(log, '{"batch"') >= 5  # each run committed before its kill
    # The final restart drains what is left.
    stream.ingest_available(spark, s, stream.load_stream(s), "kafka")
    bronze = io.read(spark, s, spec.target)
    assert bronze.groupBy("_partition", "_offset").count().where("count > 1").count() == 0, "duplicates"
    assert bronze.count() == published, "missing events"
    assert bronze.select("flight_id").distinct().count() == published


def test_a_batch_replayed_after_its_commit_is_skipped(spark: SparkSession, settings: Settings, tmp_path: Path) -> None:
    """The crash window between the Delta commit and the checkpoint's commit: the replay is a no-op."""
    s = lake_settings(settings, tmp_path)
    spec = spec_for(s, "replayed")
    raw = spark.createDataFrame(
        [(b'{"flight_id": "x", "event_time": "2013-01-01T10:00:00Z", "dep_delay": 3}', "t", 0, 7, None), (b"oops", "t", 0, 8, None)],
        "value binary, topic string, partition int, offset long, source_file string",
    ).withColumn("published_at", F.current_timestamp())
    app_id = stream.txn_app_id(spark, str(tmp_path / "checkpoint"), spec.target)
    assert stream.txn_app_id(spark, str(tmp_path / "checkpoint"), spec.target) == app_id  # stable per checkpoint
    assert stream.txn_app_id(spark, str(tmp_path / "other"), spec.target) != app_id  # a new checkpoint, a new id
    first = stream.write_batch(spark, s, spec, raw, 0, app_id)
    versions = (io.version(spark, s, spec.target), io.version(spark, s, spec.quarantine))
    stream.write_batch(spark, s, spec, raw, 0, app_id)  # the same batch id again, as after a crash
    assert (io.version(spark, s, spec.target), io.version(spark, s, spec.quarantine)) == versions
    assert (first.rows, first.quarantined) == (1, 1)
    assert io.read(spark, s, spec.target).count() == 1 and io.read(spark, s, spec.quarantine).count() == 1
    stream.write_batch(spark, s, spec, raw, 1, app_id)  # the next batch id is written
    assert io.read(spark, s, spec.target).count() == 2
