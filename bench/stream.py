"""Streaming: Kafka -> bronze throughput against a plain consumer, freshness, compaction, memory.

On a broker of its own (own ports and data dir under the work folder), with the dev profile:

1. throughput: `events` flights replayed into a topic, then read back (a) by a plain
   confluent-kafka consumer that decodes every JSON payload, the floor of what any reader
   costs, and (b) by the platform's availableNow query into `bronze.flight_events` (parse,
   quarantine check, Delta commit), in the bench's already started Spark session;
2. freshness and memory: `lakehouse stream --trigger-seconds 1` as a user runs it, for
   `duration_s`, while the replayer publishes at a steady rate; freshness of each event =
   the moment its batch's bronze commit returned (the process logs it per batch) minus the
   Kafka timestamp of the record; memory = summed RSS of the process tree, sampled every
   second; across the run's second half (the first is the JVM heap's warm-up) it must stay flat;
3. compaction: a query on the table the 1 s stream left (one small file per batch), before
   and after the maintain step's OPTIMIZE.

`python -m bench.stream --duration 60` is a short sanity run; the full run is 600 s.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from bench.common import lake_environ, lake_settings, machine, prepare_environment, stopwatch
from bench.memory import _tree_rss
from lake import io, kafka, stream
from lake.replay import Published, replay
from lake.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DAY = dt.date(2013, 1, 1)
PORT, CONTROLLER_PORT = 19392, 19393
QUERY = "SELECT origin, count(*) AS flights, avg(dep_delay) AS mean_dep_delay FROM delta.`{path}` GROUP BY origin"


@dataclass
class StreamBenchResult:
    events: int
    duration_s: float
    rate_per_s: float
    consumer_events_per_s: float = 0.0
    bronze_events_per_s: float = 0.0
    bronze_batches: int = 0
    freshness_p50_s: float | None = None
    freshness_p95_s: float | None = None
    freshness_events: int = 0
    stream_batches: int = 0
    query_before_s: float = 0.0
    query_after_s: float = 0.0
    files_before: int = 0
    files_after: int = 0
    rss_first_mib: float = 0.0  # mean over the first fifth of the run
    rss_last_mib: float = 0.0  # mean over the last fifth
    rss_max_mib: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MiB)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _settings(workdir: Path, topic_declaration: Path | None = None) -> Settings:
    """The bench's broker; a lake of its own per declaration: a streaming checkpoint belongs
    to one topic (Spark refuses to resume one on another topic)."""
    s = lake_settings(workdir / (f"lake-{topic_declaration.stem}" if topic_declaration else "lake"))
    s = s.model_copy(
        update={
            "kafka": s.kafka.model_copy(
                update={"port": PORT, "controller_port": CONTROLLER_PORT, "data_dir": str(workdir / "kafka")}
            )
        }
    )
    if topic_declaration:
        s = s.model_copy(update={"stream": s.stream.model_copy(update={"declaration": str(topic_declaration)})})
    return s


def _declaration(workdir: Path, topic: str) -> Path:
    """The shipped declaration on its own topic (the streaming process reads it from a file)."""
    path = workdir / f"{topic}.yml"
    text = (REPO_ROOT / "lake" / "streams" / "flight_events.yml").read_text()
    path.write_text(text.replace("topic: flight_events", f"topic: {topic}"))
    return path


def plain_consumer(settings: Settings, topic: str, expected: int) -> float:
    """Events/s of a confluent-kafka consumer reading and decoding the whole topic."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **kafka.client_config(settings),
            "group.id": f"bench-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    started: float | None = None
    deadline = time.monotonic() + 300
    while seen < expected and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() or msg.value() is None:
                continue
            started = started or time.perf_counter()
            json.loads(msg.value() or b"null")
            seen += 1
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed if elapsed > 0 else float("nan")


def throughput(spark: SparkSession, settings: Settings, workdir: Path, events: int, result: StreamBenchResult) -> None:
    spec = stream.load_stream(settings).model_copy(update={"topic": "bench_throughput"})
    replay(settings, spec, "kafka", DAY, events)
    result.consumer_events_per_s = plain_consumer(settings, spec.topic, events)
    with stopwatch() as t:
        summary = stream.ingest_available(spark, settings, spec, "kafka")
    result.bronze_events_per_s = summary.rows / t[0]
    result.bronze_batches = summary.batches
    if summary.rows != events:
        result.notes.append(f"throughput: bronze got {summary.rows} of {events} events")


def _sample(proc: subprocess.Popen[bytes], samples: list[tuple[float, float]], stop: threading.Event) -> None:
    t0 = time.monotonic()
    root = psutil.Process(proc.pid)
    while not stop.is_set() and proc.poll() is None:
        with contextlib.suppress(psutil.Error):  # a child vanished mid-sample
            samples.append((time.monotonic() - t0, sum(_tree_rss(root).values()) / 2**20))
        stop.wait(1.0)


def live(spark: SparkSession, workdir: Path, duration_s: float, rate: float, result: StreamBenchResult) -> Settings:
    """`lakehouse stream` at a 1 s trigger while events arrive; freshness and memory."""
    declaration = _declaration(workdir, "bench_live")
    s = _settings(workdir, declaration)
    spec = stream.load_stream(s)
    kafka.ensure_topic(s, spec.topic)
    env = {
        **lake_environ(Path(s.lake.root)),
        "LAKEHOUSE_KAFKA__PORT": str(PORT),
        "LAKEHOUSE_KAFKA__DATA_DIR": s.kafka.data_dir,
        "LAKEHOUSE_STREAM__DECLARATION": str(declaration),
    }
    log, errors = workdir / "stream.out", workdir / "stream.err"
    with log.open("wb") as out, errors.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lake", "stream", "--source", "kafka", "--trigger-seconds", "1",
             "--max-seconds", str(duration_s)],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=err,
        )  # fmt: skip
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc, result.rss_samples, stop), daemon=True)
    sampler.start()
    # Publish while the process runs (the first seconds are its JVM start).
    sent: list[Published] = []
    publisher = threading.Thread(
        target=lambda: sent.append(replay(s, spec, "kafka", DAY, int(rate * duration_s), rate=rate)), daemon=True
    )
    publisher.start()
    proc.wait(timeout=duration_s + 600)
    stop.set()
    publisher.join(timeout=60)
    committed: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith('{"batch"'):
            batch = json.loads(line)
            committed[f"stream-{batch['batch']}"] = batch["committed_at"]
    result.stream_batches = len(committed)
    if io.exists(spark, s, spec.target):
        rows = io.read(spark, s, spec.target).select("_batch_id", "_published_at").toPandas()
        lags = [
            committed[b] - p.timestamp() for b, p in zip(rows["_batch_id"], rows["_published_at"], strict=True) if b in committed
        ]
        if lags:
            q = statistics.quantiles(lags, n=20)
            result.freshness_p50_s, result.freshness_p95_s, result.freshness_events = statistics.median(lags), q[18], len(lags)
    samples = [mib for _, mib in result.rss_samples]
    if samples:
        fifth = max(1, len(samples) // 5)
        result.rss_first_mib = statistics.mean(samples[:fifth])
        result.rss_last_mib = statistics.mean(samples[-fifth:])
        result.rss_max_mib = max(samples)
    if proc.returncode != 0:
        tail = [line for line in errors.read_text(errors="replace").splitlines() if line.strip()][-3:]
        result.notes.append(f"lakehouse stream exited with {proc.returncode}: {' | '.join(tail)} (see {errors})")
    return s


def compaction(spark: SparkSession, s: Settings, result: StreamBenchResult, repetitions: int = 3) -> None:
    spec = stream.load_stream(s)
    if not io.exists(spark, s, spec.target):
        result.notes.append("compaction: the live run wrote no bronze table")
        return
    path = io.path_of(s, spec.target)

    def timed() -> float:
        runs = []
        for _ in range(repetitions):
            with stopwatch() as t:
                spark.sql(QUERY.format(path=path)).collect()
            runs.append(t[0])
        return statistics.median(runs)

    def files() -> int:
        return int(spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["numFiles"])  # type: ignore[index]

    result.files_before, result.query_before_s = files(), timed()
    spark.sql(f"OPTIMIZE delta.`{path}`")  # what the maintain flow runs on every table
    result.files_after, result.query_after_s = files(), timed()


def run(spark: SparkSession, workdir: Path, duration_s: float = 600, events: int = 50000, rate: float = 50) -> StreamBenchResult:
    """The whole streaming benchmark on a broker of its own, stopped at the end."""
    result = StreamBenchResult(events=events, duration_s=duration_s, rate_per_s=rate)
    workdir.mkdir(parents=True, exist_ok=True)
    s = _settings(workdir)
    kafka.start(s)
    try:
        throughput(spark, s, workdir, events, result)
        live_settings = live(spark, workdir, duration_s, rate, result)
        compaction(spark, live_settings, result)
    finally:
        kafka.stop(s)
    return result


RSS_GROWTH_LIMIT = 0.10  # "flat": the last fifth's mean RSS within 10% of the second half's first fifth


def steady_growth(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(mean RSS over the first fifth of the run's second half, over the last fifth, growth).

    The first half is the JVM's warm-up (its heap grows to its working size, minutes on two
    cores); a leak shows as growth across the second half."""
    values = [mib for _, mib in samples]
    half = values[len(values) // 2 :]
    fifth = max(1, len(half) // 5)
    if not half:
        return float("nan"), float("nan"), float("nan")
    start, end = statistics.mean(half[:fifth]), statistics.mean(values[-fifth:])
    return start, end, end / start - 1 if start else float("nan")


def markdown(r: dict[str, Any]) -> list[str]:
    def n(v: float | None, d: int = 1) -> str:
        return "n/a" if v is None else f"{v:,.{d}f}"

    steady_start, steady_end, growth = steady_growth(r.get("rss_samples") or [])
    flat = "flat" if growth < RSS_GROWTH_LIMIT else "GROWING"
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| Kafka -> bronze (availableNow, {r['events']} events, {r['bronze_batches']} batches) | {n(r['bronze_events_per_s'], 0)} events/s |",
        f"| plain confluent-kafka consumer, same topic (decode only) | {n(r['consumer_events_per_s'], 0)} events/s |",
        f"| freshness p50 / p95 at a 1 s trigger ({r['freshness_events']} events at {r['rate_per_s']:g}/s) | {n(r['freshness_p50_s'], 2)} s / {n(r['freshness_p95_s'], 2)} s |",
        f"| query before / after OPTIMIZE ({r['files_before']} -> {r['files_after']} files) | {n(r['query_before_s'], 2)} s / {n(r['query_after_s'], 2)} s |",
        f"| `lakehouse stream` RSS over {r['duration_s']:g} s: first fifth / last fifth / max | {n(r['rss_first_mib'], 0)} / {n(r['rss_last_mib'], 0)} / {n(r['rss_max_mib'], 0)} MiB |",
        "",
        f"Kafka -> bronze / plain consumer: {r['bronze_events_per_s'] / r['consumer_events_per_s']:.2f}. "
        f"Memory of the streaming process tree across the run's second half (the first half is the JVM "
        f"heap's warm-up): {n(steady_start, 0)} -> {n(steady_end, 0)} MiB, {growth * 100:+.1f}% ({flat}; "
        f"budget {RSS_GROWTH_LIMIT * 100:.0f}%).",
    ]
    return lines + [f"Note: {note}" for note in r["notes"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600, help="seconds of the live run (default 600)")
    parser.add_argument("--events", type=int, default=50000, help="events of the throughput run (default 50000)")
    parser.add_argument("--rate", type=float, default=50, help="events/s published during the live run (default 50)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lakehouse-bench-stream-", dir="/tmp"))
    prepare_environment(workdir)
    from lake.spark import get_spark, stop_spark

    spark = get_spark(lake_settings(workdir / "default-lake"))
    try:
        result = run(spark, workdir, args.duration, args.events, args.rate)
    finally:
        stop_spark()
    out = REPO_ROOT / "bench" / "results" / "stream.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "stream": result.to_json()}, indent=2) + "\n")
    print("\n".join(markdown(result.to_json())))
    for note in result.notes:
        print(f"note: {note}")
    print(f"written: {out.relative_to(REPO_ROOT)}; work folder {workdir}")
    return 1 if result.notes else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
